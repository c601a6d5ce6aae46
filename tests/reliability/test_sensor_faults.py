"""Sensor faults in one night: the sensor unplugged and plugged back, a burst of ADC glitches and a
stuck ADC. Each is a ``sensor_fault`` event, never a movement; the sensor is reported healthy again
after each; the night is kept as one night and movements away from the faults are still found.

The faulty signal is a simulated night with the faults written into it, served through the real
ReplaySource to the real Daemon (store on a real SQLite file) as fast as the CPU allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from hardware.block import Block
from hardware.errors import SensorError
from hardware.replay import Recording, ReplaySource
from hardware.simulated import ADC_MAX, SimulatedNight
from service.app import Daemon
from service.config import load_config
from service.timefmt import parse_iso_utc
from tests.daemonutil import REPO, in_process_config, query
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
    night: dict[str, object]  # the (first) night row
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
            # Nights as on a unit: one starts at the bed entry, and a bed exit or entry the faults
            # were taken for would show (in a zone where it is evening now, so no morning rule).
            "sessions": {"mode": "auto", "timezone": evening_timezone()},
        },
    )
    rec = Recording(_faulty_night(), RATE_HZ, None, "faulty", "x")
    source = Watched(ReplaySource(rec, speed=0.0, block_s=0.1))
    daemon = Daemon(cfg, source, "faulty night")
    source.daemon = daemon
    assert asyncio.run(daemon.run()) == 0
    nights = [dict(r) for r in query(db, "SELECT * FROM nights ORDER BY started_at")]
    rows = query(db, "SELECT event_type, start_at FROM events ORDER BY rowid")
    assert daemon._stream_start is not None
    t0 = daemon._stream_start
    events = [(k, (parse_iso_utc(at) - t0).total_seconds()) for k, at in rows]
    night = (
        {**nights[0], "started_s": (parse_iso_utc(nights[0]["started_at"]) - t0).total_seconds()}
        if nights
        else {}
    )
    return FaultyRun(len(nights), night, events, source.seen, daemon.live.sensor_ok)


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


def test_an_unplugged_sensor_is_not_a_bed_exit_or_entry(run: FaultyRun) -> None:
    types = {"bed_exit", "bed_entry", "awakening"}
    assert not [(k, t) for k, t in run.events if k in types and _within(t, UNPLUGGED, 0.5)], run.events


def test_the_night_is_kept_whole_and_movements_away_from_the_faults_are_found(run: FaultyRun) -> None:
    assert run.nights == 1, "the faults did not split the night"
    (entry,) = SimulatedNight(seed=SEED, rate_hz=RATE_HZ, duration_s=DURATION_S).events_of("bed_entry")
    assert run.night["kind"] == "night" and run.night["start_reason"] == "bed_entry", run.night
    assert abs(float(str(run.night["started_s"])) - entry.start_s) < 30.0, "the night began at the bed entry"
    assert run.night["ended_at"] is None, (
        "still open when the stream ended (auto sessions keep it for a restart)"
    )
    assert run.ok_at_end
    spans = (UNPLUGGED, STUCK, (900.0, 901.3), (1500.0, 1500.0))
    away = [
        e
        for e in expected_events(SEED, DURATION_S)
        if e.event_type in MOVEMENTS and not any(_within(e.start_s, s, 90.0) for s in spans)
    ]
    found = [e for e in away if any(k == e.event_type and abs(t - e.start_s) < 0.5 for k, t in run.events)]
    assert len(away) >= 10 and len(found) >= 0.9 * len(away), f"{len(found)} of {len(away)} movements found"


# ----- a sensor read that fails for good mid-night (SensorError), then the sensor back ------------

FAILS_AT_S = 900.0  # stream seconds into the night when the sensor's reads fail
RESTART_S = 5.0  # systemd's RestartSec: the unit restarts the daemon this long after it exits


class FailsAt(WrappedSource):
    """The inner source until stream second ``at_s``; then the read fails as a piezo's or an IMU's
    does once its retries are spent (``SensorError`` from the iterator)."""

    def __init__(self, inner: ReplaySource, at_s: float) -> None:
        super().__init__(inner)
        self.at_s = at_s

    async def blocks(self) -> AsyncIterator[Block]:
        async for block in self.inner:
            if block.index / block.rate_hz >= self.at_s:
                raise SensorError("MCP3208 read failed 3 times: [Errno 5] Input/output error")
            yield block


@dataclass
class BrokenRun:
    """Two daemon runs over one night: until the sensor failed, and the restart with it back."""

    first_error: BaseException | None
    nights: list[dict[str, Any]]
    events: list[tuple[str, float, str]]  # (type, seconds after the first stream began, night id)
    restarted_at_s: float


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> BrokenRun:
    db = tmp_path_factory.mktemp("sensor-error") / "b.sqlite3"
    cfg = in_process_config(db, mode="auto", timezone=evening_timezone())
    night = SimulatedNight(seed=SEED, rate_hz=RATE_HZ, duration_s=DURATION_S, glitches=False)
    x = night.render_all().astype(np.float32)
    start = datetime.now(UTC).replace(microsecond=0)
    first = Daemon(
        cfg, FailsAt(ReplaySource(Recording(x, RATE_HZ, None, "sim", "x"), start=start), FAILS_AT_S), "s"
    )
    error: BaseException | None = None
    try:
        asyncio.run(first.run())
    except SensorError as exc:  # the CLI exits 4 on it; the unit's Restart=on-failure starts it again
        error = exc
    # The restart: a new stream from the sensor, RESTART_S (and the time to fail) after the last block,
    # as a live sensor's stream is stamped by the wall clock.
    back = FAILS_AT_S + RESTART_S
    rest = Recording(x[int(back * RATE_HZ) :], RATE_HZ, None, "sim", "x")
    second = Daemon(cfg, ReplaySource(rest, start=start + timedelta(seconds=back)), "s")
    assert asyncio.run(second.run()) == 0
    nights = [dict(r) for r in query(db, "SELECT * FROM nights ORDER BY started_at")]
    rows = query(db, "SELECT event_type, start_at, night_id FROM events ORDER BY rowid")
    events = [(k, (parse_iso_utc(at) - start).total_seconds(), n) for k, at, n in rows]
    return BrokenRun(error, nights, events, back)


def test_a_failed_sensor_stops_the_daemon_with_its_error_for_the_unit_to_restart(broken: BrokenRun) -> None:
    assert isinstance(broken.first_error, SensorError), broken.first_error
    unit = (REPO / "systemd" / "bedside.service").read_text()
    assert "Restart=on-failure" in unit and f"RestartSec={RESTART_S:g}" in unit


def test_a_failed_sensor_keeps_the_night_across_the_restart(broken: BrokenRun) -> None:
    assert len(broken.nights) == 1, f"{len(broken.nights)} nights: the failure split the night"
    (night,) = broken.nights
    assert night["ended_at"] is None and {n for _, _, n in broken.events} == {night["id"]}
    before = [e for e in broken.events if e[1] < FAILS_AT_S]
    after = [e for e in broken.events if e[1] > broken.restarted_at_s]
    assert before and after, "events on both sides of the failure, in the one night"
    # Movements after the restart are found as the detector finds them on the night (past the
    # restarted detector's first minutes, which it needs to learn the baseline again).
    away = [
        e
        for e in expected_events(SEED, DURATION_S)
        if e.event_type in MOVEMENTS
        and e.start_s > broken.restarted_at_s + 300.0
        and e.start_s < DURATION_S - 60
    ]
    found = [e for e in away if any(k == e.event_type and abs(t - e.start_s) < 0.5 for k, t, _ in after)]
    assert len(away) >= 5 and len(found) >= 0.9 * len(away), f"{len(found)} of {len(away)} movements found"
    print(
        f"sensor failed at {FAILS_AT_S:.0f} s, back {RESTART_S:.0f} s later: one night, {len(before)} events "
        f"before, {len(after)} after; {len(found)} of {len(away)} movements found after the restart"
    )


def test_a_failed_sensor_is_recorded_as_a_sensor_fault(broken: BrokenRun) -> None:
    faults = [t for k, t, _ in broken.events if k == "sensor_fault"]
    assert any(FAILS_AT_S - 5.0 <= t <= broken.restarted_at_s for t in faults), faults
