"""An awakening names the movement that preceded it (within cause_window_s) as its likely cause."""

from __future__ import annotations

from hardware.simulated import SimulatedNight
from service.detect import DetectorParams, analyze_array
from service.detect.types import MOVEMENT_TYPES, Event


def _events(seed: int, params: DetectorParams) -> list[Event]:
    night = SimulatedNight(seed=seed, rate_hz=50.0, duration_s=8 * 3600.0)
    return [o for o in analyze_array(night.render_all(), 50.0, params) if isinstance(o, Event)]


def test_an_awakening_names_a_movement_that_started_within_the_window_or_its_first_epoch() -> None:
    params = DetectorParams()
    with_cause = 0
    for seed in (1, 2, 3):
        evs = _events(seed, params)
        by_seq = {e.seq: e for e in evs}
        for aw in (e for e in evs if e.type == "awakening" and e.cause_seq is not None):
            with_cause += 1
            cause = by_seq[aw.cause_seq]  # type: ignore[index]
            assert cause.type in MOVEMENT_TYPES
            assert aw.start_s - params.cause_window_s <= cause.start_s <= aw.start_s + params.epoch_s
    assert with_cause >= 3, "simulated nights have awakenings that follow a movement"


def test_the_cause_window_is_honoured() -> None:
    wide = _events(2, DetectorParams(cause_window_s=120.0))
    narrow = _events(2, DetectorParams(cause_window_s=0.0))
    by_seq = {e.seq: e for e in narrow}
    for aw in (e for e in narrow if e.type == "awakening" and e.cause_seq is not None):
        assert by_seq[aw.cause_seq].start_s >= aw.start_s  # type: ignore[index]
    n_wide = sum(1 for e in wide if e.type == "awakening" and e.cause_seq is not None)
    n_narrow = sum(1 for e in narrow if e.type == "awakening" and e.cause_seq is not None)
    assert n_wide > n_narrow
