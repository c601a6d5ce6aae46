"""Clock faults: a Pi without a real-time clock boots with a wrong time, then NTP sets it.

The sampler stamps blocks from the wall clock, so the simulated source here does the same: its
blocks carry a stale time (hours behind, or 1970 as a Pi without ``fake-hwclock`` starts) until
the jump, then the real time. Events must keep one consistent order, the night must be one night
on the right date, and nothing the detector found may be lost. The real ``Daemon`` runs with
``auto`` sessions in UTC, its store on a real SQLite file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hardware.block import Block
from hardware.simulated import SimulatedNight, SimulatedSource
from service.app import Daemon
from service.timefmt import parse_iso_utc
from tests.daemonutil import in_process_config
from tests.reliability.conftest import expected_events
from tests.sources import WrappedSource

RATE_HZ = 250.0
SEED = 12
DURATION_S = 1800.0
TRUE_START = datetime(2026, 11, 21, 22, 30, tzinfo=UTC)  # the sleeper goes to bed at 22:3x
JUMP_AT_S = 600.0  # NTP sets the clock ten minutes after boot


class WallClockSource(WrappedSource):
    """A simulated night whose blocks are stamped by a wall clock that is ``wrong_by`` until
    ``jump_at_s`` of stream time, then right (what a sampler thread sees when NTP steps the clock)."""

    def __init__(self, wrong_by: timedelta, jump_at_s: float) -> None:
        night = SimulatedNight(seed=SEED, rate_hz=RATE_HZ, duration_s=DURATION_S)
        super().__init__(SimulatedSource(night, start=TRUE_START, speed=0.0, block_s=0.1))
        self.wrong_by = wrong_by
        self.jump_at_s = jump_at_s

    async def blocks(self) -> AsyncIterator[Block]:
        async for block in self.inner:
            if block.index / block.rate_hz < self.jump_at_s:
                block = Block(block.t0 + self.wrong_by, block.index, block.rate_hz, block.samples)
            yield block
        if self.daemon is not None:  # the sleeper ends the night with the command (as in the morning)
            self.daemon._on_command("night", b"stop")
            while self.daemon.night_id is not None:
                await asyncio.sleep(0.01)


@dataclass
class ClockRun:
    nights: list[dict[str, Any]]
    events: list[dict[str, Any]]
    raw_chunks: int


_RUNS: dict[timedelta, ClockRun] = {}


def _run(tmp_path: Path, wrong_by: timedelta) -> ClockRun:
    """The night with the clock ``wrong_by`` until NTP sets it (run once per scenario, then kept)."""
    if wrong_by not in _RUNS:
        _RUNS[wrong_by] = _run_once(tmp_path, wrong_by)
    return _RUNS[wrong_by]


def _run_once(tmp_path: Path, wrong_by: timedelta) -> ClockRun:
    db = tmp_path / "clock.sqlite3"
    cfg = in_process_config(db, mode="auto", timezone="UTC")
    source = WallClockSource(wrong_by, JUMP_AT_S)
    daemon = Daemon(cfg, source, "wall clock")
    source.daemon = daemon
    assert asyncio.run(daemon.run()) == 0
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        nights = [dict(r) for r in conn.execute("SELECT * FROM nights ORDER BY started_at")]
        events = [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY rowid")]
        raw = int(conn.execute("SELECT COUNT(*) FROM raw_chunks").fetchone()[0])
    finally:
        conn.close()
    return ClockRun(nights, events, raw)


WRONG = [
    pytest.param(
        timedelta(hours=-8, minutes=-30), id="booted 8.5 h behind (stale time of the last shutdown)"
    ),
    pytest.param(datetime(1970, 1, 1, tzinfo=UTC) - TRUE_START, id="booted in 1970"),
]


@pytest.mark.parametrize("wrong_by", WRONG)
def test_ntp_setting_the_clock_mid_night_keeps_one_night_on_the_right_date(
    tmp_path: Path, wrong_by: timedelta
) -> None:
    run = _run(tmp_path, wrong_by)
    assert len(run.nights) == 1, [(n["started_at"], n["kind"], n["end_reason"]) for n in run.nights]
    night = run.nights[0]
    assert night["kind"] == "night"
    assert night["night_date"] == "2026-11-21", "the night belongs to the evening it really began"
    started = parse_iso_utc(night["started_at"])
    assert TRUE_START <= started < TRUE_START + timedelta(minutes=5), f"started {started}, not the boot time"


@pytest.mark.parametrize("wrong_by", WRONG)
def test_events_keep_their_order_and_lie_within_their_night_across_the_jump(
    tmp_path: Path, wrong_by: timedelta
) -> None:
    run = _run(tmp_path, wrong_by)
    night = run.nights[0]
    started = parse_iso_utc(night["started_at"])
    ended = parse_iso_utc(night["ended_at"]) if night["ended_at"] else None
    starts = [parse_iso_utc(e["start_at"]) for e in run.events]
    outside = [
        (e["event_type"], e["start_at"])
        for e, t in zip(run.events, starts, strict=True)
        if t < started - timedelta(seconds=1) or (ended is not None and t > ended)
    ]
    assert not outside, (
        f"events outside their night {night['started_at']}..{night['ended_at']}: {outside[:5]}"
    )
    # Against the stream: sorted by stored time, events come in the detector's order, every one the
    # detector finds from the night's first event to the end of the stream (a lost tail fails).
    reference = sorted(expected_events(SEED, DURATION_S), key=lambda e: (round(e.start_s, 1), e.event_type))
    stored = sorted(
        zip(starts, (e["event_type"] for e in run.events), strict=True),
        key=lambda s: (round((s[0] - TRUE_START).total_seconds(), 1), s[1]),
    )
    in_night = [e for e in reference if e.start_s >= (stored[0][0] - TRUE_START).total_seconds() - 0.01]
    assert [k for _, k in stored] == [e.event_type for e in in_night], (
        f"{len(stored)} stored, {len(in_night)} found by the detector from the night's first event"
    )
    offsets = [(t - TRUE_START).total_seconds() for t, _ in stored]
    assert all(abs(a - b.start_s) < 0.02 for a, b in zip(offsets, in_night, strict=True)), (
        "times are stream times"
    )


def test_a_clock_set_back_mid_night_is_not_followed_so_nothing_is_reordered_or_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fast_by = timedelta(hours=2)  # the clock ran two hours fast until NTP set it back
    run = _run_once(tmp_path, fast_by)
    assert len(run.nights) == 1
    assert sum("went back" in r.getMessage() for r in caplog.records) == 1, "logged once"
    anchor = TRUE_START + fast_by  # stream times keep running forward from the first block
    reference = expected_events(SEED, DURATION_S)
    pool = [(e.event_type, e.start_s) for e in reference]
    for e in run.events:
        t = (parse_iso_utc(e["start_at"]) - anchor).total_seconds()
        match = next((p for p in pool if p[0] == e["event_type"] and abs(p[1] - t) < 0.02), None)
        assert match is not None, f"{e['event_type']} at {e['start_at']} is not at its stream time"
        pool.remove(match)
    assert len(run.events) >= 10
    first = min((parse_iso_utc(e["start_at"]) - anchor).total_seconds() for e in run.events)
    assert not [p for p in pool if p[1] >= first - 0.01], (
        "every event the detector finds after the first is stored"
    )
