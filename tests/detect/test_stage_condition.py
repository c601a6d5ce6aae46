"""Stage 1 alone: DC and drift removal, mains notch, decimation and bands (Conditioner)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from service.detect.condition import Conditioner, _Sos
from service.detect.filters import butter_sos, notch_sos, sosfilt_zi
from service.detect.params import DetectorParams


def run(x: np.ndarray, rate: float, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    c = Conditioner(rate, DetectorParams())
    block = block or x.size
    parts = [
        c.process(x[i : i + block], np.zeros(min(block, x.size - i), bool), [])
        for i in range(0, x.size, block)
    ]
    return np.concatenate([p.move for p in parts]), np.concatenate([p.breath for p in parts])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def test_dc_offset_and_slow_drift_do_not_reach_the_movement_band() -> None:
    t = np.arange(250 * 60) / 250.0
    x = 2048.0 + 300.0 * np.sin(2 * np.pi * t / 600.0)
    move, _ = run(x, 250.0)
    assert rms(move[move.size // 4 :]) < 0.05


def test_mains_hum_is_notched_out_at_250_hz() -> None:
    t = np.arange(250 * 20) / 250.0
    move, _ = run(2000.0 + 50.0 * np.sin(2 * np.pi * 50.0 * t), 250.0)
    assert rms(move[move.size // 4 :]) < 0.5  # 50 counts of hum -> well under a count


def test_movement_band_passes_10_hz_and_works_at_50_hz_input() -> None:
    for rate in (50.0, 250.0, 1000.0):
        t = np.arange(round(rate * 20)) / rate
        move, _ = run(100.0 * np.sin(2 * np.pi * 10.0 * t), rate)
        assert rms(move[move.size // 2 :]) == pytest.approx(100 / np.sqrt(2), rel=0.2)


def test_decimation_reaches_an_internal_rate_of_at_least_50_hz() -> None:
    for rate, internal in ((50.0, 50.0), (250.0, 50.0), (1000.0, 50.0), (128.0, 64.0)):
        assert Conditioner(rate, DetectorParams()).internal_hz == internal


def test_breath_band_keeps_breathing_and_movement_band_keeps_beats() -> None:
    t = np.arange(250 * 60) / 250.0
    move, breath = run(40.0 * np.sin(2 * np.pi * 0.25 * t) + 5.0 * np.sin(2 * np.pi * 8 * t), 250.0)
    assert rms(breath[breath.size // 4 :]) > 20.0
    assert 2.5 < rms(move[move.size // 4 :]) < 4.5  # the beats' band, not the breathing


def test_conditioning_is_block_size_invariant() -> None:
    rng = np.random.default_rng(0)
    x = 2048 + rng.normal(0, 20, 250 * 30)
    a = run(x, 250.0)
    b = run(x, 250.0, block=33)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-9)


def test_streaming_filter_matches_scipy_sosfilt_in_one_call() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 5000)
    from scipy import signal

    sos = signal.butter(2, [2, 20], "bandpass", fs=250, output="sos")
    a = _Sos(sos)
    a.reset(0.0)
    got = np.concatenate([a(x[:1234]), a(x[1234:])])
    np.testing.assert_allclose(got, signal.sosfilt(sos, x), atol=1e-12)


@pytest.mark.parametrize(
    ("order", "edges", "btype", "fs"),
    [
        (2, (2.0, 20.0), "bandpass", 50.0),
        (2, (0.05, 1.0), "bandpass", 50.0),
        (2, (0.5, 2.0), "bandpass", 12.5),
        (4, 20.0, "lowpass", 250.0),
        (4, 80.0, "lowpass", 1000.0),
        (2, 2.0, "highpass", 12.5),
    ],
)
def test_butterworth_designs_match_scipy(
    order: int, edges: float | tuple[float, float], btype: str, fs: float
) -> None:
    from scipy import signal

    mine = butter_sos(order, edges, btype, fs)
    ref = signal.butter(order, edges, btype, fs=fs, output="sos")
    np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sosfilt_zi(mine), signal.sosfilt_zi(ref), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("f0", "fs"), [(50.0, 250.0), (60.0, 1000.0), (50.0, 125.0)])
def test_notch_design_matches_scipy(f0: float, fs: float) -> None:
    from scipy import signal

    np.testing.assert_allclose(
        notch_sos(f0, 30.0, fs), signal.tf2sos(*signal.iirnotch(f0, 30.0, fs=fs)), rtol=1e-9, atol=1e-12
    )


def test_bad_filter_designs_are_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and fs/2"):
        butter_sos(2, 30.0, "lowpass", 50.0)
    with pytest.raises(ValueError, match="unsupported filter type"):
        butter_sos(2, 5.0, "bandstop", 50.0)
    with pytest.raises(ValueError, match="order"):
        butter_sos(0, 5.0, "lowpass", 50.0)
    with pytest.raises(ValueError, match="notch"):
        notch_sos(30.0, 30.0, 50.0)


def test_the_daemon_side_detector_does_not_import_scipy_signal() -> None:
    code = "import sys, service.detect; assert 'scipy.signal' not in sys.modules, 'scipy.signal imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
