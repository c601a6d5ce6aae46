"""Stage 6: sleep/wake from epoch activity counts, awakenings, and the night's summary.

``score_sleep`` accepts any epoch counts (bed-sensor counts from the Detector, or wrist
actigraphy counts) and any epoch length. It is a Cole-Kripke-style rule (Cole et al. 1992,
Sleep 15:461): a weighted window over the activity from 4 min before to 2 min after each
epoch, with Cole-Kripke's 1-min weights (404, 598, 326, 441, 1408, 508, 350, normalised to a
weighted mean), applied to counts *normalised to the night's own scale* instead of a
device-specific constant: counts are divided by ``scale`` (by default a robust high level of
the record: the mean of its top decile of non-zero counts) and compressed with ``log1p`` so
one violent movement does not hide the rest. An epoch is wake when the weighted value
reaches ``threshold``. ``main_sleep`` finds the night's major sleep period (sleep runs
joined across wake gaps shorter than an hour; the longest block).

``cole_kripke`` is the classic reference (1-min epochs, P = 0.00001, D < 1 is sleep) for
comparison. ``find_bouts`` / ``find_awakenings`` turn per-epoch calls into debounced bouts:
an awakening is a wake bout of at least ``wake_bout_epochs`` after sleep onset (one bout is
one awakening), sleep onset the first sleep bout of at least ``sleep_bout_epochs``.

The Detector's streaming scorer (``SleepStream``) uses the same weighted window on
baseline-relative counts (``scale`` fixed at 1: the resting baseline already normalises the
bed sensor) only to force wake on sustained heavy movement, and otherwise the sleeper's heart
rate (see its docstring): on a bed sensor quiet wakefulness does not move more than sleep.
Lag: an epoch's call comes out once ``sleep_lookahead_epochs`` (6: 3 min) more epochs are in,
i.e. 3.5 min after the epoch starts; an awakening / fell_asleep event needs
``wake_bout_epochs`` / ``sleep_bout_epochs`` calls (2: 1 min), so it is emitted about 4.5 min
after its start (its ``start_s`` is the bout's first epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import numpy as np

# Cole-Kripke 1992, 1-min epochs: weights for minutes -4..+2 (P = 0.00001).
CK_WEIGHTS_1MIN = np.array([404.0, 598.0, 326.0, 441.0, 1408.0, 508.0, 350.0])
CK_P_1MIN = 0.00001
_CK_BEFORE_MIN = 4
_CK_AFTER_MIN = 2


def cole_kripke(counts_per_min: np.ndarray) -> np.ndarray:
    """Classic Cole-Kripke (1992) on 1-min counts: True where asleep (D < 1).

    Epochs beyond the record are taken as 0 (the published rule leaves the edges open).
    """
    a = np.asarray(counts_per_min, dtype=float)
    if a.size == 0:
        return np.zeros(0, bool)
    pad = np.concatenate((np.zeros(_CK_BEFORE_MIN), a, np.zeros(_CK_AFTER_MIN)))
    d = CK_P_1MIN * np.convolve(pad, CK_WEIGHTS_1MIN[::-1], mode="valid")
    return np.asarray(d < 1.0)


def window_weights(epoch_s: float) -> tuple[np.ndarray, int]:
    """Cole-Kripke's weights resampled to ``epoch_s`` epochs, summing to 1.

    Returns (weights, look-ahead in epochs). For 60-s epochs these are the published
    weights normalised; for 30-s epochs each minute's weight is shared by its two epochs.
    """
    if epoch_s <= 0:
        raise ValueError(f"epoch_s must be positive, got {epoch_s}")
    before = max(1, round(_CK_BEFORE_MIN * 60.0 / epoch_s))
    after = max(1, round(_CK_AFTER_MIN * 60.0 / epoch_s))
    # epoch centre offsets in minutes, mapped onto the 1-min weight profile
    offs = np.arange(-before, after + 1) * epoch_s / 60.0
    w = np.interp(offs, np.arange(-_CK_BEFORE_MIN, _CK_AFTER_MIN + 1), CK_WEIGHTS_1MIN)
    return w / w.sum(), after


def night_scale(counts: np.ndarray) -> float:
    """The night's own activity scale: mean of the top decile of non-zero counts (>0)."""
    c = np.asarray(counts, dtype=float)
    nz = c[c > 0]
    if nz.size == 0:
        return 1.0
    hi = nz[nz >= np.quantile(nz, 0.9)]
    return float(hi.mean()) if hi.size else 1.0


