"""Sensor faults in one night: the sensor unplugged and plugged back, a burst of ADC glitches and a
stuck ADC. Each is a ``sensor_fault`` event, never a movement; the sensor is reported healthy again
after each; the night is kept as one night and movements away from the faults are still found.

The faulty signal is a simulated night with the faults written into it, served through the real
ReplaySource to the real Daemon (store on a real SQLite file) as fast as the CPU allows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest

from hardware.block import Block
from hardware.replay import Recording, ReplaySource
from hardware.simulated import ADC_MAX, SimulatedNight
from service.app import Daemon
from service.config import load_config
from service.timefmt import parse_iso_utc
from tests.reliability.conftest import evening_timezone, expected_events
from tests.sources import WrappedSource

RATE_HZ = 250.0
SEED = 9
DURATION_S = 2400.0
UNPLUGGED = (600.0, 660.0)  # the ADC input is pulled to 0 with the film unplugged
GLITCHES = (900.0, 900.4, 900.9, 901.3, 1500.0)  # single samples at full scale
STUCK = (1200.0, 1290.0)  # the ADC returns the same code


class Watched(WrappedSource):
    """Wraps a source and records, after each block, whether the daemon says the sensor is ok."""

    def __init__(self, inner: ReplaySource) -> None:
        super().__init__(inner)
        self.seen: list[tuple[float, bool]] = []

    async def blocks(self) -> AsyncIterator[Block]:
        async for block in self.inner:
            if self.daemon is not None:
                self.seen.append((block.index / block.rate_hz, self.daemon.live.sensor_ok))
            yield block


def _faulty_night() -> np.ndarray:
    night = SimulatedNight(seed=SEED, rate_hz=RATE_HZ, duration_s=DURATION_S, glitches=False)
    x = night.render_all().astype(np.float32).copy()
    a, b = (int(t * RATE_HZ) for t in UNPLUGGED)
    x[a:b] = 0.0
    for t in GLITCHES:
        x[int(t * RATE_HZ)] = ADC_MAX
    a, b = (int(t * RATE_HZ) for t in STUCK)
    x[a:b] = x[a]
    return x


def _within(t: float, span: tuple[float, float], pad_s: float) -> bool:
    return span[0] - pad_s <= t <= span[1] + pad_s


@dataclass
class FaultyRun:
    """What one daemon run over the faulty night left behind."""

    nights: int
    events: list[tuple[str, float]]  # (type, start in seconds after the stream began)
    seen: list[tuple[float, bool]]  # (stream seconds, sensor ok) after each block
    ok_at_end: bool

    def starts(self, types: set[str]) -> list[float]:
        return [t for k, t in self.events if k in types]


MOVEMENTS = {"jerk", "limb_movement", "spasm", "large_movement"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> FaultyRun:
    """The real Daemon over the faulty night (run once for the tests below)."""
    db = tmp_path_factory.mktemp("sensor") / "b.sqlite3"
    cfg = load_config(
        environ={},
        overrides={
            "storage": {"db_path": str(db)},
            "mqtt": {"enabled": False},
            "web": {"enabled": False},
            "sessions": {"mode": "run", "timezone": evening_timezone()},
        },
    )
    rec = Recording(_faulty_night(), RATE_HZ, None, "faulty", "x")
    source = Watched(ReplaySource(rec, speed=0.0, block_s=0.1))
    daemon = Daemon(cfg, source, "faulty night")
    source.daemon = daemon
    assert asyncio.run(daemon.run()) == 0
    conn = sqlite3.connect(db)
    try:
        nights = conn.execute("SELECT COUNT(*) FROM nights").fetchone()[0]
        rows = conn.execute("SELECT event_type, start_at FROM events ORDER BY rowid").fetchall()
    finally:
        conn.close()
    assert daemon._stream_start is not None
    t0 = daemon._stream_start
    events = [(k, (parse_iso_utc(at) - t0).total_seconds()) for k, at in rows]
    return FaultyRun(int(nights), events, source.seen, daemon.live.sensor_ok)


def _healthy_again(run: FaultyRun, span: tuple[float, float]) -> None:
    """Reported faulty by 10 s after the fault ends at the latest, and healthy again 90 s after it."""
    around = [ok for t, ok in run.seen if span[0] < t < span[1] + 10]
    after = [ok for t, ok in run.seen if span[1] + 90 < t < span[1] + 120]
    assert around and not all(around), f"the sensor is reported faulty for the fault {span}"
    assert after and all(after), f"the sensor is reported healthy again after {span}"


def test_an_unplugged_sensor_is_a_fault_not_movement_and_recovers_when_plugged_back(run: FaultyRun) -> None:
    assert any(_within(t, UNPLUGGED, 5.0) for t in run.starts({"sensor_fault"})), run.starts({"sensor_fault"})
    assert not [t for t in run.starts(MOVEMENTS) if _within(t, UNPLUGGED, 0.5)], (
        "unplugging is not a movement"
    )
    _healthy_again(run, UNPLUGGED)


def test_an_unplugged_sensor_is_reported_while_it_is_unplugged(run: FaultyRun) -> None:
    during = [ok for t, ok in run.seen if UNPLUGGED[0] + 10 < t < UNPLUGGED[1]]
    assert during and not any(during), "faulty within 10 s of unplugging"


def test_glitches_are_faults_and_the_sensor_is_healthy_again(run: FaultyRun) -> None:
    faults = run.starts({"sensor_fault"})
    assert any(_within(t, (900.0, 901.3), 1.0) for t in faults), "a burst of glitches is a sensor_fault"
    assert any(abs(t - 1500.0) < 1.0 for t in faults), "a lone glitch is a sensor_fault"
    assert not [t for t in run.starts({"jerk"}) if abs(t - 1500.0) < 0.5], "a glitch is not a jerk"


def test_a_stuck_adc_is_a_fault_and_recovers(run: FaultyRun) -> None:
    assert any(_within(t, STUCK, 5.0) for t in run.starts({"sensor_fault"})), run.starts({"sensor_fault"})
    _healthy_again(run, STUCK)


def test_a_stuck_adc_is_reported_while_it_is_stuck(run: FaultyRun) -> None:
    during = [ok for t, ok in run.seen if STUCK[0] + 10 < t < STUCK[1]]
    assert during and not any(during), "faulty within 10 s of the code sticking"


def test_a_stuck_adc_is_not_a_bed_exit_an_awakening_or_a_movement(run: FaultyRun) -> None:
    types = MOVEMENTS | {"bed_exit", "bed_entry", "awakening"}
    assert not [(k, t) for k, t in run.events if k in types and _within(t, STUCK, 0.5)], run.events


def test_the_night_is_kept_whole_and_movements_away_from_the_faults_are_found(run: FaultyRun) -> None:
    assert run.nights == 1, "the faults did not split the night"
    assert run.ok_at_end
    spans = (UNPLUGGED, STUCK, (900.0, 901.3), (1500.0, 1500.0))
    away = [
        e
        for e in expected_events(SEED, DURATION_S)
        if e.event_type in MOVEMENTS and not any(_within(e.start_s, s, 90.0) for s in spans)
    ]
    found = [e for e in away if any(k == e.event_type and abs(t - e.start_s) < 0.5 for k, t in run.events)]
    assert len(away) >= 10 and len(found) >= 0.9 * len(away), f"{len(found)} of {len(away)} movements found"
