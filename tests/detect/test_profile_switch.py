"""Switching the rule profile on a running Detector (the `cmd/profile` MQTT command)."""

from __future__ import annotations

import numpy as np
import pytest

from service.detect import Detector, DetectorParams
from service.detect.types import Event
from tests.detect.synth import add_burst, sleeper

RATE = 100.0


def _plm_night() -> np.ndarray:
    """A still sleeper with limb movements 7 s apart: a PLM series under AASM, none under WASM 2016."""
    x = sleeper(RATE, 260.0, seed=5)
    for k, t in enumerate(np.arange(60.0, 60.0 + 7.0 * 6, 7.0)):
        add_burst(x, RATE, float(t), 1.2, rms=150.0, seed=10 + k)
    return x


def _run(x: np.ndarray, switch_to: str | None) -> list[Event]:
    det = Detector(RATE, DetectorParams(profile="aasm"))
    out = det.process(x[: int(40 * RATE)])
    if switch_to:
        det.set_profile(switch_to)
    out += det.process(x[int(40 * RATE) :]) + det.flush()
    return [o for o in out if isinstance(o, Event)]


def test_switching_to_wasm2016_mid_night_changes_how_later_series_are_scored() -> None:
    x = _plm_night()
    aasm = _run(x, None)
    assert [e.type for e in aasm].count("plm_series") == 1
    wasm = _run(x, "wasm2016")
    assert [e.type for e in wasm].count("plm_series") == 0
    assert all(e.profile == "wasm2016" for e in wasm if e.start_s > 40.0)
    assert [e.type for e in wasm].count("limb_movement") == [e.type for e in aasm].count("limb_movement")


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rule profile"):
        Detector(RATE).set_profile("psg")
