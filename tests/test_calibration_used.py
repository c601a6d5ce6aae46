"""A saved calibration is what the daemon's detector starts from (the empty-bed floor)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hardware.simulated import SimulatedNight, SimulatedSource
from service.app import Daemon
from service.config import load_config
from service.store.store import Store


def _daemon(db: Path) -> Daemon:
    cfg = load_config(
        environ={},
        overrides={
            "storage": {"db_path": str(db)},
            "mqtt": {"enabled": False},
            "sessions": {"mode": "run"},
            "web": {"enabled": False},
        },
    )
    night = SimulatedNight(seed=2, rate_hz=50.0, duration_s=60.0)
    return Daemon(cfg, SimulatedSource(night, speed=0.0), "test")


def _floor_at_start(db: Path) -> float | None:
    async def go() -> float | None:
        daemon = _daemon(db)
        await daemon.start()
        try:
            assert daemon.detector is not None
            return daemon.detector.presence.floor
        finally:
            await daemon.stop()

    return asyncio.run(go())


def test_the_newest_usable_calibration_of_the_sensor_sets_the_empty_bed_floor(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    assert _floor_at_start(db) is None, "no calibration: the floor is learned"

    async def save() -> None:
        store = await Store.open(db)
        await store.add_calibration("2026-11-20T21:00:00.000Z", "simulated", 250.0, True,
                                    {"presence_floor_rms": 0.25}, "usable")  # fmt: skip
        await store.add_calibration("2026-11-21T21:00:00.000Z", "simulated", 250.0, True,
                                    {"presence_floor_rms": 0.5}, "usable")  # fmt: skip
        await store.add_calibration("2026-11-22T21:00:00.000Z", "simulated", 250.0, False,
                                    {"presence_floor_rms": 9.0}, "unusable: taps barely show")  # fmt: skip
        await store.add_calibration("2026-11-22T22:00:00.000Z", "piezo", 250.0, True,
                                    {"presence_floor_rms": 7.0}, "usable")  # fmt: skip
        await store.close()

    asyncio.run(save())
    assert _floor_at_start(db) == 0.5
