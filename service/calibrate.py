"""`bedside calibrate`: a guided check (empty bed, lying still, a tap test) that learns the sensor's levels.

It measures the empty-bed noise floor, the resting level with someone lying still (and the
heart rate the detector reads from it), and the response to a few firm taps on the mattress;
it saves them in the database (``calibrations``) and says plainly when the signal is unusable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from hardware.block import Block, SampleSource
from service.detect import Detector, DetectorParams
from service.detect.types import Vitals
from service.signal_check import Level, measure, problems

logger = logging.getLogger(__name__)

#: Lying still must vary at least this many times more than the empty bed.
MIN_OCCUPANCY_RATIO = 1.2
#: A firm tap must peak at least this many times the resting noise.
MIN_TAP_GAIN = 4.0


@dataclass(frozen=True, slots=True)
class Phase:
    """One step of the procedure: what to ask the user and how long to record."""

    key: str
    instruction: str
    seconds: float


@dataclass
class Calibration:
    """The outcome: measured values, whether the signal is usable, and why not."""

    values: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True when nothing made the signal unusable."""
        return not self.reasons

    @property
    def verdict(self) -> str:
        """One line for the user and the database."""
        return "usable" if self.usable else "unusable: " + "; ".join(self.reasons)


def phases(empty_s: float, still_s: float, tap_s: float) -> list[Phase]:
    """The three steps in order."""
    return [
        Phase("empty", "Make sure nobody is on the bed, then press Enter.", empty_s),
        Phase("still", "Lie down on your usual side of the bed and stay still, then press Enter.", still_s),
        Phase("taps", "Tap the mattress firmly three times near the sensor, then press Enter.", tap_s),
    ]


async def _record(blocks: AsyncIterator[Block], seconds: float, rate_hz: float, live: bool) -> np.ndarray:
    """The next ``seconds`` of samples; a live source first drops what queued up during the prompt."""
    want = round(seconds * rate_hz)
    started = datetime.now(UTC)
    parts: list[np.ndarray] = []
    have = 0
    while have < want:
        block = await anext(blocks)
        if live and block.t_end <= started:
            continue
        x = np.asarray(block.samples, dtype=np.float64).reshape(block.n, -1)[:, 0]
        parts.append(x[: want - have])
        have += parts[-1].size
    return np.concatenate(parts) if parts else np.zeros(0)


def _presence_floor(samples: np.ndarray, rate_hz: float, full_scale: float | None) -> float | None:
    """The empty-bed floor the detector's presence stage learns from this stretch (its own units).

    The bed is known to be empty here, so no window may pass as occupied by chance periodicity
    (``presence_min_periodicity`` above 1): the floor is the quietest window's level."""
    params = DetectorParams(adc_full_scale_counts=full_scale or 0.0, presence_min_periodicity=1.01)
    det = Detector(rate_hz=rate_hz, params=params)
    det.process(samples)
    det.flush()
    return det.presence.floor


def _heart_rate(samples: np.ndarray, rate_hz: float, full_scale: float | None) -> float | None:
    det = Detector(rate_hz=rate_hz, params=DetectorParams(adc_full_scale_counts=full_scale or 0.0))
    outs = det.process(samples) + det.flush()
    rates = [o.heart_bpm for o in outs if isinstance(o, Vitals) and o.heart_bpm is not None]
    return float(np.median(rates)) if rates else None


def judge(
    empty: Level, still: Level, taps: Level, heart_bpm: float | None, presence_floor: float | None = None
) -> Calibration:
    """Values and verdict from the three measurements (pure; the rules are the module constants)."""
    cal = Calibration()
    for name, level in (("empty bed", empty), ("lying still", still), ("tap test", taps)):
        cal.reasons += [f"{name}: {p}" for p in problems(level)]
    ratio = still.noise / empty.noise if empty.noise > 0 else float("inf")
    gain = taps.peak / still.noise if still.noise > 0 else 0.0
    cal.values = {
        "empty_bed_level": round(empty.median, 3),
        "empty_bed_noise": round(empty.noise, 4),
        "resting_level": round(still.median, 3),
        "resting_noise": round(still.noise, 4),
        "occupancy_ratio": round(ratio, 3) if np.isfinite(ratio) else None,
        "tap_peak": round(taps.peak, 3),
        "tap_gain": round(gain, 3),
        "heart_bpm": None if heart_bpm is None else round(heart_bpm, 1),
        "presence_floor_rms": None if presence_floor is None else float(presence_floor),
    }
    if not cal.reasons:
        if ratio < MIN_OCCUPANCY_RATIO:
            cal.reasons.append(
                f"lying still looks like an empty bed (ratio {ratio:.2f} < {MIN_OCCUPANCY_RATIO}): move the "
                "sensor under the chest, or check it is on the channel you configured"
            )
        if gain < MIN_TAP_GAIN:
            cal.reasons.append(
                f"taps barely show (peak {gain:.1f}x the resting level < {MIN_TAP_GAIN}): "
                "the sensor is too far "
                "from the sleeper or not coupled to the mattress"
            )
    return cal


async def calibrate(
    source: SampleSource,
    *,
    steps: list[Phase],
    ask: Callable[[str], None],
    say: Callable[[str], None],
    full_scale: float | None = None,
) -> Calibration:
    """Run the steps on ``source`` (which is closed at the end) and judge the result."""
    rate = source.rate_hz
    live = callable(getattr(source, "stats", None))
    blocks = aiter(source)
    recorded: dict[str, np.ndarray] = {}
    try:
        for step in steps:
            ask(step.instruction)
            say(f"Recording {step.seconds:g} s ...")
            recorded[step.key] = await _record(blocks, step.seconds, rate, live)
            level = measure(recorded[step.key], rate, full_scale)
            say(f"  level {level.median:.1f}, noise {level.noise:.2f}, peak {level.peak:.1f}")
    finally:
        await source.close()
    empty, still, taps = (measure(recorded[k], rate, full_scale) for k in ("empty", "still", "taps"))
    return judge(
        empty,
        still,
        taps,
        _heart_rate(recorded["still"], rate, full_scale),
        _presence_floor(recorded["empty"], rate, full_scale),
    )
