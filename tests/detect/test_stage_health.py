"""Stage 8 alone: glitches, disturbances, rails, stuck sensors (SensorHealth)."""

from __future__ import annotations

import numpy as np

from service.detect.health import SensorHealth, _abs_steps, _row_medians
from service.detect.params import DetectorParams
from service.detect.types import Event
from tests.detect.synth import add_burst, sleeper


def run(
    x: np.ndarray, rate: float = 250.0, block: int | None = None, **kw: float
) -> tuple[np.ndarray, np.ndarray, list[Event], list[int]]:
    h = SensorHealth(rate, DetectorParams(**kw))  # type: ignore[arg-type]
    block = block or x.size
    clean, fault, resets, evs = [], [], [], []
    for i in range(0, x.size, block):
        done = sum(c.size for c in clean)  # health lags the input by its look-ahead
        r = h.process(x[i : i + block])
        clean.append(r.clean)
        fault.append(r.fault)
        resets += [done + k for k in r.resets]
        evs += [p.output for p in r.pending]
    last, tail = h.flush()
    clean.append(last.clean)
    fault.append(last.fault)
    evs += [p.output for p in tail]
    return np.concatenate(clean), np.concatenate(fault), [e for e in evs if isinstance(e, Event)], resets


def test_single_sample_glitch_is_replaced_by_the_previous_value_and_reported() -> None:
    x = sleeper(250.0, 20.0)
    i = 250 * 12
    x[i] = 4095.0
    clean, fault, evs, _ = run(x)
    assert clean[i] == clean[i - 1]
    assert fault.sum() == 1 and fault[i]
    assert len(evs) == 1 and evs[0].type == "sensor_fault" and evs[0].details["kind"] == 1.0


def test_glitches_close_together_merge_into_one_event() -> None:
    x = sleeper(250.0, 30.0)
    for t in (12.0, 12.5, 14.0):
        x[round(t * 250)] = 0.0
    _, _, evs, _ = run(x)
    assert len(evs) == 1


def test_rail_values_are_glitches_when_the_full_scale_is_known_even_inside_movement() -> None:
    x = sleeper(250.0, 20.0)
    add_burst(x, 250.0, 10.0, 3.0, rms=200.0)
    i = round(11.0 * 250)
    x[i] = 4095.0
    clean, fault, evs, _ = run(x, adc_full_scale_counts=4095.0)
    assert fault[i] and clean[i] != 4095.0
    assert evs


def test_a_strong_movement_is_not_a_fault() -> None:
    x = sleeper(250.0, 30.0)
    add_burst(x, 250.0, 15.0, 3.0, rms=250.0, band=(1.0, 15.0))
    _, fault, evs, _ = run(x)
    assert not fault.any() and not evs


def test_level_shift_is_a_disturbance_that_resyncs_to_the_new_level() -> None:
    x = sleeper(250.0, 30.0)
    x[(15 * 250) :] += 20000.0  # the sensor re-seats at a new level
    clean, _, evs, resets = run(x)
    assert resets and abs(resets[0] - (15 + 1.0) * 250) <= 2
    assert clean[-1] == x[-1]
    assert evs and evs[0].details["kind"] == 2.0


def test_stuck_sensor_is_reported_once_per_run() -> None:
    x = sleeper(50.0, 200.0)
    x[50 * 20 : 50 * 100] = 2048.0  # 80 s flat
    _, _, evs, _ = run(x, rate=50.0)
    stuck = [e for e in evs if e.details["kind"] == 4.0]
    assert len(stuck) == 1 and abs(stuck[0].start_s - 20.0) < 0.1


def test_health_is_block_size_invariant() -> None:
    x = sleeper(250.0, 40.0)
    x[250 * 12] = 4095.0
    x[250 * 20 : 250 * 20 + 3] = 0.0
    x[250 * 30 :] += 15000.0
    a = run(x)
    b = run(x, block=37)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[2] == b[2] and a[3] == b[3]


def test_a_glitch_on_any_block_boundary_is_repaired_the_same() -> None:
    x = sleeper(50.0, 30.0)
    x[50 * 20] = 0.0
    x[50 * 25 : 50 * 25 + 2] = 4095.0
    ref = run(x, rate=50.0, adc_full_scale_counts=4095.0)
    for block in range(1, 9):
        got = run(x, rate=50.0, block=block, adc_full_scale_counts=4095.0)
        assert np.array_equal(got[0], ref[0]) and got[2] == ref[2]


