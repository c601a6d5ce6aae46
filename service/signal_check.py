"""Plain measurements of a raw sensor signal for `bedside probe` and `bedside calibrate` (numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Below this many ADC counts of variation a reading is "constant" (nothing connected).
CONSTANT_COUNTS = 0.5
#: Share of samples at either rail above which the input is called saturated.
RAIL_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Level:
    """Level and variation of a stretch of raw samples, in ADC counts (or g for an IMU)."""

    samples: int
    median: float
    minimum: float
    maximum: float
    noise: float  # robust standard deviation of the detrended signal
    peak: float  # largest absolute deviation from the 1-s running median
    rail_share: float  # share of samples at 0 or at full scale (0 when full scale unknown)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def measure(x: np.ndarray, rate_hz: float, full_scale: float | None = None) -> Level:
    """Level, robust noise (MAD of the signal minus its 1-s moving mean) and peak deviation."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return Level(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    win = max(1, int(rate_hz))
    if x.size > win:
        kernel = np.ones(win) / win
        trend = np.convolve(np.pad(x, (win // 2, win - 1 - win // 2), mode="edge"), kernel, mode="valid")
    else:
        trend = np.full_like(x, np.mean(x))
    ac = x - trend
    mad = float(np.median(np.abs(ac - np.median(ac)))) * 1.4826
    rail = 0.0
    if full_scale:
        rail = float(np.mean((x <= 0.0) | (x >= full_scale)))
    return Level(
        samples=int(x.size),
        median=float(np.median(x)),
        minimum=float(np.min(x)),
        maximum=float(np.max(x)),
        noise=mad,
        peak=float(np.max(np.abs(ac))),
        rail_share=rail,
    )


def problems(level: Level) -> list[str]:
    """What is plainly wrong with a signal, in words a user can act on (empty when it looks alive)."""
    out: list[str] = []
    if level.samples == 0:
        return ["no samples arrived: the sensor is not being read"]
    if level.maximum - level.minimum < CONSTANT_COUNTS:
        out.append(
            f"the reading never changes (stuck at {level.median:g}): nothing connected on this "
            "channel, wrong channel, or the sensor lead is broken"
        )
    if level.rail_share > RAIL_SHARE:
        out.append(
            f"{level.rail_share:.0%} of samples sit at the end of the ADC range: input saturated or "
            "floating; check the mid-rail bias and the load resistor"
        )
    return out


#: Share of samples equal to the one before above which a recording hardly looks like a raw sensor
#: signal: a bed sensor's noise changes it at almost every sample (2 % repeats on the real under-
#: mattress and IMU recordings), a rate or a temperature column repeats (88-99 %).
REPEAT_SHARE = 0.8


def repeat_share(x: np.ndarray) -> float:
    """Share of samples equal to the sample before (0 for fewer than two samples)."""
    x = np.asarray(x)
    return float(np.mean(x[1:] == x[:-1])) if x.size > 1 else 0.0


def recording_problems(x: np.ndarray) -> list[str]:
    """What makes a recording unlikely to be a raw bed-sensor signal, in words (empty when none)."""
    share = repeat_share(x)
    if share > REPEAT_SHARE:
        return [
            f"{share:.0%} of samples repeat the one before, where a raw bed-sensor signal changes at "
            "almost every sample: this column looks like a computed value (a rate, a temperature), "
            "or the sensor barely moves the ADC; the events found in it may mean nothing"
        ]
    return []
