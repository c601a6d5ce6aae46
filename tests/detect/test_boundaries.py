"""A movement's reported start and end are where it physically rises and ends (issue 17): not
where the envelope crossed the onset threshold, nor where the band filters stop ringing.

The truth is bounded as AASM 2012 / WASM 2016 score a limb movement, relative to the resting
level (the end: back within 2 uV of it; on the detector's scale, where the 8-uV onset is
``k_on`` = 3 resting levels, that is half a resting level): the movement's own envelope is at
least ``TRUTH_LEVEL`` x the resting level, measured here from the background alone (median over
seconds of the largest 0.1-s RMS of its 2-20 Hz band), not by the detector."""

from __future__ import annotations

import numpy as np

from service.detect import analyze_array
from service.detect.types import MOVEMENT_TYPES, Event
from tests.detect.synth import band_noise, sleeper

TRUTH_LEVEL = 0.5


def _resting_level(x: np.ndarray, rate_hz: float) -> float:
    f = np.fft.rfftfreq(x.size, 1.0 / rate_hz)
    spec = np.fft.rfft(x - x.mean())
    spec[(f < 2.0) | (f > 20.0)] = 0.0
    band = np.fft.irfft(spec, x.size)
    fn = round(0.1 * rate_hz)
    k = band.size // fn
    rms = np.sqrt((band[: k * fn].reshape(k, fn) ** 2).mean(axis=1))
    return float(np.median(rms[: k // 10 * 10].reshape(-1, 10).max(axis=1)))


def _truth(start_s: float, env: np.ndarray, rms: float, level: float, rate_hz: float) -> tuple[float, float]:
    on = np.flatnonzero(rms * env >= TRUTH_LEVEL * level)
    return start_s + on[0] / rate_hz, start_s + (on[-1] + 1) / rate_hz


def _movements(x: np.ndarray, rate_hz: float) -> list[Event]:
    return [o for o in analyze_array(x, rate_hz) if isinstance(o, Event) and o.type in MOVEMENT_TYPES]


def _add(
    x: np.ndarray, rate_hz: float, start_s: float, env: np.ndarray, rms: float, seed: int, hi_hz: float = 20.0
) -> None:
    i0 = round(start_s * rate_hz)
    x[i0 : i0 + env.size] += (
        rms * env * band_noise(np.random.default_rng(seed), env.size, rate_hz, 2.0, hi_hz)
    )


def test_slowly_rising_limb_movement_starts_where_it_rises_not_where_it_crosses_the_threshold() -> None:
    for rate in (50.0, 250.0):
        x = sleeper(rate, 90.0, seed=3)
        level = _resting_level(x, rate)
        t = np.arange(round(2.0 * rate)) / rate
        rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.4, 0, 1))  # 0.4-s rise, then a plateau
        fall = 0.5 - 0.5 * np.cos(np.pi * np.clip((2.0 - t) / 0.1, 0, 1))
        _add(x, rate, 50.0, rise * fall, 150.0, seed=4)
        t0, t1 = _truth(50.0, rise * fall, 150.0, level, rate)
        (ev,) = _movements(x, rate)
        assert ev.type == "limb_movement"
        # the goal's tolerance (the frame rule before the lookback reported it 0.2 s late at 50 Hz)
        assert abs(ev.start_s - t0) <= 0.1 + 1e-6, (rate, t0, ev)
        assert abs(ev.end_s - t1) <= 0.1 + 1e-6, (rate, t1, ev)


def test_a_brief_strong_jerk_ends_where_it_ends_not_where_the_band_filters_stop_ringing() -> None:
    # a 0.2-s low-pitched jerk (2-8 Hz, as real movements on a bed sensor are) at ~25 resting
    # levels: the movement band's 2-Hz edge rings about 0.3 s after it
    for rate in (50.0, 250.0):
        for seed in (5, 6, 7):
            x = sleeper(rate, 90.0, seed=seed)
            level = _resting_level(x, rate)
            t = np.arange(round(0.2 * rate)) / rate
            env = (0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.01, 0, 1))) * (
                0.5 - 0.5 * np.cos(np.pi * np.clip((0.2 - t) / 0.19, 0, 1))
            )
            rms = 25.0 * level
            _add(x, rate, 50.0, env, rms, seed=seed + 10, hi_hz=8.0)
            t0, t1 = _truth(50.0, env, rms, level, rate)
            (ev,) = _movements(x, rate)
            assert ev.type == "jerk", (rate, seed, ev)
            assert abs(ev.start_s - t0) <= 0.1 + 1e-6, (rate, seed, t0, ev)
            assert abs(ev.end_s - t1) <= 0.1 + 1e-6, (rate, seed, t1, ev)


