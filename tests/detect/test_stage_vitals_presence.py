"""Stages 5 and 7 alone: heart and breathing rate, bed occupancy with dwell."""

from __future__ import annotations

import numpy as np
import pytest

from service.detect.condition import Conditioner
from service.detect.params import DetectorParams
from service.detect.presence import PresenceTracker
from service.detect.vitals import _autocorr, batch_rates, breath_rate, fft_len, heart_rate
from tests.detect.synth import sleeper

P = DetectorParams()


def bands(x: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    c = Conditioner(rate, P)
    b = c.process(x, np.zeros(x.size, bool), [])
    return b.move, b.breath, c.internal_hz


@pytest.mark.parametrize("bpm", [45.0, 62.0, 90.0, 120.0])
def test_heart_rate_from_a_bcg_within_two_bpm(bpm: float) -> None:
    heart, _, fs = bands(sleeper(250.0, 40.0, heart_bpm=bpm), 250.0)
    hr, per = heart_rate(heart[-round(20 * fs) :], fs)
    assert hr == pytest.approx(bpm, abs=2.0) and per > 0.3


def test_heart_rate_is_not_fooled_into_a_multiple_of_the_beat_interval() -> None:
    heart, _, fs = bands(sleeper(50.0, 40.0, heart_bpm=50.0), 50.0)
    hr, _ = heart_rate(heart[-round(25 * fs) :], fs)
    assert hr == pytest.approx(50.0, abs=2.0)


@pytest.mark.parametrize("br", [8.0, 15.0, 24.0])
def test_breathing_rate_within_one_per_minute(br: float) -> None:
    _, breath, fs = bands(sleeper(250.0, 60.0, breath_bpm=br), 250.0)
    rate, _ = breath_rate(breath[-round(30 * fs) :], fs)
    assert rate == pytest.approx(br, abs=1.0)


def test_noise_gives_no_confident_rate() -> None:
    rng = np.random.default_rng(0)
    _, per = batch_rates(rng.normal(0, 1, (20, 500)), 25.0, 40.0, 150.0)
    assert np.nanmax(per) < 0.3


def test_presence_needs_the_dwell_before_entry_and_exit() -> None:
    tr = PresenceTracker(P)
    t = 0.0
    changes = []
    for occupied in [False] * 10 + [True] * 12 + [False] * 3 + [True] * 10 + [False] * 12:
        t += 5.0
        ch = tr.update(t - 20.0, t, occupied)
        if ch:
            changes.append((ch.in_bed, ch.first))
    # a 15-s absence does not flap the state; entry and exit each come once
    assert changes == [(False, True), (True, False), (False, False)]


def test_presence_learns_the_empty_bed_floor_and_sees_a_body_above_it() -> None:
    tr = PresenceTracker(P)
    assert tr.evidence(0.2, 0.1, False) is False
    assert tr.floor == 0.2
    assert tr.evidence(20.0, 0.1, False) is True
    assert tr.evidence(0.3, 0.9, False) is False  # periodic noise at the floor is not a body
    assert tr.evidence(0.3, 0.0, True) is True  # movement is a body


def test_fft_lengths_are_the_smallest_5_smooth_ones() -> None:
    def smooth(n: int) -> bool:
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 2100):
        m = fft_len(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))


def test_batch_rates_of_selected_rows_are_those_of_every_row() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(500) / 25.0
    wins = np.sin(2 * np.pi * rng.uniform(0.8, 1.8, (30, 1)) * t) + rng.normal(0, 0.5, (30, 500))
    rows = rng.random(30) < 0.6
    all_r, all_p = batch_rates(wins, 25.0, 40.0, 150.0)
    r, p = batch_rates(wins, 25.0, 40.0, 150.0, rows=rows)
    assert np.array_equal(r[rows], all_r[rows]) and np.array_equal(p[rows], all_p[rows])
    assert np.isnan(r[~rows]).all() and (p[~rows] == 0).all()
    assert np.isfinite(all_r).sum() > 20
    none_r, none_p = batch_rates(wins, 25.0, 40.0, 150.0, rows=np.zeros(30, bool))
    assert np.isnan(none_r).all() and (none_p == 0).all()


def test_autocorrelation_matches_a_direct_sum() -> None:
    x = np.random.default_rng(6).normal(0, 1, 301)
    ac = _autocorr(x, 40)
    y = x - x.mean()
    want = np.array([y[: y.size - k] @ y[k:] / (y.size - k) for k in range(41)])
    assert np.allclose(ac, want / want[0], rtol=0, atol=1e-12)
