"""The daemon in ``auto`` session mode: a night from bed entry to the morning exit, its raw signal and
snippets, and a night that goes on across a restart (real daemon, real SQLite, simulated sensor)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hardware.block import Block
from hardware.simulated import SimulatedNight, SimulatedSource
from service.app import Daemon
from service.config import load_config
from service.detect.types import MOVEMENT_TYPES
from service.store.signal_codec import decode
from service.timefmt import parse_iso_utc
from tests.daemonutil import in_process_config
from tests.reliability.conftest import expected_events
from tests.sources import WrappedSource

RATE = 50.0


def _run(db: Path, night: SimulatedNight, start: datetime, **sessions: Any) -> Daemon:
    cfg = load_config(
        environ={},
        overrides={
            "storage": {"db_path": str(db)},
            "mqtt": {"enabled": False},
            "web": {"enabled": False},
            "sessions": {"timezone": "UTC", "exit_confirm_min": 1.0, **sessions},
        },
    )
    daemon = Daemon(cfg, SimulatedSource(night, speed=0.0, start=start), "test")
    assert asyncio.run(daemon.run()) == 0
    return daemon


def _rows(db: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def test_a_night_runs_from_bed_entry_to_the_morning_exit_with_its_raw_signal(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    # Yesterday 03:30 UTC: in the evening window, the exit is after 05:00, and the night is recent
    # enough that its whole raw signal is inside storage.raw_retention_days (pruning goes by the wall clock).
    start = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(3, 30), tzinfo=UTC)
    sim = SimulatedNight(seed=4, rate_hz=RATE, duration_s=2 * 3600.0)
    _run(db, sim, start)

    nights = _rows(db, "SELECT * FROM nights")
    assert len(nights) == 1
    n = nights[0]
    assert (n["kind"], n["night_date"], n["start_reason"], n["end_reason"]) == (
        "night", (start.date() - timedelta(days=1)).isoformat(), "bed_entry", "bed_exit",
    )  # fmt: skip
    entry = sim.events_of("bed_entry")[0]
    exit_ = sim.events_of("bed_exit")[-1]
    started, ended = parse_iso_utc(n["started_at"]), parse_iso_utc(n["ended_at"])
    assert abs((started - (start + timedelta(seconds=entry.start_s))).total_seconds()) < 30
    assert abs((ended - (start + timedelta(seconds=exit_.end_s))).total_seconds()) < 30
    summary = json.loads(n["summary"])
    assert summary["total_sleep_min"] > 30 and summary["time_in_bed_min"] > summary["total_sleep_min"]

    # Whole-night raw signal: consecutive chunks from the night's start, exactly the samples sensed.
    chunks = _rows(db, "SELECT * FROM raw_chunks ORDER BY start_index")
    assert chunks and chunks[0]["start_index"] == 0
    assert abs((parse_iso_utc(chunks[0]["start_at"]) - started).total_seconds()) < 1.0 / RATE + 1e-3
    first_sample = round((started - start).total_seconds() * RATE)
    for a, b in itertools.pairwise(chunks):
        assert b["start_index"] == a["start_index"] + a["n"]
    for c in chunks[:: max(1, len(chunks) // 10)]:
        got = decode(c["encoding"], c["data"])
        assert got.size == c["n"]
        np.testing.assert_array_equal(got, sim.render(first_sample + c["start_index"], c["n"]))
    covered_s = sum(c["n"] for c in chunks) / RATE
    assert covered_s >= (ended - started).total_seconds()

    # A snippet for every event, overlapping it (a long series keeps its last minute), exactly as sensed.
    events = _rows(db, "SELECT e.*, s.start_at AS s_at, s.n, s.encoding, s.data FROM events e "
                       "LEFT JOIN snippets s ON s.event_id = e.id ORDER BY e.rowid")  # fmt: skip
    assert len(events) > 20
    assert all(e["data"] is not None for e in events), "every event has its snippet"
    for e in events[::3]:
        s_at = parse_iso_utc(e["s_at"])
        s_end = s_at + timedelta(seconds=e["n"] / RATE)
        assert s_at < parse_iso_utc(e["end_at"]) and s_end > parse_iso_utc(e["start_at"])
        if e["duration_s"] < 40:
            assert s_at <= parse_iso_utc(e["start_at"]) and s_end >= parse_iso_utc(e["end_at"])
        index = round((s_at - start).total_seconds() * RATE)
        np.testing.assert_array_equal(decode(e["encoding"], e["data"]), sim.render(index, e["n"]))


def test_a_night_left_open_by_a_restart_goes_on_and_a_stale_one_is_closed(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    t1 = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    _run(db, SimulatedNight(seed=5, rate_hz=RATE, duration_s=40 * 60.0), t1)
    first = _rows(db, "SELECT * FROM nights")
    assert len(first) == 1 and first[0]["ended_at"] is None, "stopping mid-night leaves the night open"
    night_id = first[0]["id"]
    events_before = len(_rows(db, "SELECT id FROM events"))

    # Back 5 minutes later (an update, a crash and restart): the same night goes on.
    _run(db, SimulatedNight(seed=6, rate_hz=RATE, duration_s=30 * 60.0), t1 + timedelta(minutes=45))
    nights = _rows(db, "SELECT * FROM nights")
    assert [n["id"] for n in nights] == [night_id] and nights[0]["ended_at"] is None
    ids = {r["night_id"] for r in _rows(db, "SELECT night_id FROM events")}
    assert ids == {night_id} and len(_rows(db, "SELECT id FROM events")) > events_before

    # Two days later: that night is closed at its last data, with a summary, and not resumed.
    _run(db, SimulatedNight(seed=7, rate_hz=RATE, duration_s=10 * 60.0), t1 + timedelta(days=2))
    old = _rows(db, "SELECT * FROM nights WHERE id = ?", night_id)[0]
    assert old["end_reason"] == "daemon_stop" and old["summary"] is not None
    last_event = max(r["end_at"] for r in _rows(db, "SELECT end_at FROM events WHERE night_id = ?", night_id))
    assert old["ended_at"] >= last_event
    assert parse_iso_utc(old["ended_at"]) < t1 + timedelta(hours=2)


class _StoppedByCommand(WrappedSource):
    """A simulated night whose sleeper ends it with ``cmd/night stop`` right after the last block, as
    in the morning: the detector has not flushed yet, so it still holds events decided with look-ahead
    (an awakening needs minutes of it)."""

    async def blocks(self) -> AsyncIterator[Block]:
        async for block in self.inner:
            yield block
        assert self.daemon is not None
        self.daemon._on_command("night", b"stop")
        while self.daemon.night_id is not None:
            await asyncio.sleep(0.01)


def test_a_night_keeps_the_movements_before_its_bed_entry_was_decided_and_the_events_after_its_stop(
    tmp_path: Path,
) -> None:
    db = tmp_path / "b.sqlite3"
    seed, duration_s = 12, 1800.0
    start = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(22, 30), tzinfo=UTC)
    cfg = in_process_config(db, mode="auto", timezone="UTC")
    night = SimulatedNight(seed=seed, rate_hz=250.0, duration_s=duration_s)
    source = _StoppedByCommand(SimulatedSource(night, speed=0.0, start=start))
    daemon = Daemon(cfg, source, "test")
    source.daemon = daemon
    assert asyncio.run(daemon.run()) == 0

    nights = _rows(db, "SELECT * FROM nights")
    assert len(nights) == 1 and nights[0]["start_reason"] == "bed_entry"
    started, ended = parse_iso_utc(nights[0]["started_at"]), parse_iso_utc(nights[0]["ended_at"])
    stored = [(e["event_type"], (parse_iso_utc(e["start_at"]) - start).total_seconds())
              for e in _rows(db, "SELECT * FROM events ORDER BY start_at")]  # fmt: skip
    first_s, end_s = (started - start).total_seconds(), (ended - start).total_seconds()
    expected = [(e.event_type, e.start_s) for e in expected_events(seed, duration_s)
                if first_s - 0.01 <= e.start_s < end_s]  # fmt: skip
    expected.sort(key=lambda e: e[1])
    decided_late = [e for e in expected if e[0] == "awakening" and e[1] > duration_s - 600]
    assert decided_late, "the night ends with an awakening the detector decides only at its flush"
    settling = [e for e in expected if e[0] in MOVEMENT_TYPES and e[1] < first_s + 30]
    assert settling, "movements follow the bed entry before presence has decided it"
    assert [k for k, _ in stored] == [k for k, _ in expected]
    assert all(abs(a[1] - b[1]) < 0.02 for a, b in zip(stored, expected, strict=True))
    summary = json.loads(nights[0]["summary"])
    assert summary["counts"].get("awakening") == sum(k == "awakening" for k, _ in expected), (
        "the summary counts the late awakening"
    )


def test_run_mode_keeps_one_night_for_the_whole_run_whatever_the_time_of_day(tmp_path: Path) -> None:
    """``mode = "run"``: a run that starts at 15:00 (after the morning limit, before the evening) and
    runs past the next morning stays one night with every event on it; no session rule ends it."""
    db = tmp_path / "b.sqlite3"
    start = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(15, 0), tzinfo=UTC)
    sim = SimulatedNight(seed=4, rate_hz=RATE, duration_s=1800.0)
    _run(db, sim, start, mode="run")
    nights = _rows(db, "SELECT * FROM nights")
    assert [(n["kind"], n["start_reason"], n["end_reason"]) for n in nights] == [
        ("night", "daemon", "daemon_stop")
    ]
    events = _rows(db, "SELECT night_id FROM events")
    assert len(events) >= 5 and {e["night_id"] for e in events} == {nights[0]["id"]}
