"""A movement's reported start is where it physically rises (issue 17), not where the envelope
crossed the onset threshold."""

from __future__ import annotations

import numpy as np

from service.detect import analyze_array
from service.detect.types import MOVEMENT_TYPES, Event
from tests.detect.synth import band_noise, sleeper


def _movements(x: np.ndarray, rate_hz: float) -> list[Event]:
    return [o for o in analyze_array(x, rate_hz) if isinstance(o, Event) and o.type in MOVEMENT_TYPES]


def _add(x: np.ndarray, rate_hz: float, start_s: float, env: np.ndarray, rms: float, seed: int) -> None:
    i0 = round(start_s * rate_hz)
    x[i0 : i0 + env.size] += rms * env * band_noise(np.random.default_rng(seed), env.size, rate_hz, 2.0, 20.0)


def test_slowly_rising_limb_movement_starts_where_it_rises_not_where_it_crosses_the_threshold() -> None:
    for rate in (50.0, 250.0):
        x = sleeper(rate, 90.0, seed=3)
        t = np.arange(round(2.0 * rate)) / rate
        rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.4, 0, 1))  # 0.4-s rise, then a plateau
        fall = 0.5 - 0.5 * np.cos(np.pi * np.clip((2.0 - t) / 0.1, 0, 1))
        _add(x, rate, 50.0, rise * fall, 150.0, seed=4)
        (ev,) = _movements(x, rate)
        assert ev.type == "limb_movement"
        # one 0.1-s envelope frame of tolerance (the old rule reported it 0.2 s late at 50 Hz)
        assert abs(ev.start_s - 50.0) <= 0.1 + 1e-6, (rate, ev)
        assert abs(ev.end_s - 52.0) <= 0.1 + 1e-6, (rate, ev)