def weighted_activity(counts: np.ndarray, epoch_s: float, scale: float) -> np.ndarray:
    """The weighted, normalised activity of every epoch (edges padded with 0)."""
    c = np.log1p(np.maximum(np.asarray(counts, dtype=float), 0.0) / max(scale, 1e-12) * 10.0)
    w, after = window_weights(epoch_s)
    before = w.size - 1 - after
    pad = np.concatenate((np.zeros(before), c, np.zeros(after)))
    return np.convolve(pad, w[::-1], mode="valid")


DEFAULT_THRESHOLD = 0.1


def score_sleep(
    counts: np.ndarray,
    epoch_s: float,
    threshold: float = DEFAULT_THRESHOLD,
    scale: float | None = None,
) -> np.ndarray:
    """Sleep (True) / wake per epoch from any epoch activity counts.

    ``counts`` are non-negative activity counts per epoch of ``epoch_s`` seconds (bed-sensor
    counts or wrist actigraphy). ``scale`` normalises them (default: ``night_scale``);
    ``threshold`` is on the weighted value of ``log1p(10 x counts / scale)``: the default 0.1
    means the window averages about 1 % of the night's high activity level (on the wrist
    actigraphy of ``shared/data`` this puts the main sleep's offset within a few minutes of
    the diary, as Cole-Kripke does, and its onset closer to the diary's bedtime than
    Cole-Kripke's). Empty input gives an
    empty array; negative counts count as 0.
    """
    c = np.asarray(counts, dtype=float)
    if c.size == 0:
        return np.zeros(0, bool)
    s = night_scale(c) if scale is None else scale
    return np.asarray(weighted_activity(c, epoch_s, s) < threshold)


@dataclass(frozen=True, slots=True)
class Bout:
    """A run of epochs ``[start, end)`` with the same call."""

    start: int
    end: int
    asleep: bool


def find_bouts(asleep: np.ndarray) -> list[Bout]:
    """Runs of equal calls, in order."""
    a = np.asarray(asleep, dtype=bool)
    if a.size == 0:
        return []
    edges = np.flatnonzero(a[1:] != a[:-1]) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [a.size]))
    return [Bout(int(s), int(e), bool(a[s])) for s, e in zip(starts, ends, strict=True)]


def find_awakenings(asleep: np.ndarray, wake_bout_epochs: int = 2, sleep_bout_epochs: int = 2) -> list[Bout]:
    """Wake bouts of at least ``wake_bout_epochs`` between sleep onset and sleep offset.

    Sleep onset is the first sleep bout of at least ``sleep_bout_epochs``; shorter wake
    bouts are absorbed (one awakening is one bout, however fragmented its calls inside).
    """
    a = np.asarray(asleep, dtype=bool)
    bouts = find_bouts(a)
    onset = next((b.start for b in bouts if b.asleep and b.end - b.start >= sleep_bout_epochs), None)
    if onset is None:
        return []
    last_sleep = max(b.end for b in bouts if b.asleep)
    out = [
        b
        for b in bouts
        if not b.asleep and b.start >= onset and b.end <= last_sleep and b.end - b.start >= wake_bout_epochs
    ]
    return out


def main_sleep(asleep: np.ndarray, max_gap_epochs: int, min_run_epochs: int = 5) -> tuple[int, int] | None:
    """The major sleep period ``[start, end)`` in epochs: runs of at least ``min_run_epochs``
    sleep epochs joined across wake gaps shorter than ``max_gap_epochs``; the longest block."""
    runs = [(b.start, b.end) for b in find_bouts(asleep) if b.asleep and b.end - b.start >= min_run_epochs]
    if not runs:
        return None
    blocks = [list(runs[0])]
    for a, b in runs[1:]:
        if a - blocks[-1][1] < max_gap_epochs:
            blocks[-1][1] = b
        else:
            blocks.append([a, b])
    best = max(blocks, key=lambda blk: blk[1] - blk[0])
    return best[0], best[1]


