"""Stages 2 and 3 alone: envelope frames, adaptive baseline, hysteresis segments."""

from __future__ import annotations

import numpy as np
import pytest

from service.detect import baseline as baseline_module
from service.detect.baseline import Baseline
from service.detect.envelope import FrameEnvelope
from service.detect.params import DetectorParams
from service.detect.segments import Segmenter

P = DetectorParams()


def test_envelope_frames_are_the_same_whatever_the_block_size() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 1003)
    f = np.zeros(1003, bool)
    f[500] = True
    a = FrameEnvelope(5).process(x, f)
    env = FrameEnvelope(5)
    parts = [env.process(x[i : i + 7], f[i : i + 7]) for i in range(0, 1003, 7)]
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), a[0])
    assert np.array_equal(np.concatenate([p[1] for p in parts]), a[1])
    assert a[0].size == 200 and a[1][100]


def frames(levels: list[tuple[float, float]], fph: int = 10) -> np.ndarray:
    """Envelope frames: (seconds, level) pieces with a heartbeat-like spike each second."""
    out = []
    for sec, lvl in levels:
        for _ in range(round(sec)):
            hop = np.full(fph, 0.3 * lvl)
            hop[3] = lvl
            out.append(hop)
    return np.concatenate(out)


def test_baseline_holds_the_warmup_and_starts_from_its_quiet_part() -> None:
    b = Baseline(0.1, P)
    env = frames([(10, 50.0), (40, 1.0)])  # the stream starts with 10 s of movement
    e1, _, _ = b.process(env[:200], np.zeros(200, bool))
    assert e1.size == 0  # held during the 30-s warm-up
    e2, _, b2 = b.process(env[200:], np.zeros(env.size - 200, bool))
    assert e2.size == env.size
    assert np.allclose(b2[:300], 1.0)  # the first baseline ignores the moving start


def test_baseline_is_frozen_while_moving() -> None:
    rng = np.random.default_rng(0)
    moving = frames([(20, 30.0)]) * rng.uniform(0.2, 3.0, 200)  # an irregular envelope
    env = np.concatenate((frames([(40, 1.0)]), moving, frames([(10, 1.0)])))
    _, _, base = Baseline(0.1, P).process(env, np.zeros(env.size, bool))
    assert np.allclose(base[400:], 1.0)


def test_baseline_relearns_a_steady_new_level_after_bed_entry() -> None:
    b = Baseline(0.1, P)
    env = frames([(40, 0.1), (8, 40.0), (40, 2.0)])  # empty bed, getting in, heartbeats
    _, _, base = b.process(env, np.zeros(env.size, bool))
    assert base[-1] == np.float64(2.0)
    assert base[400] == np.float64(0.1)


def test_empty_bed_baseline_is_the_noise_floor() -> None:
    rng = np.random.default_rng(0)
    env = np.abs(rng.normal(0, 0.01, 600)) + 0.01
    _, _, base = Baseline(0.1, P).process(env, np.zeros(600, bool))
    assert 0.01 < base[-1] < 0.05


def seg(
    ratio: np.ndarray, params: DetectorParams = P, block: int | None = None
) -> tuple[list[int], list[tuple[int, int]]]:
    s = Segmenter(0.1, params)
    block = block or ratio.size
    ons: list[int] = []
    fin: list[tuple[int, int]] = []
    for i in range(0, ratio.size, block):
        r = ratio[i : i + block]
        u = s.process(r, np.ones(r.size), np.zeros(r.size, bool))
        ons += u.onsets
        fin += [(x.start, x.end) for x in u.finished]
    fin += [(x.start, x.end) for x in s.flush()]
    return ons, fin


def test_segment_starts_above_k_on_and_ends_after_min_off_below_k_off() -> None:
    r = np.ones(100)
    r[20:22] = 2.0  # above k_off, below k_on: not an onset
    r[22:40] = 5.0
    r[40:43] = 1.0  # a 0.3-s dip: shorter than min_off_s, the movement continues
    r[43:50] = 2.0
    ons, fin = seg(r)
    assert ons == [22] and fin == [(22, 50)]


def test_subthreshold_wiggle_is_not_a_segment() -> None:
    r = np.ones(100)
    r[30:60] = 2.5
    assert seg(r) == ([], [])


def test_gap_shorter_than_merge_gap_merges_two_movements() -> None:
    r = np.ones(200)
    r[20:30] = 5.0
    r[36:46] = 5.0  # 0.6 s after: separate with merge_gap 0.5 s, merged with 1.0 s
    assert seg(r)[1] == [(20, 30), (36, 46)]
    assert seg(r, DetectorParams(merge_gap_s=1.0))[1] == [(20, 46)]


