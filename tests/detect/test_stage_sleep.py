"""Stage 6 alone: sleep scoring on any counts, awakenings, summary, streaming scorer."""

from __future__ import annotations

import numpy as np
import pytest

from service.detect import sleep as sleep_module
from service.detect.sleep import (
    SleepStream,
    cole_kripke,
    find_awakenings,
    main_sleep,
    score_sleep,
    summarize_sleep,
    window_weights,
)


def night_counts(scale: float = 1.0) -> np.ndarray:
    """1-min counts: 60 min awake, 5 h asleep with a 10-min awakening, 60 min awake."""
    rng = np.random.default_rng(0)
    awake = rng.uniform(100, 600, 60)
    c = np.concatenate((awake, np.zeros(150), rng.uniform(100, 600, 10), np.zeros(140), awake))
    return c * scale


def test_cole_kripke_scores_stillness_as_sleep_and_activity_as_wake() -> None:
    ck = cole_kripke(night_counts())
    assert ck[100] and ck[300] and not ck[30] and not ck[215]


def test_score_sleep_normalises_counts_to_the_night_so_any_device_scale_works() -> None:
    a = score_sleep(night_counts(), 60.0)
    assert np.array_equal(a, score_sleep(night_counts(37.0), 60.0))
    assert a[100] and not a[30] and not a[215]


def test_score_sleep_accepts_30_s_epochs() -> None:
    c = np.repeat(night_counts() / 2, 2)
    a = score_sleep(c, 30.0)
    assert a.size == c.size and a[200] and not a[60]
    w, after = window_weights(30.0)
    assert w.sum() == pytest.approx(1.0) and after == 4


def test_one_awakening_is_one_event_however_fragmented() -> None:
    asleep = np.ones(100, bool)
    asleep[40:44] = False
    asleep[45:48] = False  # a wake bout with a one-epoch blip of sleep in it
    asleep[70] = False  # a single wake epoch: shorter than a wake bout
    aw = find_awakenings(asleep, wake_bout_epochs=2)
    assert [(b.start, b.end) for b in aw] == [(40, 44), (45, 48)]
    assert len(find_awakenings(np.where(np.arange(100) == 70, False, True), 2)) == 0


def test_summary_reports_onset_offset_waso_and_awakenings() -> None:
    asleep = np.zeros(120, bool)
    asleep[20:100] = True
    asleep[50:56] = False
    s = summarize_sleep(asleep, 30.0)
    assert s.sleep_onset_s == 600.0 and s.sleep_offset_s == 3000.0
    assert s.waso_min == 3.0 and s.awakenings == 1
    assert summarize_sleep(np.zeros(10, bool), 30.0).sleep_onset_s is None


def test_main_sleep_joins_runs_across_short_wake_gaps() -> None:
    asleep = np.zeros(600, bool)
    asleep[100:200] = True
    asleep[230:500] = True
    asleep[580:590] = True
    assert main_sleep(asleep, 60) == (100, 500)


def test_streaming_scorer_falls_asleep_on_a_heart_rate_drop_and_wakes_on_a_rise() -> None:
    s = SleepStream(30.0, threshold=7.0, wake_bout_epochs=2, sleep_bout_epochs=2)
    hr = [70.0] * 10 + [60.0] * 40 + [68.0] * 6 + [60.0] * 20
    calls = [c for h in hr for c in s.add(0.0, True, h)] + s.flush()
    assert [c.epoch for c in calls] == list(range(len(hr)))
    trans = [(c.transition, c.bout_start_epoch) for c in calls if c.transition]
    assert trans == [("fell_asleep", 10), ("awakening", 50), ("fell_asleep", 56)]


def test_streaming_scorer_judges_a_movement_by_the_heart_rate_after_it() -> None:
    s = SleepStream(30.0, threshold=7.0, wake_bout_epochs=2, sleep_bout_epochs=2)
    hr: list[float | None] = (
        [70.0] * 10 + [60.0] * 30 + [None, None] + [60.0] * 20 + [None] + [69.0] * 6 + [60.0] * 10
    )
    calls = [c for h in hr for c in s.add(50.0 if h is None else 0.0, True, h)] + s.flush()
    trans = [(c.transition, c.bout_start_epoch) for c in calls if c.transition]
    assert ("awakening", 40) not in trans  # movement, then a sleeping heart: still asleep
    assert ("awakening", 62) in trans  # movement, then a raised heart: the awakening starts at it


def test_out_of_bed_epochs_are_wake() -> None:
    s = SleepStream(30.0, threshold=7.0, wake_bout_epochs=2, sleep_bout_epochs=2)
    calls = [c for _ in range(20) for c in s.add(0.0, False, None)] + s.flush()
    assert not any(c.asleep for c in calls)


def _stream(counts: list[float], hrs: list[float | None]) -> tuple[list[tuple[object, ...]], int]:
    """Every call of a SleepStream over the counts, and the most epochs it held at once."""
    s = SleepStream(30.0, threshold=7.0, wake_bout_epochs=2, sleep_bout_epochs=2)
    calls, held = [], 0
    for c, h in zip(counts, hrs, strict=True):
        calls += s.add(c, True, h)
        held = max(held, len(s.in_bed))
    calls += s.flush()
    return [(c.epoch, c.asleep, c.weighted, c.transition, c.bout_start_epoch) for c in calls], held


def test_a_stream_of_many_days_holds_few_epochs_and_calls_them_as_if_it_held_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(11)
    n = 5 * sleep_module.COMPACT_EPOCHS + 17  # about 43 hours of 30-s epochs
    counts = np.where(rng.random(n) < 0.15, rng.exponential(40.0, n), rng.exponential(1.0, n)).tolist()
    hrs = [None if rng.random() < 0.2 else float(60 + 8 * rng.standard_normal()) for _ in range(n)]
    calls, held = _stream(counts, hrs)
    bound = sleep_module.COMPACT_EPOCHS + 20  # one batch, plus the look-ahead
    monkeypatch.setattr(sleep_module, "COMPACT_EPOCHS", 10 * n)  # never drop anything
    plain, held_all = _stream(counts, hrs)
    assert calls == plain and len(calls) == n
    assert any(c[3] == "awakening" for c in calls)
    assert held <= bound < held_all == n
