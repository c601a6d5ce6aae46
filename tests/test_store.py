"""The SQLite store: migrations, atomic event + outbox writes, WAL, backups, refusal of newer schemas."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from service.errors import StoreError
from service.store.migrations import MIGRATIONS, SCHEMA_VERSION
from service.store.store import Store, migrate


def _row(event_id: str, night_id: str = "n1") -> dict[str, object]:
    return {
        "id": event_id,
        "night_id": night_id,
        "event_type": "jerk",
        "start": "2026-11-22T01:00:00.000Z",
        "end": "2026-11-22T01:00:00.300Z",
        "duration_s": 0.3,
        "intensity": 9.5,
        "profile": "aasm",
        "confidence": None,
        "cause_id": None,
        "details": {"k": 1.0},
    }


def test_new_database_gets_the_latest_schema_in_wal_mode(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "sub" / "b.sqlite3")
        await store.close()

    asyncio.run(go())
    conn = sqlite3.connect(tmp_path / "sub" / "b.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"nights", "events", "epochs", "vitals", "outbox", "live_state"} <= tables
    conn.close()


def test_every_earlier_version_migrates_to_the_latest(tmp_path: Path) -> None:
    for start in range(SCHEMA_VERSION):
        path = tmp_path / f"v{start}.sqlite3"
        conn = sqlite3.connect(path)
        for version, script in enumerate(MIGRATIONS[:start], 1):
            conn.executescript(f"BEGIN;{script}\nPRAGMA user_version={version};COMMIT;")
        assert migrate(conn, path) == start
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
        if start > 0:
            assert (tmp_path / f"v{start}.sqlite3.bak-v{start}").exists()


def test_database_from_a_newer_bedside_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()

    async def go() -> None:
        await Store.open(path)

    with pytest.raises(StoreError, match="newer than this Bedside"):
        asyncio.run(go())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_event_and_its_outbox_row_are_written_together_and_acks_clear_the_outbox(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "b.sqlite3")
        await store.start_night("n1", "unit", "2026-11-22T00:00:00.000Z", "aasm", "test")
        await store.add_event(_row("e1"), [("t/event", '{"id":"e1"}', 1, False)], "2026-11-22T01:00:01.000Z")
        await store.add_event(_row("e2"), [("t/event", '{"id":"e2"}', 1, False)], "2026-11-22T01:00:02.000Z")
        pending = await store.outbox_pending()
        assert [p.payload for p in pending] == ['{"id":"e1"}', '{"id":"e2"}']
        assert await store.outbox_pending(after_seq=pending[0].seq) == pending[1:]
        await store.outbox_ack([pending[0].seq])
        assert [p.payload for p in await store.outbox_pending()] == ['{"id":"e2"}']
        assert await store.event_count("n1") == 2
        await store.close()

    asyncio.run(go())


def test_duplicate_event_id_leaves_no_orphan_outbox_row(tmp_path: Path) -> None:
    async def go() -> None:
        store = await Store.open(tmp_path / "b.sqlite3")
        await store.start_night("n1", "unit", "2026-11-22T00:00:00.000Z", "aasm", "test")
        await store.add_event(_row("e1"), [("t", "a", 1, False)], "2026-11-22T01:00:01.000Z")
        with pytest.raises(sqlite3.IntegrityError):
            await store.add_event(_row("e1"), [("t", "b", 1, False)], "2026-11-22T01:00:01.000Z")
        assert await store.outbox_len() == 1
        await store.close()

    asyncio.run(go())


def test_a_failed_migration_leaves_the_database_as_it_was_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.store.store as store_module

    path = tmp_path / "b.sqlite3"

    async def first() -> None:
        store = await Store.open(path)
        await store.start_night("n1", "unit", "2026-11-22T00:00:00.000Z", "aasm", "test")
        await store.add_event(_row("e1"), [("t", "a", 1, False)], "2026-11-22T01:00:01.000Z")
        await store.close()

    asyncio.run(first())
    # An upgrade whose next migration breaks halfway (its second statement fails).
    broken = (*MIGRATIONS, "CREATE TABLE extra (x INTEGER); CREATE TABLE nights (id TEXT);")
    monkeypatch.setattr(store_module, "MIGRATIONS", broken)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StoreError, match=f"migration {len(broken)} failed"):
        asyncio.run(Store.open(path))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "extra" not in tables, "the half-done migration was rolled back"
    assert conn.execute("SELECT id FROM events").fetchall() == [("e1",)]
    conn.close()
    assert (tmp_path / f"b.sqlite3.bak-v{SCHEMA_VERSION}").exists(), "a backup was taken first"