@dataclass(frozen=True, slots=True)
class SleepSummary:
    """A night's sleep figures (seconds from the start of the counts; minutes where named)."""

    sleep_onset_s: float | None
    sleep_offset_s: float | None
    total_sleep_min: float
    waso_min: float
    awakenings: int
    efficiency: float | None  # sleep time / (offset - onset)


def summarize_sleep(
    asleep: np.ndarray, epoch_s: float, wake_bout_epochs: int = 2, sleep_bout_epochs: int = 2
) -> SleepSummary:
    """Sleep onset/offset, wake after sleep onset, awakenings, from per-epoch calls."""
    a = np.asarray(asleep, dtype=bool)
    bouts = find_bouts(a)
    onset = next((b.start for b in bouts if b.asleep and b.end - b.start >= sleep_bout_epochs), None)
    if onset is None:
        return SleepSummary(None, None, float(a.sum()) * epoch_s / 60.0, 0.0, 0, None)
    offset = max(b.end for b in bouts if b.asleep)
    span = a[onset:offset]
    waso = float((~span).sum()) * epoch_s / 60.0
    tst = float(span.sum()) * epoch_s / 60.0
    n_aw = len(find_awakenings(a, wake_bout_epochs, sleep_bout_epochs))
    eff = tst / ((offset - onset) * epoch_s / 60.0) if offset > onset else None
    return SleepSummary(onset * epoch_s, offset * epoch_s, tst, waso, n_aw, eff)


@dataclass(frozen=True, slots=True)
class SleepCall:
    """One epoch's call from the streaming scorer, with any bout transition it completed."""

    epoch: int
    asleep: bool
    weighted: float
    transition: str | None  # "awakening" / "fell_asleep" / None
    bout_start_epoch: int  # first epoch of the bout that made the transition


#: Called epochs are dropped from the streaming scorer's lists in batches of this many.
COMPACT_EPOCHS = 1024