def test_plain_samples_are_released_in_the_block_that_brings_them() -> None:
    x = sleeper(250.0, 10.0)
    h = SensorHealth(250.0, DetectorParams())
    released = [h.process(x[i : i + 25]).clean.size for i in range(0, x.size, 25)]
    # a quiet signal has no jump that could start a glitch: nothing waits for its look-ahead
    assert released == [25] * len(released)


def test_a_possible_glitch_at_the_end_of_a_block_waits_for_its_look_ahead() -> None:
    x = sleeper(250.0, 10.0)
    x[5 * 250 + 24] = x[5 * 250 + 23] + 5000.0  # last sample of a 0.1-s block jumps away
    h = SensorHealth(250.0, DetectorParams())
    sizes = {i: h.process(x[i : i + 25]).clean.size for i in range(0, x.size, 25)}
    assert sizes[5 * 250] < 25  # held: only the next samples tell a glitch from a movement
    c, f, evs, _ = run(x, block=25)
    assert f[5 * 250 + 24] and c[5 * 250 + 24] == x[5 * 250 + 23]
    assert [e.type for e in evs] == ["sensor_fault"]


def test_health_is_block_size_invariant_with_glitches_near_every_block_edge() -> None:
    rng = np.random.default_rng(3)
    x = sleeper(250.0, 30.0)
    for k in rng.choice(np.arange(1500, x.size - 10), 12, replace=False):
        x[k : k + int(rng.integers(1, 4))] = 4095.0 if rng.random() < 0.5 else 0.0
    ref = run(x)
    for block in (1, 3, 5, 6, 24, 25, 26, 250):
        got = run(x, block=block)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
        assert got[2] == ref[2] and got[3] == ref[3]


def _flat_reference(x: np.ndarray, flat_n: int) -> tuple[np.ndarray, list[int]]:
    """By brute force: samples from the flat_n-th of a run of identical values on, and run ends."""
    mask = np.zeros(x.size, bool)
    ends: list[int] = []
    run = 1
    for i in range(1, x.size):
        if x[i] == x[i - 1]:
            run += 1
            if run >= flat_n:
                mask[i] = True
        else:
            if run >= flat_n:
                ends.append(i)
            run = 1
    return mask, ends


def test_identical_samples_past_flat_s_are_fault_samples_whatever_the_blocks() -> None:
    rate = 250.0
    flat_n = round(5.0 * rate)
    rng = np.random.default_rng(3)
    x = np.round(2000.0 + 20.0 * rng.standard_normal(int(120 * rate)))
    # flat runs just short of, at and well past flat_n (blocks of every size cut them somewhere)
    for start, length in ((1000, flat_n - 1), (5000, flat_n), (9000, flat_n + 1), (14000, 3 * flat_n),
                          (24000, 2 * flat_n + 7)):  # fmt: skip
        x[start : start + length] = x[start]
    want_mask, want_ends = _flat_reference(x, flat_n)
    for block in (25, 250, 1249, 1250, 4096, x.size):
        _, fault, _, resets = run(x, rate, block)
        np.testing.assert_array_equal(fault, want_mask, err_msg=f"block {block}")
        assert [r for r in resets if r in want_ends] == want_ends, f"block {block}"
    assert want_mask.sum() == 0 + 1 + 2 + (2 * flat_n + 1) + (flat_n + 8)


def test_per_second_statistic_matches_the_plain_sub_block_maxima_for_any_width() -> None:
    rng = np.random.default_rng(3)
    for w in (1, 5, 7, 8, 9, 15, 16, 31, 50, 250, 256, 1000):
        d = np.abs(rng.normal(0, 1, (13, w)))
        parts = 8 if w >= 8 else 1
        sub = d[:, : w - w % parts].reshape(13, parts, -1).max(axis=2)
        want = sub[:, 0] if parts == 1 else np.partition(sub, parts - 3, axis=1)[:, parts - 3]
        assert np.array_equal(SensorHealth._sec_stat(d), want), w
        assert np.array_equal(SensorHealth._sec_stat(d[:1]), want[:1]), w


