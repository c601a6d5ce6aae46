"""The Detector end to end: API, block-size invariance, states, glitches, real recording."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from service.detect import Detector, DetectorParams, analyze_array
from service.detect.types import MOVEMENT_TYPES, Epoch, Event, Output, State, Vitals
from tests.detect.synth import add_burst, empty_bed, sleeper

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
RECORDING = SHARED / "bed-fibre-optic-50hz" / "recording.csv"


def run_blocks(
    x: np.ndarray, rate_hz: float, block: int, params: DetectorParams | None = None
) -> list[Output]:
    det = Detector(rate_hz, params)
    out: list[Output] = []
    for i in range(0, x.size, block):
        out += det.process(x[i : i + block])
    return out + det.flush()


def events(out: list[Output], kind: str | None = None) -> list[Event]:
    return [o for o in out if isinstance(o, Event) and (kind is None or o.type == kind)]


@pytest.fixture(scope="module")
def night() -> np.ndarray:
    """Two minutes of a still sleeper with a limb movement, a jerk and a glitch."""
    x = sleeper(250.0, 120.0)
    add_burst(x, 250.0, 40.0, 2.0, rms=150.0)
    add_burst(x, 250.0, 60.0, 0.3, rms=300.0, seed=2)
    x[250 * 75] = 4095.0
    return x


def test_one_pass_and_small_blocks_give_identical_outputs(night: np.ndarray) -> None:
    one = analyze_array(night, 250.0)
    for block in (25, 50, 1001):  # 0.1 s, 0.2 s, odd
        assert run_blocks(night, 250.0, block) == one


def test_simulated_night_gives_identical_outputs_in_odd_live_blocks() -> None:
    sim = pytest.importorskip("hardware.simulated", reason="hardware/simulated.py not available")
    night = sim.SimulatedNight(seed=3, rate_hz=50.0, duration_s=1800.0)
    x = night.render_all()
    params = DetectorParams(adc_full_scale_counts=float(sim.ADC_MAX))
    assert run_blocks(x, 50.0, 7, params) == analyze_array(x, 50.0, params)


def test_single_sample_blocks_give_identical_outputs() -> None:
    x = sleeper(50.0, 45.0)
    add_burst(x, 50.0, 35.0, 1.5, rms=150.0)
    assert run_blocks(x, 50.0, 1) == analyze_array(x, 50.0)


def test_event_seq_counts_from_zero_and_records_profile(night: np.ndarray) -> None:
    params = DetectorParams(profile="wasm2016")
    evs = events(analyze_array(night, 250.0, params))
    assert [e.seq for e in evs] == list(range(len(evs)))
    assert all(e.profile == "wasm2016" for e in evs)


def test_limb_movement_and_jerk_are_found_at_their_times(night: np.ndarray) -> None:
    evs = [e for e in events(analyze_array(night, 250.0)) if e.type in MOVEMENT_TYPES]
    kinds = {(e.type, round(e.start_s)) for e in evs}
    assert ("jerk", 60) in kinds
    assert any(e.type != "jerk" and abs(e.start_s - 40.0) < 0.5 and e.end_s > 41.5 for e in evs)
    assert len(evs) == 2


def test_glitch_sample_is_a_sensor_fault_never_a_movement(night: np.ndarray) -> None:
    out = analyze_array(night, 250.0)
    faults = events(out, "sensor_fault")
    assert len(faults) == 1 and faults[0].start_s == pytest.approx(75.0, abs=0.01)
    assert not [e for e in events(out) if e.type in MOVEMENT_TYPES and e.end_s > 74.0 and e.start_s < 76.5]


def test_glitches_of_both_rails_in_a_quiet_night_never_become_movements() -> None:
    x = sleeper(250.0, 90.0, seed=3)
    for t, v in ((40.0, 4095.0), (50.0, 0.0), (60.2, 4095.0), (70.7, 0.0)):
        x[round(t * 250)] = v
    x[(80 * 250) : (80 * 250) + 3] = 0.0  # a 3-sample glitch
    out = analyze_array(x, 250.0)
    assert not [e for e in events(out) if e.type in MOVEMENT_TYPES]
    assert events(out, "sensor_fault")


def test_moving_state_turns_on_in_the_block_that_completes_the_onset() -> None:
    x = sleeper(250.0, 60.0)
    add_burst(x, 250.0, 45.0, 3.0, rms=150.0)
    det = Detector(250.0)
    on_block = None
    for k, i in enumerate(range(0, x.size, 25)):
        for o in det.process(x[i : i + 25]):
            if isinstance(o, State) and o.moving and on_block is None:
                on_block = k
                assert o.t_s == pytest.approx(45.0, abs=0.15)
    assert on_block is not None
    assert on_block * 0.1 <= 45.0 + 0.3  # within a few frames of the onset, not at its end


def test_states_are_emitted_only_on_change() -> None:
    x = sleeper(250.0, 60.0)
    add_burst(x, 250.0, 45.0, 3.0, rms=150.0)
    states = [o for o in analyze_array(x, 250.0) if isinstance(o, State)]
    for a, b in itertools.pairwise(states):
        assert (a.in_bed, a.moving, a.asleep) != (b.in_bed, b.moving, b.asleep)
    assert [s.moving for s in states if s.moving] == [True]


def test_vitals_come_every_five_seconds_and_give_heart_rate_while_still() -> None:
    out = analyze_array(sleeper(250.0, 120.0, heart_bpm=66.0), 250.0)
    vit = [o for o in out if isinstance(o, Vitals)]
    assert np.allclose(np.diff([v.t_s for v in vit]), 5.0)
    hr = [v.heart_bpm for v in vit if v.heart_bpm is not None]
    assert len(hr) >= 0.5 * len(vit)
    assert np.median(hr) == pytest.approx(66.0, abs=2.0)


def test_vitals_are_none_during_movement() -> None:
    x = sleeper(250.0, 120.0)
    add_burst(x, 250.0, 60.0, 30.0, rms=150.0, band=(0.5, 12.0))
    vit = [o for o in analyze_array(x, 250.0) if isinstance(o, Vitals)]
    assert all(v.heart_bpm is None for v in vit if 62.0 <= v.t_s <= 90.0)


def test_epochs_cover_the_stream_in_order() -> None:
    out = analyze_array(sleeper(50.0, 300.0), 50.0)
    ep = [o for o in out if isinstance(o, Epoch)]
    assert [e.start_s for e in ep] == [30.0 * k for k in range(10)]


def test_any_dtype_and_tiny_blocks_are_accepted() -> None:
    x = np.round(sleeper(50.0, 40.0)).astype(np.int16)
    a = analyze_array(x, 50.0)
    b = run_blocks(x.astype(np.uint16), 50.0, 3)
    assert a == b


def test_empty_input_and_flush_twice_are_harmless() -> None:
    det = Detector(100.0)
    assert det.process(np.zeros(0)) == []
    det.flush()
    assert det.flush() == []


def test_very_low_rate_imu_stream_runs_without_event_storm() -> None:
    rng = np.random.default_rng(0)
    x = 16384.0 + rng.normal(0, 3, 6000)  # ~1 h at 1.6 Hz
    out = analyze_array(x, 1.6)
    assert len(events(out)) < 20


def test_empty_bed_gives_no_movements() -> None:
    out = analyze_array(empty_bed(250.0, 120.0), 250.0)
    assert not [e for e in events(out) if e.type in MOVEMENT_TYPES]


def test_bad_rate_and_profile_are_refused() -> None:
    with pytest.raises(ValueError):
        Detector(0.0)
    with pytest.raises(ValueError):
        Detector(250.0, DetectorParams(profile="nope"))


# ---------------------------------------------------------------- real recording
@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    if not RECORDING.exists():
        pytest.skip(f"shared recording not found at {RECORDING} (../shared/data is absent)")
    return np.loadtxt(RECORDING, delimiter=",", skiprows=1)


def test_real_recording_movements_are_found_and_quiet_minutes_stay_quiet(recording: np.ndarray) -> None:
    out = analyze_array(recording[:, 1], 50.0)
    moves = [e for e in events(out) if e.type in MOVEMENT_TYPES]
    assert any(e.start_s < 15.0 for e in moves)
    assert any(1085.0 < e.start_s < 1100.0 for e in moves)
    assert len([e for e in moves if 20.0 < e.start_s < 1080.0]) <= 1


def test_real_recording_glitches_are_a_sensor_fault_not_a_movement(recording: np.ndarray) -> None:
    x = recording[:, 1]
    out = analyze_array(x, 50.0)
    bad_t = np.flatnonzero((x <= 0) | (x > 60000)) / 50.0
    faults = events(out, "sensor_fault")
    assert all(any(f.start_s <= t <= f.end_s for f in faults) for t in bad_t)
    moves = [e for e in events(out) if e.type in MOVEMENT_TYPES]
    assert not [e for e in moves if e.start_s <= bad_t.max() and e.end_s >= bad_t.min()]


def test_real_recording_block_size_invariance(recording: np.ndarray) -> None:
    x = recording[:, 1]
    assert run_blocks(x, 50.0, 10) == analyze_array(x, 50.0)


def test_real_recording_heart_rate_tracks_the_pulse_oximeter(recording: np.ndarray) -> None:
    out = analyze_array(recording[:, 1], 50.0)
    moves = [
        (e.start_s - 1, e.end_s + 1)
        for e in events(out)
        if e.type in MOVEMENT_TYPES or e.type == "sensor_fault"
    ]
    errs = []
    quiet = 0
    for v in (o for o in out if isinstance(o, Vitals)):
        if v.t_s < 20.0 or any(a < v.t_s and b > v.t_s - 20.0 for a, b in moves):
            continue
        quiet += 1
        if v.heart_bpm is not None:
            ref = np.median(recording[round((v.t_s - 20) * 50) : round(v.t_s * 50), 2])
            errs.append(abs(v.heart_bpm - ref))
    assert len(errs) >= 0.8 * quiet
    assert np.mean(errs) <= 3.0


def test_a_stream_longer_than_a_night_drops_called_epochs_without_changing_any_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hardware.simulated import SimulatedNight
    from service.detect import detector as detector_module
    from service.detect import sleep as sleep_module

    night = SimulatedNight(seed=3, rate_hz=50.0, duration_s=8 * 3600.0).render_all()
    x = np.concatenate((night, night[: night.size // 2]))  # 12 h: past one batch of epochs
    det = Detector(50.0)
    out = det.process(x) + det.flush()
    assert det.epoch_dropped > 0 and det.sleep.dropped > 0, "called epochs were dropped"
    monkeypatch.setattr(sleep_module, "COMPACT_EPOCHS", 10**9)
    monkeypatch.setattr(detector_module, "COMPACT_EPOCHS", 10**9)
    plain = run_blocks(x, 50.0, x.size)
    assert out == plain