class SleepStream:
    """Streaming sleep/wake for the Detector, with debounced bouts (one per Detector).

    Feed one count (and, when measured, the epoch's heart rate) per finished epoch; the call
    for epoch ``e`` comes out when epoch ``e + lookahead`` is in (``lookahead`` is the larger
    of the weighted window's 2 min and ``hr_lookahead_epochs``). Out of bed is wake.

    Each epoch's call: wake when the weighted activity reaches ``threshold`` (sustained heavy
    movement); otherwise the heart rate decides, because on a bed sensor quiet wakefulness
    and sleep move alike while the heart does not: it slows at sleep onset and speeds up on
    waking by 5-10 bpm (Bonnet & Arand 1997; Trinder et al. 2001). The levels are the
    sleeper's own, per bout: asleep -> wake when the heart rate reaches the current sleep
    bout's level (median of its last 20 epochs) + ``hr_rise_bpm`` and the next measured epoch too (an
    arousal after a movement fades within seconds; waking lasts); awake -> asleep when it falls to
    the current wake bout's level (median of its last 10 epochs) - ``hr_drop_bpm``, or back to
    within half of ``hr_rise_bpm`` of the sleeping level it woke from. An epoch
    without a heart rate (movement) is judged by the next measured one within the look-ahead
    (a movement followed by a raised heart is an awakening, one followed by a sleeping heart
    is not); with none, it keeps the previous call. A heart rate more than 25 % away from the
    median of the last 20 is ignored (a harmonic of the beat, not a change of rate).
    """

    def __init__(
        self,
        epoch_s: float,
        threshold: float,
        wake_bout_epochs: int,
        sleep_bout_epochs: int,
        scale: float = 1.0,
        hr_drop_bpm: float = 4.0,
        hr_rise_bpm: float = 4.0,
        hr_lookahead_epochs: int = 6,
    ) -> None:
        self.epoch_s = epoch_s
        self.w, self.after = window_weights(epoch_s)
        self.before = self.w.size - 1 - self.after
        self.lookahead = max(self.after, hr_lookahead_epochs)
        self.threshold = threshold
        self.scale = scale
        self.hr_drop = hr_drop_bpm
        self.hr_rise = hr_rise_bpm
        self.wake_n = max(1, wake_bout_epochs)
        self.sleep_n = max(1, sleep_bout_epochs)
        self.buf: list[float] = [0.0] * self.before  # compressed counts, padded history
        self.in_bed: list[bool] = []
        self.hr: list[float | None] = []
        self.dropped = 0  # epochs called and dropped from the front of buf, in_bed and hr
        self.next_epoch = 0  # next epoch to call
        self.asleep: bool | None = None
        self.raw: bool = False  # previous epoch's call
        self.run_state: bool | None = None
        self.run_start = 0
        self.run_len = 0
        self.wake_hrs: list[float] = []
        self.sleep_hrs: list[float] = []
        self.recent_hr: list[float] = []
        self.last_sleep_level: float | None = None

    def _compress(self, count: float) -> float:
        return float(np.log1p(max(count, 0.0) / self.scale * 10.0))

    def add(self, count: float, in_bed: bool, hr: float | None = None) -> list[SleepCall]:
        """Feed the next epoch's count; return the calls that became possible."""
        self.buf.append(self._compress(count))
        self.in_bed.append(in_bed)
        if hr is not None:
            # a rate far from the recent ones is a measurement error (a harmonic), not a change
            if self.recent_hr and abs(hr / float(median(self.recent_hr)) - 1.0) > 0.25:
                hr = None
            else:
                self.recent_hr.append(hr)
                del self.recent_hr[:-20]
        self.hr.append(hr)
        out: list[SleepCall] = []
        while self.next_epoch + self.lookahead < self.dropped + len(self.in_bed):
            out.append(self._call())
        if self.next_epoch - self.dropped >= COMPACT_EPOCHS:
            # called epochs are never read again: a stream that runs for months stays small
            k = self.next_epoch - self.dropped
            del self.buf[:k], self.in_bed[:k], self.hr[:k]
            self.dropped += k
        return out

    def flush(self) -> list[SleepCall]:
        """End of stream: call the remaining epochs with the future padded by 0."""
        out: list[SleepCall] = []
        n = self.dropped + len(self.in_bed)
        self.buf.extend([0.0] * self.after)
        while self.next_epoch < n:
            out.append(self._call())
        del self.buf[len(self.buf) - self.after :]
        return out

    def _by_heart(self, hr: float, then: float | None) -> bool:
        """The call a heart rate makes, from the previous call's side of the hysteresis.

        ``then`` is the next measured rate (look-ahead): waking needs the rise to last.
        """
        if self.raw:
            if not self.sleep_hrs:
                return True  # just fell asleep: no sleeping level yet
            limit = float(median(self.sleep_hrs)) + self.hr_rise
            return hr < limit or (then is not None and then < limit)
        if not self.wake_hrs:
            return False
        if hr <= float(median(self.wake_hrs)) - self.hr_drop:
            return True
        # back within half the rise of the sleeping level it woke from: asleep again
        lvl = self.last_sleep_level
        return lvl is not None and hr <= lvl + 0.5 * self.hr_rise

    def _call(self) -> SleepCall:
        e = self.next_epoch
        i = e - self.dropped  # its place in the lists
        window = np.asarray(self.buf[i : i + self.w.size])
        weighted = float(window @ self.w)
        hr = self.hr[i]
        if not self.in_bed[i] or weighted >= self.threshold:
            asleep = False
        else:
            ahead = [h for h in self.hr[i : i + self.lookahead + 1] if h is not None]
            asleep = self.raw if not ahead else self._by_heart(ahead[0], ahead[1] if len(ahead) > 1 else None)
        if asleep != self.raw:
            # a new bout: its own level (the sleeping heart rate drifts through the night)
            if asleep:
                self.sleep_hrs = []
            else:
                self.last_sleep_level = float(median(self.sleep_hrs)) if self.sleep_hrs else None
                self.wake_hrs = []
        if hr is not None and self.in_bed[i]:
            hrs = self.sleep_hrs if asleep else self.wake_hrs
            hrs.append(hr)
            del hrs[: -20 if asleep else -10]
        self.raw = asleep
        self.next_epoch += 1
        transition = None
        if asleep == self.run_state:
            self.run_len += 1
        else:
            self.run_state, self.run_start, self.run_len = asleep, e, 1
        bout_start = self.run_start
        if asleep and self.asleep is not True and self.run_len == self.sleep_n:
            self.asleep = True
            transition = "fell_asleep"
        elif not asleep and self.asleep is not False and self.run_len == self.wake_n:
            transition = "awakening" if self.asleep is True else None
            self.asleep = False
        return SleepCall(e, asleep, weighted, transition, bout_start)
