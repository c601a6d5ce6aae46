"""Stage 4 alone: movement labels, PLM series under both profiles, restless clusters."""

from __future__ import annotations

import numpy as np
import pytest

from service.detect.classify import (
    PlmTracker,
    RestlessTracker,
    SeriesOut,
    classify_features,
    classify_segment,
    plm_interval_s,
)
from service.detect.condition import Conditioner
from service.detect.params import DetectorParams
from tests.detect.synth import add_burst

P = DetectorParams()


def features(**kw: float) -> dict[str, float]:
    base = {
        "duration_s": 1.5,
        "core_s": 1.5,
        "intensity": 25.0,
        "median_intensity": 12.0,
        "variability": 0.4,
        "low_freq_ratio": 0.2,
        "rise_s": 0.2,
        "high_freq_ratio": 0.95,
        "clonus_prominence": 5.0,
        "clonus_hz": 0.0,
        "low_freq_excess": 1.0,
    }
    return {**base, **kw}


def test_jerk_shorter_than_half_a_second_is_not_a_limb_movement() -> None:
    assert classify_features(features(core_s=0.3, duration_s=0.6, intensity=30.0), P).type == "jerk"
    assert classify_features(features(core_s=0.6), P).type == "limb_movement"


def test_brief_on_the_samples_is_a_jerk_even_when_the_frames_ring_longer() -> None:
    # the span between the boundaries placed on the samples (span_s) or the frame core: the
    # shorter decides (each is long for its own reason: decay and heartbeat vs. filter ring)
    assert classify_features(features(core_s=0.6, span_s=0.35, intensity=20.0), P).type == "jerk"
    assert classify_features(features(core_s=0.3, span_s=0.7, intensity=20.0), P).type == "jerk"
    assert classify_features(features(core_s=0.6, span_s=0.7, intensity=20.0), P).type == "limb_movement"
    assert classify_features(features(core_s=0.6, span_s=0.35, intensity=4.0), P).type == ""


def test_weak_brief_blip_is_not_reported_as_a_jerk() -> None:
    assert classify_features(features(core_s=0.2, intensity=4.0), P).type == ""


def test_limb_movement_lasts_half_a_second_to_ten_seconds() -> None:
    for core in (0.5, 2.0, 9.5):
        assert classify_features(features(core_s=core), P).type == "limb_movement"
    assert classify_features(features(core_s=12.0), P).type == "large_movement"


def test_sustained_high_intensity_without_limb_displacement_is_a_spasm() -> None:
    f = features(core_s=4.0, median_intensity=30.0, high_freq_ratio=1.1, low_freq_ratio=0.1)
    assert classify_features(f, P).type == "spasm"
    assert classify_features({**f, "core_s": 1.5}, P).type == "limb_movement"  # < 2 s
    assert classify_features({**f, "median_intensity": 8.0}, P).type == "limb_movement"
    assert classify_features({**f, "low_freq_ratio": 0.35}, P).type == "limb_movement"  # it moved


def test_rhythmic_bursts_at_3_to_8_hz_are_clonus_spasm() -> None:
    assert classify_features(features(core_s=3.0, clonus_prominence=80.0), P).type == "spasm"


def test_low_pitched_whole_body_movement_of_3_s_or_more_is_a_large_movement() -> None:
    body = {"core_s": 6.0, "low_freq_excess": 3.0}
    assert classify_features(features(**body, low_freq_ratio=0.9), P).type == "large_movement"
    assert classify_features(features(**body, high_freq_ratio=0.7), P).type == "large_movement"
    assert classify_features(features(core_s=2.0, low_freq_ratio=0.9, low_freq_excess=3.0), P).type == (
        "limb_movement"
    )


def test_low_pitched_movement_that_leaves_the_beds_low_frequencies_as_they_were_is_a_limb_movement() -> None:
    # a limb moved on a low-pitched sensor: spectrally like a body roll, but the breath band
    # during it is no more than breathing before it (no weight shifted, no posture change)
    f = features(core_s=4.0, low_freq_ratio=1.5, high_freq_ratio=0.65, low_freq_excess=1.3)
    assert classify_features(f, P).type == "limb_movement"
    assert classify_features({**f, "low_freq_excess": 3.0}, P).type == "large_movement"


def test_sustained_high_pitched_vibration_is_a_tonic_spasm_at_the_intensity_of_real_movements() -> None:
    # muscle vibration (centroid about 10 Hz and up), 2 s or longer, at 5x the resting level:
    # the old rule wanted 25x, above the range of real movements on a bed sensor
    f = features(core_s=4.0, median_intensity=5.0, intensity=10.0, high_freq_ratio=1.35, low_freq_ratio=1.2)
    lab = classify_features(f, P)
    assert lab.type == "spasm" and lab.details["tonic"] == 1.0
    assert classify_features({**f, "core_s": 1.5}, P).type == "limb_movement"  # not sustained
    assert classify_features({**f, "high_freq_ratio": 0.95}, P).type == "limb_movement"