def test_segments_are_block_size_invariant() -> None:
    rng = np.random.default_rng(3)
    r = np.where(rng.random(3000) < 0.03, 8.0, 1.0)
    r = np.convolve(r, np.ones(4), "same")
    assert seg(r) == seg(r, block=7) == seg(r, block=1)


def test_the_still_run_fast_path_gives_the_hop_by_hop_baselines(monkeypatch: pytest.MonkeyPatch) -> None:
    # long still stretches (the vectorised path), movements, a level change, faults, and blocks
    # of every size: the baselines and the state left must be those of the plain hop loop
    rng = np.random.default_rng(11)
    n = 20_000  # frames (0.1 s)
    env = np.abs(rng.normal(1.0, 0.15, n)) + 0.2
    env[6000:] *= 2.5  # a new level (re-learned when steady or after the longest freeze)
    for a in rng.integers(0, n - 200, 40):
        env[a : a + int(rng.integers(3, 150))] *= rng.uniform(3.0, 20.0)
    fault = np.zeros(n, bool)
    for a in rng.integers(0, n - 50, 8):
        fault[a : a + int(rng.integers(1, 40))] = True

    def run(blocks: list[int]) -> tuple[np.ndarray, float, list[float]]:
        base = Baseline(0.1, DetectorParams())
        out = []
        i = 0
        for size in blocks:
            out.append(base.process(env[i : i + size], fault[i : i + size])[2])
            i += size
        out.append(base.process(env[i:], fault[i:])[2])
        return np.concatenate(out), base.b, list(base.history)

    for blocks in ([n], [1] * 900, list(rng.integers(1, 3000, 30)), [7] * 2000):
        fast = run(blocks)
        monkeypatch.setattr(baseline_module, "_RUN_MIN", 10**9)
        slow = run(blocks)
        monkeypatch.undo()
        assert np.array_equal(fast[0], slow[0]) and fast[1:] == slow[1:]


def _below_band_beats(rate_hz: float, duration_s: float, amp: float = 200.0) -> np.ndarray:
    """A low-pitched heartbeat whose energy lies at 0.8-1.9 Hz, under the movement band: on a
    real under-mattress sensor most of the 2-20 Hz band filter's resting energy is there."""
    t = np.arange(round(duration_s * rate_hz)) / rate_hz
    y = np.zeros(t.size)
    for beat in np.arange(0.3, duration_s, 60.0 / 66.0):
        y += amp * np.exp(-0.5 * ((t - beat - 0.2) / 0.12) ** 2)
        y -= 0.6 * amp * np.exp(-0.5 * ((t - beat - 0.4) / 0.12) ** 2)
    f = np.fft.rfftfreq(t.size, 1.0 / rate_hz)
    spec = np.fft.rfft(y)
    spec[(f < 0.8) | (f > 1.9)] = 0.0
    return np.fft.irfft(spec, t.size)


def test_heartbeat_energy_below_the_movement_band_does_not_raise_the_resting_baseline() -> None:
    # the band filter's soft 2nd-order 2-Hz edge let it in: the baseline doubled, and a jerk of
    # 12 resting levels (of the band's own energy; ~9 on the envelope) peaked at ~4.5x the
    # doubled baseline and was dropped (jerk_min_intensity 8)
    from service.detect import Detector, analyze_array
    from service.detect.types import Event
    from tests.detect.synth import band_noise, sleeper

    for rate in (50.0, 250.0):
        plain = sleeper(rate, 90.0, seed=0)
        x = plain + _below_band_beats(rate, 90.0)
        b = []
        for y in (plain, x):
            d = Detector(rate, DetectorParams())
            d.process(y)
            b.append(float(np.median(d.f_base.get(d.f_base.end - 300, d.f_base.end))))
        assert b[1] <= 1.2 * b[0], (rate, b)
        n = round(0.25 * rate)
        t = np.arange(n) / rate
        burst = np.clip(t / 0.02, 0, 1) * np.clip((0.25 - t) / 0.2, 0, 1)
        burst *= band_noise(np.random.default_rng(1), n, rate, 2.0, 20.0)
        fn = round(0.1 * rate)
        peak = max(float(np.sqrt(np.mean(burst[i : i + fn] ** 2))) for i in range(n - fn + 1))
        x[round(60.0 * rate) : round(60.0 * rate) + n] += burst * 12.0 * b[0] / peak
        outs = [o for o in analyze_array(x, rate) if isinstance(o, Event) and o.start_s > 40.0]
        assert [e.type for e in outs] == ["jerk"], (rate, outs)