def test_row_medians_and_steps_are_numpys() -> None:
    rng = np.random.default_rng(4)
    for w in (1, 2, 29, 30):
        win = rng.normal(0, 1, (40, w))
        win[3, 0] = np.nan
        assert np.array_equal(_row_medians(win), np.median(win, axis=1), equal_nan=True)
    x = rng.normal(0, 1, 1000)
    for prev in (0.25, float(x[0])):
        assert np.array_equal(_abs_steps(x, prev), np.abs(np.diff(x, prepend=prev)))
    assert np.array_equal(_abs_steps(x[:1], 2.0), np.abs(np.diff(x[:1], prepend=2.0)))


def _sharp_jerk(rate: float, seed: int, peak_levels: float) -> tuple[np.ndarray, int]:
    """A sleeper with one strong, sharp jerk at 50 s (``peak_levels`` x the resting level):
    a 10-ms attack, a 2-20 Hz burst and a small displacement bump, 0.25-0.35 s long."""
    from tests.detect.test_boundaries import _resting_level, _tilted_noise

    x = sleeper(rate, 90.0, seed=seed)
    level = _resting_level(x, rate)
    dur_s = 0.25 + 0.05 * (seed % 3)
    t = np.arange(round(dur_s * rate)) / rate
    env = (0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.01, 0, 1))) * (
        0.5 - 0.5 * np.cos(np.pi * np.clip((dur_s - t) / (dur_s - 0.01), 0, 1))
    )
    burst = env * _tilted_noise(np.random.default_rng(200 + seed), t.size, rate, 2.0, 20.0)
    i0 = round(50.0 * rate)
    x[i0 : i0 + t.size] += peak_levels * level * (burst + 1.5 * np.sin(np.pi * t / dur_s) ** 2)
    return x, i0


def test_a_strong_sharp_jerk_at_50_hz_is_a_jerk_not_a_glitch_but_a_glitch_after_it_still_is() -> None:
    # at 50 Hz a jerk of 40 resting levels moves by 50-200x the quiet per-second jump between
    # samples; its later samples can bounce back near an earlier one within 4 samples, which
    # the glitch rule took for a glitch (the jerk was cut and reported as a sensor_fault)
    from service.detect import analyze_array

    for seed in (3, 4):
        x, i0 = _sharp_jerk(50.0, seed, 40.0)
        _, fault, evs, _ = run(x, rate=50.0)
        assert not fault[i0 - 5 : i0 + 25].any() and not evs, seed
        outs = [o for o in analyze_array(x, 50.0) if isinstance(o, Event) and o.start_s > 40.0]
        assert [e.type for e in outs] == ["jerk"], (seed, outs)
        # a sample at 0 (a dropped reading) 0.6 s later, while the jerk still raises the bar
        x[i0 + 30] = 0.0
        clean, fault, evs, _ = run(x, rate=50.0)
        assert fault[i0 + 30] and clean[i0 + 30] != 0.0, seed
        assert [e.type for e in evs] == ["sensor_fault"] and evs[0].details["kind"] == 1.0, seed
        assert np.array_equal(run(x, rate=50.0, block=7)[1], fault)


def test_a_jerk_sampled_at_50_hz_that_swings_back_through_the_level_is_no_glitch() -> None:
    # a 0.2-s 2-20 Hz burst of 10-30 resting levels on a clean sensor at 50 Hz: its first
    # jump is 100-150x the quiet jump scale, and a sample or two later it passes back near
    # the level on its way to the other side; those samples are not away from the level, so
    # this is no glitch (the old rule cut two of these six jerks out as a sensor_fault)
    from service.detect import analyze_array

    for seed in range(6):
        x = sleeper(50.0, 150.0, seed=seed)
        add_burst(x, 50.0, 120.0, 0.2, rms=300.0, seed=seed)
        add_burst(x, 50.0, 123.0, 0.2, rms=300.0, seed=seed + 1)
        _, fault, evs, _ = run(x, rate=50.0)
        assert not fault.any() and not evs, seed
        outs = [o for o in analyze_array(x, 50.0) if isinstance(o, Event) and o.start_s > 110.0]
        assert [e.type for e in outs] == ["jerk", "jerk"], (seed, outs)
