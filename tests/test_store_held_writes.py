"""Writes the database refuses for now (full, locked) are held in order and written when it takes them again.

Real SQLite files: "full" is a database capped by ``PRAGMA max_page_count`` (SQLite then answers
SQLITE_FULL, exactly as on a full disk), "locked" is a second connection holding the write lock.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from service.store.held import HeldWrites, unavailable_reason
from service.store.store import Store


def _event(i: int) -> dict[str, object]:
    return {
        "id": f"e{i:04d}",
        "night_id": "n1",
        "event_type": "jerk",
        "start": f"2026-11-22T01:{i // 60:02d}:{i % 60:02d}.000Z",
        "end": f"2026-11-22T01:{i // 60:02d}:{i % 60:02d}.300Z",
        "duration_s": 0.3,
        "intensity": 9.5,
        "profile": "aasm",
        "confidence": None,
        "cause_id": None,
        "details": {"pad": "x" * 2000},
    }


def _ids(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT id FROM events ORDER BY rowid")]
    finally:
        conn.close()


async def _cap(store: Store, extra_pages: int) -> None:
    """Let the database grow by at most ``extra_pages`` pages from now on (a disk about to fill)."""
    async with store._db.execute("PRAGMA page_count") as cur:
        row = await cur.fetchone()
    assert row is not None
    await store._db.execute(f"PRAGMA max_page_count = {int(row[0]) + extra_pages}")


def test_a_full_database_holds_events_in_order_and_writes_them_when_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "b.sqlite3"

    async def go() -> tuple[list[str], str | None, int, str | None]:
        store = await Store.open(path)
        await store.start_night("n1", "u", "2026-11-22T00:00:00.000Z", "aasm", "test")
        await _cap(store, 4)
        for i in range(40):
            await store.add_event(_event(i), [("t/event", f'{{"id": "e{i:04d}"}}', 1, False)], "now")
            await store.add_epoch("n1", f"2026-11-22T01:00:{i:02d}.000Z", 30.0, 1.0, True, True)
        await store.flush()
        while_full = _ids(path)
        problem, held = store.problem, len(store.held)
        await store._db.execute("PRAGMA max_page_count = 1000000")
        store.held._last_try = 0.0  # due now
        await store.retry_held()
        after = store.problem
        await store.close()
        return while_full, problem, held, after

    with caplog.at_level(logging.WARNING):
        while_full, problem, held, after = asyncio.run(go())
    assert problem == "database or disk is full"
    assert 0 < len(while_full) < 40 and held > 0, "some events were refused and held"
    assert after is None
    assert _ids(path) == [f"e{i:04d}" for i in range(40)], "every event, in order, none twice"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 40, "each event with its outbox row"
    assert conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 40
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "full" in errors[0].getMessage(), "one clear line, not one per write"


def test_a_database_locked_past_the_busy_timeout_holds_writes_until_the_lock_is_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.sqlite3"

    async def go() -> tuple[str | None, list[str], list[str]]:
        store = await Store.open(path, busy_timeout_s=0.05)
        await store.start_night("n1", "u", "2026-11-22T00:00:00.000Z", "aasm", "test")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        await store.add_event(_event(1), [], "now")
        await store.add_event(_event(2), [], "now")
        await store.set_live_state("u", "now", {"x": 1})  # replaced by the next one: not held
        problem, during = store.problem, _ids(path)
        other.execute("COMMIT")
        other.close()
        store.held._last_try = 0.0
        await store.retry_held()
        await store.close()
        return problem, during, _ids(path)

    problem, during, after = asyncio.run(go())
    assert problem is not None and "locked" in problem
    assert during == [] and after == ["e0001", "e0002"]


def test_past_the_memory_bound_raw_signal_goes_first_and_events_stay() -> None:
    written: list[str] = []
    refuse = True

    def op(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if refuse:
                raise sqlite3.OperationalError("database or disk is full")
            written.append(name)

        return run

    async def go() -> HeldWrites:
        nonlocal refuse
        held = HeldWrites(max_bytes=1000)
        await held.run(op("event-0"), "events")
        for i in range(5):
            await held.run(op(f"chunk-{i}"), "raw signal chunks", size_bytes=400, drop_rank=2)
            await held.run(op(f"snippet-{i}"), "event snippets", size_bytes=100, drop_rank=1)
            await held.run(op(f"event-{i + 1}"), "events")
        refuse = False
        await held.retry()
        return held

    held = asyncio.run(go())
    assert [w for w in written if w.startswith("event")] == [f"event-{i}" for i in range(6)]
    assert [w for w in written if w.startswith("chunk")] == ["chunk-4"], "the newest raw chunk that fits"
    assert [w for w in written if w.startswith("snippet")] == [f"snippet-{i}" for i in range(5)]
    assert held.dropped == {"raw signal chunks": 4} and held.problem is None


def test_only_not_now_errors_are_held() -> None:
    assert unavailable_reason(sqlite3.OperationalError("database or disk is full")) is not None
    assert unavailable_reason(sqlite3.OperationalError("no such table: x")) is None
    assert unavailable_reason(sqlite3.IntegrityError("UNIQUE constraint failed")) is None

    async def go() -> None:
        async def broken() -> None:
            raise sqlite3.OperationalError("no such table: events")

        await HeldWrites().run(broken, "events")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        asyncio.run(go())