def test_continuous_movement_longer_than_45_s_is_restless() -> None:
    assert classify_features(features(core_s=60.0), P).type == "restless"


def band_of(x: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    c = Conditioner(rate, P)
    b = c.process(x, np.zeros(x.size, bool), [])
    return b.move, b.breath, c.internal_hz


def test_clonus_from_a_signal_is_recognised_by_its_spectral_line() -> None:
    x = np.zeros(250 * 10)
    add_burst(x, 250.0, 2.0, 5.0, rms=200.0, band=(6.0, 25.0), clonus_hz=5.0)
    move, breath, fs = band_of(x, 250.0)
    seg = slice(round(2.0 * fs), round(7.0 * fs))
    ratio = np.full(50, 30.0)
    lab = classify_segment(ratio, move[seg], 0.1, fs, P, breath[seg])
    assert lab.type == "spasm" and lab.details["clonus_hz"] == pytest.approx(5.0, abs=0.5)


def lm_series(tracker: PlmTracker, onsets: list[float]) -> list[SeriesOut]:
    out: list[SeriesOut] = []
    for t in onsets:
        out += tracker.add("limb_movement", t, t + 1.5, 20.0)
    return out + tracker.flush(onsets[-1] + 100.0)


def test_plm_series_needs_four_limb_movements() -> None:
    assert lm_series(PlmTracker(P), [0, 20, 40]) == []
    s = lm_series(PlmTracker(P), [0, 20, 40, 60])
    assert len(s) == 1 and s[0].movements == 4 and s[0].mean_interval_s == pytest.approx(20.0)


def test_plm_series_needs_ten_second_intervals_under_wasm2016() -> None:
    onsets = [0.0, 7.0, 14.0, 21.0, 28.0]
    assert lm_series(PlmTracker(DetectorParams(profile="wasm2016")), onsets) == []
    assert len(lm_series(PlmTracker(DetectorParams(profile="aasm")), onsets)) == 1


def test_plm_series_allows_five_second_intervals_under_aasm_only() -> None:
    assert plm_interval_s("aasm") == 5.0 and plm_interval_s("wasm2016") == 10.0
    onsets = [0.0, 5.5, 11.0, 16.5]
    assert len(lm_series(PlmTracker(P), onsets)) == 1
    assert lm_series(PlmTracker(DetectorParams(profile="wasm2016")), onsets) == []


def test_plm_series_ends_on_an_interval_out_of_range_and_reports_it_then() -> None:
    t = PlmTracker(P)
    out: list[SeriesOut] = []
    for on in (0, 20, 40, 60, 200):  # 140 s > 90 s ends the series
        out += t.add("limb_movement", on, on + 1, 10.0)
    assert len(out) == 1 and out[0].end_s == 61 and out[0].decided_s == 150.0 and out[0].timeout


def test_plm_series_times_out_ninety_seconds_after_the_last_onset() -> None:
    t = PlmTracker(P)
    for on in (0, 20, 40, 60):
        t.add("limb_movement", on, on + 1, 10.0)
    assert t.timeout(149.0, None) == []
    assert t.timeout(151.0, 149.0) == []  # a movement that started in time may still join
    assert t.timeout(151.0, None)[0].decided_s == 150.0


def test_large_movement_breaks_a_plm_series_and_jerks_are_ignored() -> None:
    t = PlmTracker(P)
    out = []
    for on in (0, 20, 40):
        out += t.add("limb_movement", on, on + 1, 10.0)
    out += t.add("jerk", 45, 45.2, 10.0)
    out += t.add("limb_movement", 60, 61, 10.0)
    out += t.add("large_movement", 70, 80, 10.0)
    assert len(out) == 1 and out[0].movements == 4


def test_dense_cluster_of_movements_is_restless() -> None:
    r = RestlessTracker(P)
    out = []
    for k in range(6):
        out += r.add(100.0 + 4.0 * k, 101.0 + 4.0 * k, 10.0)
    out += r.add(300.0, 301.0, 10.0)
    assert len(out) == 1 and out[0].type == "restless" and out[0].movements == 6
    r2 = RestlessTracker(P)
    sparse = [x for k in range(6) for x in r2.add(100.0 + 30.0 * k, 101.0 + 30.0 * k, 10.0)]
    assert sparse + r2.flush(400.0) == []