def _tilted_noise(rng: np.random.Generator, n: int, rate_hz: float, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Unit-RMS noise in lo..hi Hz whose amplitude falls as 1/sqrt(f) (a low-pitched burst)."""
    f = np.fft.rfftfreq(n + 64, 1.0 / rate_hz)
    spec = np.fft.rfft(rng.standard_normal(n + 64))
    spec = np.where((f >= lo_hz) & (f <= hi_hz), spec / np.sqrt(np.maximum(f, lo_hz)), 0.0)
    y = np.fft.irfft(spec, n + 64)[32 : 32 + n]
    return y / max(float(np.sqrt(np.mean(y * y))), 1e-12)


def test_a_low_pitched_jerk_with_a_displacement_ends_where_it_ends_not_at_the_next_heartbeat() -> None:
    # a 0.25-s jerk as real ones look on a bed sensor: a low-pitched (1/sqrt f) burst that also
    # moves the mattress (a displacement bump), on a sleeper whose heartbeats are sharp. The band
    # filters ring on the bump, so the 0.1-s envelope stays above k_off for ~0.3 s after the jerk
    # and takes in the next heartbeat; the old frame rule (and a sample rule that counts that
    # heartbeat) reported the end 0.26-0.34 s late
    for rate in (50.0, 250.0):
        found = 0
        for seed in range(10):
            x = sleeper(rate, 90.0, seed=seed)
            level = _resting_level(x, rate)
            dur_s = 0.25
            t = np.arange(round(dur_s * rate)) / rate
            env = (0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.01, 0, 1))) * (
                0.5 - 0.5 * np.cos(np.pi * np.clip((dur_s - t) / (dur_s - 0.01), 0, 1))
            )
            burst = env * _tilted_noise(np.random.default_rng(100 + seed), t.size, rate, 2.0, 20.0)
            rms = 15.0 * level
            i0 = round(50.0 * rate)
            x[i0 : i0 + t.size] += rms * (burst + np.sin(np.pi * t / dur_s) ** 2)
            t0, t1 = _truth(50.0, env, rms, level, rate)
            evs = _movements(x, rate)
            assert len(evs) <= 1, (rate, seed, evs)
            if not evs:  # a jerk under jerk_min_intensity is not reported (another issue)
                continue
            found += 1
            assert abs(evs[0].start_s - t0) <= 0.1 + 1e-6, (rate, seed, t0, evs[0])
            assert abs(evs[0].end_s - t1) <= 0.1 + 1e-6, (rate, seed, t1, evs[0])
        assert found >= 8, (rate, found)


def test_a_jerk_is_typed_on_its_own_span_not_on_the_frames_the_band_filters_ring_through() -> None:
    # 0.25-0.3-s low-pitched jerks with a large displacement bump (as above), strong enough to be
    # reported: the band filters ring on the bump, so the 0.1-s frames above 20 % of the peak
    # (the old "core") reach 0.5 s and the jerk was called a limb movement. AASM 2012 times a
    # movement from its onset to its end relative to the resting level: a burst whose span on
    # the samples is under 0.5 s is no limb movement
    typed = []
    for rate in (50.0, 250.0):
        for seed in range(12):
            x = sleeper(rate, 90.0, seed=seed)
            level = _resting_level(x, rate)
            dur_s = 0.25 + 0.1 * (seed % 3) / 2
            t = np.arange(round(dur_s * rate)) / rate
            env = (0.5 - 0.5 * np.cos(np.pi * np.clip(t / 0.01, 0, 1))) * (
                0.5 - 0.5 * np.cos(np.pi * np.clip((dur_s - t) / (dur_s - 0.01), 0, 1))
            )
            burst = env * _tilted_noise(np.random.default_rng(200 + seed), t.size, rate, 2.0, 20.0)
            rms = 20.0 * level
            i0 = round(50.0 * rate)
            x[i0 : i0 + t.size] += rms * (burst + 3.0 * np.sin(np.pi * t / dur_s) ** 2)
            evs = _movements(x, rate)
            assert len(evs) <= 1, (rate, seed, evs)
            typed += [(rate, seed, e.type, round(e.duration_s, 2), e.details.get("core_s")) for e in evs]
    assert len(typed) >= 20, typed
    assert all(t[2] == "jerk" for t in typed), [t for t in typed if t[2] != "jerk"]
