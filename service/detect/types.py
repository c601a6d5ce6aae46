"""What the detector emits: events, state snapshots, epochs and vitals (plain data, no I/O).

Times are seconds since the start of the sample stream (sample index / rate), never wall
clock: the service maps them to UTC with the stream's start time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MOVEMENT_TYPES: Final = ("jerk", "limb_movement", "spasm", "large_movement")
SERIES_TYPES: Final = ("plm_series", "restless")
SLEEP_TYPES: Final = ("awakening", "fell_asleep", "bed_entry", "bed_exit")
FAULT_TYPES: Final = ("sensor_fault",)
EVENT_TYPES: Final = MOVEMENT_TYPES + SERIES_TYPES + SLEEP_TYPES + FAULT_TYPES


@dataclass(frozen=True, slots=True)
class Event:
    """One detected event.

    ``seq`` numbers events in the order the detector emitted them (from 0 per Detector);
    ``cause_seq`` is the ``seq`` of the event judged the likely cause (an awakening's
    preceding movement), or None. ``intensity`` is the peak movement envelope over the
    resting baseline (dimensionless, >= 1 for movements; 0 where it does not apply).
    ``profile`` names the rule profile that produced the label (``aasm`` / ``wasm2016``).
    ``details`` carries type-specific numbers (e.g. ``movements`` and ``mean_interval_s``
    of a PLM series).
    """

    seq: int
    type: str
    start_s: float
    end_s: float
    intensity: float
    profile: str
    confidence: float | None = None
    cause_seq: int | None = None
    details: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Length of the event in seconds."""
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class State:
    """The sleeper's state, emitted whenever any field changes. None means not known yet."""

    t_s: float
    in_bed: bool | None
    moving: bool
    asleep: bool | None


@dataclass(frozen=True, slots=True)
class Epoch:
    """One scored epoch: activity count from the movement band and the sleep/wake call."""

    start_s: float
    duration_s: float
    count: float
    asleep: bool
    in_bed: bool


@dataclass(frozen=True, slots=True)
class Vitals:
    """Heart and breathing rate over a window ending at ``t_s``; None where not measurable."""

    t_s: float
    heart_bpm: float | None
    breath_bpm: float | None


Output = Event | State | Epoch | Vitals
