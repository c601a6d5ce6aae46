"""`bedside probe` and `bedside calibrate` on real sources: the piezo through a fake MCP3008, and replays."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory

from hardware.piezo import PiezoSource
from hardware.replay import Recording, ReplaySource
from hardware.simulated import SimulatedNight
from service.calibrate import calibrate, phases
from service.probe import probe
from tests.daemonutil import REPO
from tests.hardware.wire_fakes import FakeMCP3008

RATE = 100.0


def _probe(source: Any, seconds: float) -> dict[str, Any]:
    reports: list[dict[str, Any]] = []
    final = asyncio.run(probe(source, seconds, report=reports.append, interval_s=0.2))
    assert reports, "probe reports while it runs"
    return final


def test_probe_reads_the_scripted_level_through_the_real_piezo_source(mock_factory: MockFactory) -> None:
    wave = [500 + (n % 20) for n in range(20)]  # a sawtooth around 510 counts
    with FakeMCP3008(inputs={0: wave}):
        final = _probe(PiezoSource(chip="mcp3008", channel=0, rate_hz=RATE, block_s=0.05), 0.6)
    level = final["level"]
    assert level["minimum"] >= 500 and level["maximum"] <= 519
    assert 505 <= level["median"] <= 514
    assert final["problems"] == []
    assert "sampling" in final and final["sampling"]["samples"] > 0


def test_probe_says_plainly_when_the_channel_reads_a_constant(mock_factory: MockFactory) -> None:
    with FakeMCP3008(inputs={1: [700]}):  # the film is on CH1; we read CH0, which reads 0
        final = _probe(PiezoSource(chip="mcp3008", channel=0, rate_hz=RATE, block_s=0.05), 0.6)
    assert any("never changes" in p for p in final["problems"])


def _phases_signal(seed: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = SimulatedNight(seed=seed, rate_hz=RATE, duration_s=600.0, occupied=False).render(
        0, int(60 * RATE)
    )
    night = SimulatedNight(seed=seed, rate_hz=RATE, duration_s=3600.0, movements=False, glitches=False,
                           bathroom_trip=False, restless=False, plm_series=False, awakenings=0)  # fmt: skip
    start = int(1800 * RATE)
    still = night.render(start, int(60 * RATE))
    taps = night.render(start + int(60 * RATE), int(15 * RATE)).copy()
    rng = np.random.default_rng(seed)
    for at_s in (3.0, 6.0, 9.0):
        i = int(at_s * RATE)
        burst = rng.normal(0, 1, int(0.15 * RATE)) * 40 * float(np.std(still))
        taps[i : i + burst.size] += burst.astype(np.float32)
    return empty, still, taps


def _replay(*parts: np.ndarray) -> ReplaySource:
    samples = np.concatenate(parts).astype(np.float32)
    return ReplaySource(Recording(samples, RATE, None, "test", None), speed=0.0, block_s=0.5)


def _calibrate(source: ReplaySource) -> Any:
    asked: list[str] = []
    result = asyncio.run(
        calibrate(source, steps=phases(60.0, 60.0, 15.0), ask=asked.append, say=lambda s: None)
    )
    assert len(asked) == 3, "one instruction per step"
    return result


def test_calibration_of_a_good_sensor_is_usable_and_sees_the_heartbeat() -> None:
    empty, still, taps = _phases_signal()
    result = _calibrate(_replay(empty, still, taps))
    assert result.usable, result.reasons
    assert result.values["occupancy_ratio"] > 1.2
    assert result.values["tap_gain"] >= 4
    assert result.values["heart_bpm"] is not None and 40 <= result.values["heart_bpm"] <= 100
    assert result.values["presence_floor_rms"] and result.values["presence_floor_rms"] > 0


def test_calibration_of_a_wrong_channel_is_unusable_and_says_why() -> None:
    flat = np.full(int(135 * RATE), 0.0, dtype=np.float32)
    result = _calibrate(_replay(flat))
    assert not result.usable
    assert any("never changes" in r and "wrong channel" in r for r in result.reasons)


def test_calibration_that_cannot_tell_an_occupied_bed_from_an_empty_one_is_unusable() -> None:
    empty, _, _ = _phases_signal()
    result = _calibrate(_replay(empty, empty, empty[: int(15 * RATE)]))
    assert not result.usable
    assert any("looks like an empty bed" in r for r in result.reasons)


def test_calibrate_command_saves_the_result_and_exits_nonzero_when_unusable(tmp_path: Path) -> None:
    rec = tmp_path / "flat.npy"
    np.save(rec, np.full(int(40 * RATE), 512.0, dtype=np.float32))
    db = tmp_path / "b.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-m", "service", "calibrate", "--sensor", f"replay:{rec}", "--rate-hz", str(RATE),
         "--speed", "0", "--db", str(db), "--yes", "--empty-s", "5", "--still-s", "5", "--tap-s", "5"],
        capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "NOT usable" in proc.stderr and "never changes" in proc.stderr
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT sensor, usable, verdict FROM calibrations").fetchall()
    conn.close()
    assert rows == [("replay", 0, rows[0][2])] and rows[0][2].startswith("unusable")


def test_calibrate_without_a_terminal_asks_for_yes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "calibrate", "--db", str(tmp_path / "b.sqlite3")],
        capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2 and "--yes" in proc.stderr


def test_probe_command_on_a_simulated_sensor_prints_levels_and_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "probe", "--seconds", "1.5", "--rate-hz", "100"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "level" in proc.stdout and "rate" in proc.stdout
