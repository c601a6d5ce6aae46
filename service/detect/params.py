"""Detector thresholds and windows: one documented place for each, units in the names.

Every field carries ``metadata={"doc": ...}``; the config model is built from these fields,
so a threshold is defined once and shows up in ``[detector]`` of the TOML file with its doc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def param(default: Any, doc: str) -> Any:
    """A documented dataclass field (the doc becomes the config field's description)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """All tunable detector settings. Defaults follow the published scoring rules."""

    profile: str = param("aasm", "Rule profile for PLM series: 'aasm' (5-90 s) or 'wasm2016' (10-90 s).")
    k_on: float = param(4.0, "A movement starts when the envelope exceeds k_on x resting baseline.")
    k_off: float = param(2.0, "A movement ends after min_off_s below k_off x resting baseline.")
    min_off_s: float = param(0.5, "Seconds below k_off x baseline that end a movement (AASM: 0.5).")
    merge_gap_s: float = param(0.5, "Movements separated by less than this many seconds merge.")
    baseline_window_s: float = param(30.0, "Window of the robust resting baseline (median), seconds.")
    epoch_s: float = param(30.0, "Sleep/wake epoch length, seconds.")
    wake_bout_epochs: int = param(2, "Consecutive wake epochs that make an awakening.")
    cause_window_s: float = param(
        30.0, "A movement this many seconds before an awakening is its likely cause."
    )
