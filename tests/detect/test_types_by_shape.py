"""Movement types decided by shape and context, not duration alone (issue 17), through the
whole detector: a low-pitched limb movement of 3-5 s that shifts no weight stays a limb
movement; a sustained high-pitched contraction at the intensity of real movements is a spasm."""

from __future__ import annotations

import numpy as np

from service.detect import DetectorParams, analyze_array
from service.detect.types import MOVEMENT_TYPES, Event
from tests.detect.synth import sleeper

# the rules before issue 17: whole-body by pitch alone, tonic spasm only at 25x the baseline
OLD_RULES = DetectorParams(large_min_low_freq_excess=0.0, spasm_min_high_freq_ratio=99.0)


def _movements(x: np.ndarray, rate_hz: float, params: DetectorParams | None = None) -> list[Event]:
    out = analyze_array(x, rate_hz, params or DetectorParams())
    return [o for o in out if isinstance(o, Event) and o.type in MOVEMENT_TYPES]


def _tilted_noise(seed: int, n: int, rate_hz: float, lo_hz: float, hi_hz: float, tilt: float) -> np.ndarray:
    """Unit-RMS noise in lo..hi Hz whose amplitude spectrum falls as 1/f**tilt."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / rate_hz)
    spec = np.where((f >= lo_hz) & (f <= hi_hz), spec / np.maximum(f, lo_hz) ** tilt, 0.0)
    y = np.fft.irfft(spec, n)
    return y / float(np.sqrt(np.mean(y * y)))


def _burst(
    x: np.ndarray, rate_hz: float, start_s: float, dur_s: float, rms: float, carrier: np.ndarray
) -> None:
    n = round(dur_s * rate_hz)
    t = np.arange(n) / rate_hz
    env = np.clip(t / 0.1, 0, 1) * np.clip((dur_s - t) / 0.1, 0, 1)
    i0 = round(start_s * rate_hz)
    x[i0 : i0 + n] += rms * env * carrier[:n]


def test_low_pitched_limb_movement_of_four_seconds_without_a_weight_shift_is_a_limb_movement() -> None:
    for rate in (50.0, 250.0):
        x = sleeper(rate, 120.0, seed=5)
        n = round(4.0 * rate)
        # most energy at 2-4 Hz, as real movements on an under-mattress sensor (a low pitch)
        _burst(x, rate, 60.0, 4.0, 150.0, _tilted_noise(6, n, rate, 2.0, 20.0, 1.5))
        (ev,) = _movements(x, rate)
        assert ev.type == "limb_movement", (rate, ev)
        assert ev.details["low_freq_excess"] < 2.0
        # the pitch-only rule called it a large movement (this test fails on the old code)
        (old,) = _movements(x, rate, OLD_RULES)
        assert old.type == "large_movement"


def test_sustained_high_pitched_contraction_at_ten_times_rest_is_a_spasm() -> None:
    for rate in (50.0, 250.0):
        x = sleeper(rate, 120.0, seed=7)
        n = round(5.0 * rate)
        _burst(x, rate, 60.0, 5.0, 60.0, _tilted_noise(8, n, rate, 6.0, 20.0, 0.0))
        (ev,) = _movements(x, rate)
        assert ev.type == "spasm", (rate, ev)
        assert ev.details["tonic"] == 1.0
        assert ev.details["median_intensity"] < 25.0  # below the old sustain rule
        (old,) = _movements(x, rate, OLD_RULES)
        assert old.type != "spasm"


def test_heartbeats_above_an_empty_bed_baseline_are_no_train_of_jerks() -> None:
    # someone gets into an empty bed: the baseline is still the empty bed's noise floor, so
    # every heartbeat stands far above it until the baseline learns the new resting level
    # (baseline_steady_s); a jerk is a single brief burst, so a train of brief bursts one
    # heart period apart is heartbeats (the old rules reported 5-6 jerks, one per beat)
    from tests.detect.synth import add_burst, empty_bed

    for rate, seed, amp in ((50.0, 1, 1.0), (50.0, 3, 1.0), (250.0, 0, 0.5), (250.0, 1, 0.5)):
        x = empty_bed(rate, 150.0, seed=seed)
        s = sleeper(rate, 150.0, seed=seed)
        i = round(60.0 * rate)
        x[i:] = 2048.0 + (s[i:] - 2048.0) * amp
        add_burst(x, rate, 58.0, 3.0, rms=200.0, band=(0.5, 10.0), seed=seed)
        jerks = [e for e in _movements(x, rate) if e.type == "jerk" and e.start_s > 61.0]
        assert len(jerks) <= 1, (rate, seed, [round(e.start_s, 1) for e in jerks])
        # two single jerks 3 s apart later in the night are both jerks
        add_burst(x, rate, 120.0, 0.2, rms=300.0, band=(2.0, 12.0), seed=seed)
        add_burst(x, rate, 123.0, 0.2, rms=300.0, band=(2.0, 12.0), seed=seed + 1)
        late = [e for e in _movements(x, rate) if e.start_s > 110.0]
        assert [e.type for e in late] == ["jerk", "jerk"], (rate, seed, late)
