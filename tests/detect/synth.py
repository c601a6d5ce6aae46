"""Synthetic bed-sensor signals for the detector tests (numpy only, deterministic)."""

from __future__ import annotations

import numpy as np


def bcg(rate_hz: float, duration_s: float, heart_bpm: float = 60.0, amp: float = 20.0) -> np.ndarray:
    """A ballistocardiogram-like pulse train: an I-J-K complex per beat."""
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    out = np.zeros(t.size)
    period = 60.0 / heart_bpm
    for beat in np.arange(0.3, duration_s, period):
        for delay, a, w in ((0.15, -0.45, 0.018), (0.21, 1.0, 0.022), (0.28, -0.75, 0.026)):
            c = beat + delay
            lo, hi = np.searchsorted(t, [c - 5 * w, c + 5 * w])
            out[lo:hi] += amp * a * np.exp(-0.5 * ((t[lo:hi] - c) / w) ** 2)
    return out


def breathing(rate_hz: float, duration_s: float, breath_bpm: float = 15.0, amp: float = 40.0) -> np.ndarray:
    """A breathing wave."""
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    return amp * np.sin(2 * np.pi * breath_bpm / 60.0 * t)


def sleeper(
    rate_hz: float = 250.0,
    duration_s: float = 120.0,
    seed: int = 0,
    heart_bpm: float = 60.0,
    breath_bpm: float = 15.0,
    dc: float = 2048.0,
    noise: float = 1.0,
) -> np.ndarray:
    """A still person in bed: DC offset, BCG, breathing and sensor noise."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * rate_hz)
    x = dc + bcg(rate_hz, duration_s, heart_bpm) + breathing(rate_hz, duration_s, breath_bpm)
    return x + rng.normal(0.0, noise, n)


def empty_bed(
    rate_hz: float = 250.0, duration_s: float = 120.0, seed: int = 0, dc: float = 2048.0
) -> np.ndarray:
    """Sensor noise only."""
    rng = np.random.default_rng(seed)
    return dc + rng.normal(0.0, 1.0, round(duration_s * rate_hz))


def band_noise(rng: np.random.Generator, n: int, rate_hz: float, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Unit-RMS noise limited to lo..hi Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate_hz)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    y = np.fft.irfft(spec, n)
    return y / max(float(np.sqrt(np.mean(y**2))), 1e-12)


def add_burst(
    x: np.ndarray,
    rate_hz: float,
    start_s: float,
    duration_s: float,
    rms: float = 300.0,
    band: tuple[float, float] = (2.0, 20.0),
    seed: int = 1,
    clonus_hz: float = 0.0,
) -> np.ndarray:
    """Add a movement burst (band-limited noise with soft edges) in place; returns x."""
    rng = np.random.default_rng(seed)
    i0 = round(start_s * rate_hz)
    n = round(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    ramp = min(0.05, duration_s / 5)
    env = np.clip(t / ramp, 0, 1) * np.clip((duration_s - t) / ramp, 0, 1)
    if clonus_hz:
        env = env * (0.1 + 0.9 * ((1 + np.cos(2 * np.pi * clonus_hz * t)) / 2) ** 3) * 1.5
    x[i0 : i0 + n] += rms * env * band_noise(rng, n, rate_hz, *band)
    return x
