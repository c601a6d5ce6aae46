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


def test_a_version_2_database_keeps_its_nights_and_events_and_gains_night_dates(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    conn = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:2], 1):
        conn.executescript(f"BEGIN;{script}\nPRAGMA user_version={version};COMMIT;")
    conn.execute(
        "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source, summary) "
        "VALUES ('n1', 'u', '2026-11-20T22:10:00.000Z', '2026-11-21T06:00:00.000Z', 'aasm', 'sim', '{}')"
    )
    conn.execute(
        "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, profile) "
        "VALUES ('e1', 'n1', 'jerk', '2026-11-20T23:00:00.000Z', '2026-11-20T23:00:00.200Z', 0.2, 5, 'aasm')"
    )
    conn.commit()
    migrate(conn, path)
    night = conn.execute("SELECT kind, night_date, start_reason, end_reason FROM nights").fetchone()
    assert night == ("night", "2026-11-20", "daemon", None)
    assert conn.execute("SELECT id FROM events").fetchall() == [("e1",)]
    conn.execute(
        "INSERT INTO relabels VALUES ('e1', 'not_an_event', '2026-11-21T07:00:00.000Z', 'web')"
    )  # the new tables take rows and refer to the old ones
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO checkins VALUES ('2026-11-20', 9, 1, '', 'x', 'x')")
    conn.close()
    backup = sqlite3.connect(tmp_path / "v2.sqlite3.bak-v2")
    assert backup.execute("PRAGMA user_version").fetchone()[0] == 2
    assert backup.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    backup.close()


def test_raw_signal_is_pruned_after_the_retention_but_snippets_stay(tmp_path: Path) -> None:
    async def go() -> list[int]:
        store = await Store.open(tmp_path / "b.sqlite3")
        for night, ended in (("old", "2026-11-01T07:00:00.000Z"), ("new", "2026-11-21T07:00:00.000Z")):
            await store.start_night(night, "u", ended[:10] + "T00:00:00.000Z", "aasm", "sim")
            await store.add_event(_row(f"e-{night}", night), [], ended)
            await store.end_night(night, ended, {}, kind="night", end_reason="bed_exit")
            for i in range(3):
                await store.add_raw_chunk(night, i * 10, ended, 10.0, 10, "q16dz", b"x")
            await store.add_snippet(f"e-{night}", night, ended, 10.0, 1, "q16dz", b"x")
        removed = await store.prune_raw("2026-11-15T00:00:00.000Z")
        await store.close()
        return [removed]

    assert asyncio.run(go()) == [3]
    conn = sqlite3.connect(tmp_path / "b.sqlite3")
    assert conn.execute("SELECT DISTINCT night_id FROM raw_chunks").fetchall() == [("new",)]
    assert sorted(r[0] for r in conn.execute("SELECT night_id FROM snippets")) == ["new", "old"]
    conn.close()


def test_a_database_left_by_a_killed_writer_opens_with_what_was_committed(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "b.sqlite3"
    asyncio.run(_open_close(path))
    script = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA synchronous=FULL')\n"
        'c.execute("INSERT INTO nights (id, unit_id, started_at, profile, source) VALUES '
        "('kept','u','2026-11-20T22:00:00.000Z','aasm','s')\"); c.commit()\n"
        "c.execute('BEGIN')\n"
        "for i in range(5000):\n"
        "    c.execute(\"INSERT INTO epochs VALUES ('kept', ?, 30, 1, 1, 1)\", (f'2026-11-20T22:{i:06d}',))\n"
        "os._exit(9)  # killed in the middle of a transaction: no commit, no clean close\n"
    )
    assert subprocess.run([sys.executable, "-c", script, str(path)], check=False).returncode == 9

    async def reopen() -> int:
        store = await Store.open(path)
        n = await store.event_count("kept")
        await store.close()
        return n

    assert asyncio.run(reopen()) == 0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT id FROM nights").fetchall() == [("kept",)]
    assert conn.execute("SELECT count(*) FROM epochs").fetchone()[0] == 0
    conn.close()


