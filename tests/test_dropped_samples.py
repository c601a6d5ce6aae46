"""Samples a source loses (a dropped block) are a sensor_fault event, and time stays exact."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hardware.block import Block
from hardware.simulated import SimulatedNight
from service.app import Daemon
from service.config import load_config

RATE = 50.0


class DroppingSource:
    """Replays a simulated night in 1-s blocks but never delivers blocks 100-104 (5 s lost)."""

    rate_hz = RATE
    channels = 1
    bits = 12

    def __init__(self) -> None:
        self.night = SimulatedNight(seed=3, rate_hz=RATE, duration_s=300.0, glitches=False)
        self.start = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)

    async def _blocks(self) -> AsyncIterator[Block]:
        n = int(RATE)
        for k in range(300):
            if 100 <= k < 105:
                continue
            index = k * n
            yield Block(self.start + timedelta(seconds=k), index, RATE, self.night.render(index, n))
            await asyncio.sleep(0)

    def __aiter__(self) -> AsyncIterator[Block]:
        return self._blocks()

    async def close(self) -> None:
        return None


def test_a_dropped_block_is_a_sensor_fault_with_the_count_and_times_stay_exact(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    cfg = load_config(
        environ={},
        overrides={
            "storage": {"db_path": str(db)},
            "mqtt": {"enabled": False},
            "sessions": {"mode": "run"},
            "web": {"enabled": False},
        },
    )
    daemon = Daemon(cfg, DroppingSource(), "test")
    assert asyncio.run(daemon.run()) == 0
    assert daemon.dropped_samples == 5 * int(RATE)
    conn = sqlite3.connect(db)
    faults = conn.execute(
        "SELECT start_at, end_at, details FROM events WHERE event_type = 'sensor_fault'"
    ).fetchall()
    last_epoch = conn.execute("SELECT MAX(start_at) FROM epochs").fetchone()[0]
    conn.close()
    dropped = [f for f in faults if "dropped_samples" in json.loads(f[2])]
    assert len(dropped) == 1
    start, end, details = dropped[0]
    assert (start, end) == ("2026-11-22T01:01:40.000Z", "2026-11-22T01:01:45.000Z")
    assert json.loads(details)["dropped_samples"] == 250
    # The detector's clock did not slip: epochs still fall on the stream's 30-s grid.
    assert last_epoch is not None and last_epoch.endswith(("00.000Z", "30.000Z"))
    assert daemon.blocks == 295