async def _open_close(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


def test_epochs_and_vitals_are_written_in_batches_without_holding_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"

    def count(table: str) -> int:
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()

    async def go() -> list[int]:
        store = await Store.open(path)
        await store.start_night("n1", "u", "2026-11-20T22:00:00.000Z", "aasm", "sim")
        seen = []
        for i in range(3):
            await store.add_epoch("n1", f"2026-11-20T22:0{i}:00.000Z", 30.0, 1.0, True, True)
            await store.add_vitals("n1", f"2026-11-20T22:0{i}:00.000Z", 60.0, 15.0)
        seen.append(count("epochs"))  # held, not yet written
        other = sqlite3.connect(path, timeout=0.1)  # another writer (the dashboard) is not blocked
        other.execute("INSERT INTO checkins VALUES ('2026-11-20', 3, 2, '', 'x', 'x')")
        other.commit()
        other.close()
        await store.add_event(_row("e1"), [], "2026-11-20T22:05:00.000Z")  # an event writes them too
        seen += [count("epochs"), count("vitals")]
        await store.add_epoch("n1", "2026-11-20T22:09:00.000Z", 30.0, 1.0, True, True)
        await store.close()  # closing writes what is held
        seen.append(count("epochs"))
        return seen

    assert asyncio.run(go()) == [0, 3, 3, 4]


# --- frozen databases of every schema version --------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _tables(conn: sqlite3.Connection) -> dict[str, tuple[list[str], list[tuple[object, ...]]]]:
    """Every table (sqlite_sequence included): its column names and its rows, sorted."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out = {}
    for name in names:
        cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
        out[name] = (cols, sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr))
    return out


def _rows(conn: sqlite3.Connection, table: str, cols: list[str]) -> list[tuple[object, ...]]:
    return sorted(conn.execute(f'SELECT {", ".join(cols)} FROM "{table}"').fetchall(), key=repr)


def _load_fixture(version: int, path: Path) -> dict[str, tuple[list[str], list[tuple[object, ...]]]]:
    """Write the frozen ``schema_v<version>.sql`` into a fresh file at ``path``; its tables' rows."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript((FIXTURES / f"schema_v{version}.sql").read_text(encoding="utf-8"))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        return _tables(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_frozen_database_of_each_schema_opens_migrated_with_every_row_kept(
    tmp_path: Path, version: int
) -> None:
    """tests/fixtures/schema_vN.sql were written when each version was current and are never
    regenerated, so this catches a migration that no longer fits the databases already on Pis
    (the migrate-from-MIGRATIONS[:n] test above cannot: it rebuilds old schemas from today's code).
    Each version up to the current one needs its frozen file: freeze a new one with each migration."""
    path = tmp_path / "bedside.sqlite3"
    before = _load_fixture(version, path)
    assert sum(len(rows) for _, rows in before.values()) >= 20, "the fixture holds real rows"
    assert all(before[t][1] for t in ("nights", "events", "epochs", "vitals", "outbox", "live_state"))

    async def go() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(go())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # every old table keeps every row; columns added by later migrations come on top
        for table, (cols, rows) in before.items():
            assert _rows(conn, table, cols) == rows, table
    finally:
        conn.close()
    backup = tmp_path / f"bedside.sqlite3.bak-v{version}"
    if version < SCHEMA_VERSION:
        assert backup.exists(), "a backup is written before migrating"
        old = sqlite3.connect(backup)
        try:
            assert old.execute("PRAGMA user_version").fetchone()[0] == version
            assert _tables(old) == before
        finally:
            old.close()
    else:
        assert not backup.exists(), "nothing to migrate: no backup"


def test_frozen_nights_read_back_through_the_history_after_migrating(tmp_path: Path) -> None:
    """The oldest frozen database, migrated, is usable: its nights get dates and summaries again."""
    from service.history.load import connect, list_nights, load_night
    from service.history.summary import summarize_night

    path = tmp_path / "bedside.sqlite3"
    before = _load_fixture(1, path)

    async def go() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(go())
    conn = connect(path)
    try:
        nights = list_nights(conn, kind=None)
        cols, rows = before["nights"]
        assert sorted(n["id"] for n in nights) == sorted(r[cols.index("id")] for r in rows)
        assert {n["night_date"] for n in nights} == {"2026-11-20", "2026-11-21"}
        data = load_night(conn, "20261120T221003Z-bedside-a1b2c3")
        assert data is not None and len(data.events) == 7 and len(data.epochs) == 4
        summary = summarize_night(data)
        assert summary["spasms"]["count"] == 1
    finally:
        conn.close()
