"""The streaming Detector: raw samples in, events, states, epochs and vitals out.

Stages run in this order on every block: sensor health (repairs glitches), conditioning
(filters, decimation, bands), envelope frames, baseline (holds the first
``baseline_warmup_s`` back), segmentation and classification, then on a fixed tick of the
stream: presence and vitals (every ``vitals_hop_s``) and sleep epochs (every ``epoch_s``).

Every output is dated by the sample index at which it was decided, and outputs are sorted by
that index, so the concatenated outputs are the same whatever the block size (one pass or
0.1-s live blocks). Latency: a movement onset (``State.moving`` True) comes out in the block
that completes its first envelope frame above threshold, except during the warm-up at the
stream start (released together at its end); a finished movement comes out
``max(min_off_s, merge_gap_s)`` after it ends; health looks ``glitch_max_samples + 1``
samples ahead (20 ms at 250 Hz) only when a block ends on a jump that could start a fault;
PLM series and restless clusters come out when they end (90 s / 10 s after the last movement);
bed entry / exit ``presence_dwell_s`` after the change; sleep calls about 3.5 min after their
epoch starts (see ``service.detect.sleep``).

State.t_s is when the change happened (a movement's onset, the first window of new presence
evidence, the first epoch of a sleep bout), which can be earlier than States already emitted:
outputs come in the order they were decided, not sorted by their own times. Events carry
their own start/end. Series and sleep/presence state changes need the sleeper in bed: PLM
series and restless clusters count only movements made while in bed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from statistics import median
from typing import NamedTuple

import numpy as np

from service.detect.baseline import Baseline
from service.detect.classify import (
    Label,
    PlmTracker,
    RestlessTracker,
    SeriesOut,
    classify_segment,
    plm_interval_s,
)
from service.detect.condition import Conditioner
from service.detect.emit import (
    ORDER_EPOCH,
    ORDER_MOVEMENT,
    ORDER_PRESENCE,
    ORDER_SERIES,
    ORDER_SLEEP,
    ORDER_STATE,
    ORDER_VITALS,
    FaultLead,
    Pending,
    StateChange,
)
from service.detect.envelope import FrameEnvelope
from service.detect.health import HealthResult, SensorHealth
from service.detect.params import PROFILES, DetectorParams
from service.detect.presence import PresenceTracker
from service.detect.segments import Segment, Segmenter
from service.detect.sleep import COMPACT_EPOCHS, SleepCall, SleepStream
from service.detect.types import MOVEMENT_TYPES, Epoch, Event, Output, State, Vitals
from service.detect.vitals import BREATH_HARMONIC_RATIO, batch_rates, decimation, heart_envelope


@dataclass(frozen=True, slots=True)
class _Move:
    """A finished movement waiting for the series trackers."""

    decided: int  # frame
    at: int  # raw sample index of the decision
    type: str
    start_s: float
    end_s: float
    intensity: float


class _HopFeat(NamedTuple):
    """What one vitals / presence window holds (NaN or 0 where there is no data)."""

    rms: float
    periodicity: float  # the larger of the heart and breathing periodicity
    heart_bpm: float | None  # None: no rate, or not periodic enough to report
    breath_bpm: float | None
    moving: bool
    fault: bool
    settled: bool  # no movement for sleep_hr_settle_s before the window either


class _Tape:
    """An append-only 1-D series addressed by absolute index, keeping only a recent tail."""

    def __init__(self, dtype: type, keep: int) -> None:
        self.buf: np.ndarray = np.zeros(1024, dtype=dtype)
        self.start = 0  # absolute index of buf[0]
        self.n = 0  # used length of buf
        self.keep = max(1, keep)

    @property
    def end(self) -> int:
        """Absolute index one past the last value."""
        return self.start + self.n

    def append(self, x: np.ndarray) -> None:
        m = x.size
        if self.n + m > self.buf.size:
            drop = max(0, self.n - self.keep)
            live = self.buf[drop : self.n]
            size = max(1024, 2 * (live.size + m))
            nb = np.zeros(size, dtype=self.buf.dtype)
            nb[: live.size] = live
            self.buf = nb
            self.start += drop
            self.n = live.size
        self.buf[self.n : self.n + m] = x
        self.n += m

    def get(self, lo: int, hi: int) -> np.ndarray:
        lo = max(lo, self.start)
        hi = min(hi, self.end)
        if hi <= lo:
            return self.buf[:0]
        return self.buf[lo - self.start : hi - self.start]


class Detector:
    """Streaming detector for one sensor stream (not thread-safe: one caller at a time).

    ``process(samples)`` takes a 1-D array of raw samples (any dtype, any length, even 1) and
    returns the outputs decided by it, in order; ``flush()`` ends the stream. Times are
    seconds since the first sample (index / ``rate_hz``).
    """

    def __init__(self, rate_hz: float, params: DetectorParams | None = None) -> None:
        p = params if params is not None else DetectorParams()
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        if p.profile not in PROFILES:
            raise ValueError(f"unknown rule profile {p.profile!r}: use one of {PROFILES}")
        self.rate_hz = float(rate_hz)
        self.params = p
        self.health = SensorHealth(self.rate_hz, p)
        self.cond = Conditioner(self.rate_hz, p)
        self.fs = self.cond.internal_hz
        self.factor = self.cond.factor
        self.frame_n = max(1, round(p.frame_s * self.fs))
        self.frame_raw = self.frame_n * self.factor  # raw samples per frame
        self.frame_s = self.frame_raw / self.rate_hz
        self.env = FrameEnvelope(self.frame_n)
        self.base = Baseline(self.frame_s, p)
        self.seg = Segmenter(self.frame_s, p)
        # movement boundaries on the samples (see _bounds_s)
        self.n_look = max(0, round(p.onset_lookback_s * self.fs))
        self.n_gap = max(0, round(p.onset_gap_s * self.fs))
        self.n_rest = max(1, round(p.end_rest_s * self.fs))
        self.n_rms = max(1, round(p.frame_s * self.fs))
        self.n_hp = max(1, round(p.boundary_highpass_s * self.fs))
        self.n_smooth = max(1, round(p.boundary_smooth_s * self.fs))
        self.n_pad = self.n_hp + self.n_rms  # margin before the lookback (centred windows)
        self.n_before = max(1, round(p.posture_window_s / self.frame_s))
        self.plm = PlmTracker(p)
        self.restless = RestlessTracker(p)
        self.presence = PresenceTracker(p)
        self.sleep = SleepStream(
            p.epoch_s,
            p.sleep_threshold,
            p.wake_bout_epochs,
            p.sleep_bout_epochs,
            hr_drop_bpm=p.sleep_hr_drop_bpm,
            hr_rise_bpm=p.wake_hr_rise_bpm,
            hr_lookahead_epochs=p.sleep_lookahead_epochs,
        )
        self.epoch_hr: list[float] = []
        self.epoch_hr_unsettled: list[float] = []
        self.settle_frames = max(0, round(p.sleep_hr_settle_s / self.frame_s))
        keep_s = 300.0
        keep_int = round(keep_s * self.fs)
        self.t_move = _Tape(np.float64, keep_int)
        self.t_det = _Tape(np.float64, keep_int)
        self.t_breath = _Tape(np.float64, keep_int)
        self.t_raw = _Tape(np.float64, keep_int)
        keep_fr = round(keep_s / self.frame_s)
        self.f_base = _Tape(np.float64, keep_fr)
        self.f_ratio = _Tape(np.float64, keep_fr)
        self.f_moving = _Tape(np.bool_, keep_fr)
        self.f_fault = _Tape(np.bool_, keep_fr)
        self.released = 0  # frames released by the baseline (absolute frame index)
        self.n_raw = 0
        # nothing downstream is decided before the warm-up ends (frames are held till then)
        self.release_floor = self.base.warm_hops * self.base.fph * self.frame_raw
        # ticks (in frames)
        self.hop_frames = max(1, round(p.vitals_hop_s / self.frame_s))
        self.win_frames = max(self.hop_frames, round(p.presence_window_s / self.frame_s))
        self.vit_frames = max(1, round(p.vitals_window_s / self.frame_s))
        self.epoch_frames = max(1, round(p.epoch_s / self.frame_s))
        self.next_hop = self.hop_frames
        self._env_pad = heart_envelope(np.zeros(8), self.fs)[1]
        self.next_epoch = self.epoch_frames
        self.epoch_count = 0.0
        self.epoch_fault = 0
        self.epoch_inbed: list[bool] = []
        self.epoch_counts: list[float] = []
        self.epoch_dropped = 0  # epochs already called, dropped from the front of the two lists
        # output assembly
        self.seq = 0
        self.serial = 0
        self.state = State(0.0, None, False, None)
        self.recent_moves: deque[Event] = deque(maxlen=64)
        self.last_brief: tuple[float, float] | None = None  # (start_s, peak) of the last brief burst
        self.fault_leads: list[FaultLead] = []
        self.presence_log: list[tuple[int, bool]] = []  # (frame decided, in bed)
        self.flushed = False

    # ---------------------------------------------------------------- helpers
    def _at(self, frame_end: int) -> int:
        """Raw index at which frames [0, frame_end) are complete (not before release)."""
        return max(frame_end * self.frame_raw, self.release_floor)

    def _t(self, frame: int) -> float:
        return frame * self.frame_raw / self.rate_hz

    def _pend(self, at: int, order: int, out: Output | StateChange | FaultLead) -> Pending:
        self.serial += 1
        return Pending(at, order, out, self.serial)

    # ---------------------------------------------------------------- public API
    def process(self, samples: np.ndarray) -> list[Output]:
        """Feed the next block of raw samples; return what it decided, in time order."""
        if self.flushed:
            raise RuntimeError("process() after flush(): make a new Detector for a new stream")
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.size == 0:
            return []
        if not np.isfinite(x).all():
            x = x.copy()
            bad = ~np.isfinite(x)
            x[bad] = 0.0 if self.health.prev is None else self.health.prev
        h = self.health.process(x)
        self.n_raw += h.clean.size  # samples decided by health (it looks a few ahead)
        pend = list(h.pending)
        pend += self._samples(h)
        return self._assemble(pend)

    def _samples(self, h: HealthResult) -> list[Pending]:
        """Everything downstream of sensor health for one run of repaired samples."""
        if h.clean.size == 0:
            return []
        bands = self.cond.process(h.clean, h.fault, h.resets)
        self.t_move.append(bands.move)
        self.t_det.append(bands.det)
        self.t_breath.append(bands.breath)
        self.t_raw.append(bands.raw)
        env, ff = self.env.process(bands.det, bands.fault)
        renv, rf, rbase = self.base.process(env, ff)
        if renv.size:
            return self._frames(renv, rf, rbase)
        return []

    @property
    def fault_open_s(self) -> float:
        """How long a sensor fault still in progress has lasted, seconds (0: none). Its
        ``sensor_fault`` event comes when it ends; this lets a caller report it sooner."""
        return self.health.fault_open_s

    def set_profile(self, profile: str) -> None:
        """Use rule profile ``profile`` from now on: PLM series that end later are grouped by its
        interval rule and every later event is labelled with it. Other stages keep their state.
        ValueError for an unknown profile."""
        if profile not in PROFILES:
            raise ValueError(f"unknown rule profile {profile!r}: use one of {PROFILES}")
        p = replace(self.params, profile=profile)
        self.params = p
        for stage in (self.health, self.base, self.seg, self.plm, self.restless, self.presence):
            if hasattr(stage, "p"):
                stage.p = p
        self.plm.min_iv = plm_interval_s(profile)

    def flush(self) -> list[Output]:
        """End of stream: close open movements, series, epochs; return the last outputs."""
        if self.flushed:
            return []
        self.flushed = True
        h, pend = self.health.flush()  # pend includes the held samples' own findings
        if h.clean.size:
            self.n_raw += h.clean.size
            pend += self._samples(h)
        if self.base.warming:
            self.release_floor = self.n_raw  # a stream shorter than the warm-up
        renv, rf, rbase = self.base.flush()
        if renv.size:
            pend += self._frames(renv, rf, rbase)
        end_frame = self.released
        at = max(self.n_raw, self.release_floor)
        moves: list[_Move] = []
        for s in self.seg.flush():
            pend += self._finished(s, at, moves)
        pend += self._track(moves)
        now_s = self._t(end_frame)
        pend += self._series(self.plm.flush(now_s), at)
        pend += self._series(self.restless.flush(now_s), at)
        for call in self.sleep.flush():
            pend += self._sleep_call(call, at)
        return self._assemble(pend)

    # ---------------------------------------------------------------- frames
    def _frames(self, env: np.ndarray, fault: np.ndarray, base: np.ndarray) -> list[Pending]:
        k0 = self.released
        n = env.size
        ratio = env / base
        self.f_ratio.append(ratio)
        self.f_base.append(base)
        self.f_fault.append(fault)
        pend: list[Pending] = []
        upd = self.seg.process(env, base, fault)
        self.f_moving.append(upd.moving)
        moves: list[_Move] = []
        for s in upd.finished:
            pend += self._finished(s, self._at(s.decided), moves)
        for o in upd.onsets:
            pend.append(self._pend(self._at(o + 1), ORDER_STATE, StateChange("moving", True, self._t(o))))
        self.released = k0 + n
        pend += self._ticks(k0, ratio, fault)
        # series trackers after the ticks, so that presence is known at each movement's time
        pend += self._track(moves)
        now_s = self._t(self.released)
        open_start = self.seg.open_start
        open_s = None if open_start is None else self._t(open_start)
        pend += self._series(self.plm.timeout(now_s, open_s), None)
        pend += self._series(self.restless.timeout(now_s, open_s), None)
        return pend

    def _in_bed_at(self, frame: int) -> bool | None:
        """Occupancy as decided by the end of ``frame`` (from the log of presence changes)."""
        state: bool | None = None
        for f, st in reversed(self.presence_log):
            if f <= frame:
                state = st
                break
        return state

    def _track(self, moves: list[_Move]) -> list[Pending]:
        """Feed finished movements to the PLM and restless trackers, in bed only: a body
        getting in or out (or a bump on an empty bed) is no part of a series."""
        out: list[Pending] = []
        for m in moves:
            if self._in_bed_at(m.decided) is not True:
                continue
            series = self.plm.add(m.type, m.start_s, m.end_s, m.intensity)
            series += self.restless.add(m.start_s, m.end_s, m.intensity)
            out += self._series(series, m.at)
        return out

    def _finished(self, s: Segment, at: int, moves: list[_Move]) -> list[Pending]:
        p = self.params
        ratio = self.f_ratio.get(s.start, s.end)
        band = self.t_move.get(s.start * self.frame_n, s.end * self.frame_n)
        breath = self.t_breath.get(s.start * self.frame_n, s.end * self.frame_n)
        before = self.t_breath.get((s.start - self.n_before) * self.frame_n, s.start * self.frame_n)
        start_s, end_s = self._bounds_s(s)
        lab = classify_segment(ratio, band, self.frame_s, self.fs, p, breath, before, end_s - start_s)
        off_state = self._pend(at, ORDER_STATE, StateChange("moving", False, end_s))
        if self._heartbeat(lab, start_s, end_s):
            return [off_state]
        if not lab.type:
            return [off_state]
        # a movement that runs into a sensor fault is the fault's doing, not a movement: the
        # fault event is extended back over it
        if self.f_fault.get(s.start, s.end + self.seg.n_off).any():
            return [off_state, self._pend(at, ORDER_MOVEMENT, FaultLead(start_s, end_s))]
        ev = Event(
            -1,
            lab.type,
            start_s,
            end_s,
            round(lab.intensity, 3),
            p.profile,
            confidence=round(lab.confidence, 3),
            details=lab.details,
        )
        moves.append(_Move(s.decided, at, lab.type, start_s, end_s, lab.intensity))
        return [self._pend(at, ORDER_MOVEMENT, ev), off_state]

    def _heartbeat(self, lab: Label, start_s: float, end_s: float) -> bool:
        """Is this brief burst a beat of a heartbeat train rather than a jerk?

        A jerk is a single brief burst. Brief bursts one heart period apart (onset to onset
        60/heart_max_bpm to 60/heart_min_bpm s) and of similar size (within
        ``jerk_beat_ratio``) are heartbeats standing above a baseline that has not learned
        them yet, as in the seconds after someone gets into an empty bed. Only the previous
        brief burst is looked at (causal, no delay), so a train's first beat still passes.
        """
        p = self.params
        if min(lab.details.get("core_s", math.inf), end_s - start_s) >= p.jerk_max_s:
            return False
        prev, self.last_brief = self.last_brief, (start_s, lab.intensity)
        if lab.type != "jerk" or prev is None or p.jerk_beat_ratio <= 0:
            return False
        gap = start_s - prev[0]
        size = max(lab.intensity, prev[1]) / max(min(lab.intensity, prev[1]), 1e-12)
        return 60.0 / p.heart_max_bpm <= gap <= 60.0 / p.heart_min_bpm and size <= p.jerk_beat_ratio

    def _bounds_s(self, s: Segment) -> tuple[float, float]:
        """A movement's physical start and end, seconds, placed on the samples, not the frames.

        The segment runs from the first 0.1-s frame above ``k_on`` to the last above ``k_off``;
        it is final ``max(min_off_s, merge_gap_s)`` after that, so the samples around both
        ends are at hand (only samples before the deciding frame are read: the result does not
        depend on the block size). Relative to the baseline at the onset:

        * start: from the end of the onset frame back over the samples whose centred 0.1-s
          RMS of the detection band (the movement band with the steeper low edge the envelope
          and baseline use) is at or above ``onset_k`` (dips shorter than
          ``onset_gap_s`` pass), at most ``onset_lookback_s`` before the onset frame: the rise
          a movement spends under ``k_on``;
        * end: the last sample up to the segment's end frame whose *edge envelope* is at or
          above ``end_k``. The edge envelope is the centred ``boundary_smooth_s`` RMS of the
          decimated input minus its centred ``boundary_highpass_s`` mean: a short symmetric
          high-pass, so what follows the movement is not the band filters' ring-down (which
          lasts about 0.3 s after a strong jerk at a 2-Hz edge).
        """
        p = self.params
        fn = self.frame_n
        i_on = s.start * fn  # first internal sample of the onset frame
        hi = s.decided * fn
        lo = max(i_on - self.n_look - self.n_rest - self.n_pad, 0)
        coarse = self._t(s.start), self._t(s.end)
        if hi <= i_on or hi - lo > self.t_move.keep:
            # longer than the tapes are sure to hold (whatever the block size): the frames
            return coarse
        band = self.t_det.get(lo, hi)
        raw = self.t_raw.get(lo, hi)
        base = self.f_base.get(s.start, s.start + 1)
        if band.size != hi - lo or raw.size != hi - lo or base.size == 0:
            return coarse
        b0 = float(base[0])
        on = _centred_rms(band, self.n_rms) >= p.onset_k * b0
        # start: back from the onset frame's last sample over the rise
        k = i_on + fn - 1 - lo
        floor = max(0, i_on - self.n_look - lo)
        start = k
        while start > floor:
            below = np.flatnonzero(~on[floor:start])
            if below.size == 0:
                start = floor
                break
            j = floor + int(below[-1])  # the last sample below the rise level
            run = np.flatnonzero(on[floor:j])  # ... and the rise before its dip
            d0 = floor + int(run[-1]) + 1 if run.size else floor
            if run.size == 0 or j + 1 - d0 > self.n_gap:
                start = j + 1
                break
            start = d0
        raw_c = raw - float(raw.mean())
        edge = raw_c - _centred_mean(raw_c, self.n_hp)
        env = _centred_rms(edge, self.n_smooth)
        e_hi = min(s.end * fn - lo, env.size)
        # the resting level of the edge envelope itself (its heartbeat peaks) just before the
        # movement, so that a heartbeat in the segment's k_off tail is not taken for its end
        rest = env[max(self.n_pad, start - self.n_rest) : max(self.n_pad, start - self.n_smooth)]
        level = p.end_k * b0
        if rest.size:
            level = min(max(level, p.end_rest_k * float(rest.max())), p.k_off * b0)
        above = np.flatnonzero(env[start:e_hi] >= level)
        end = start + int(above[-1]) + 1 if above.size else e_hi
        to_s = self.factor / self.rate_hz
        return (lo + start) * to_s, (lo + end) * to_s

    def _series(self, items: list[SeriesOut], at: int | None) -> list[Pending]:
        """Series events; ``at`` is the deciding movement's index, None for timeouts."""
        out = []
        for it in items:
            if at is None or it.timeout:
                a = max(math.ceil(it.decided_s * self.rate_hz - 1e-9), self.release_floor)
            else:
                a = at
            details = {"movements": float(it.movements), "mean_interval_s": round(it.mean_interval_s, 3)}
            ev = Event(
                -1,
                it.type,
                it.start_s,
                it.end_s,
                round(it.intensity, 3),
                self.params.profile,
                details=details,
            )
            out.append(self._pend(a, ORDER_SERIES, ev))
        return out

    # ---------------------------------------------------------------- ticks: vitals, presence, epochs
    def _ticks(self, k0: int, ratio: np.ndarray, fault: np.ndarray) -> list[Pending]:
        p = self.params
        pend: list[Pending] = []
        end = k0 + ratio.size
        # per-frame activity counts (baseline units x seconds above count_k)
        counts = np.where(fault, 0.0, np.maximum(ratio - p.count_k, 0.0)) * self.frame_s
        csum = np.concatenate(([0.0], np.cumsum(counts)))
        hops = list(range(self.next_hop, end + 1, self.hop_frames))
        feats = self._hop_features(hops)
        pos = k0
        h = 0
        while True:
            nxt = min(self.next_hop, self.next_epoch)
            if nxt > end:
                break
            self.epoch_count += float(csum[nxt - k0] - csum[pos - k0])
            pos = nxt
            if nxt == self.next_hop:
                pend += self._hop(nxt, feats[h])
                h += 1
                self.next_hop += self.hop_frames
            if nxt == self.next_epoch:
                pend += self._epoch(nxt)
                self.next_epoch += self.epoch_frames
        self.epoch_count += float(csum[end - k0] - csum[pos - k0])
        return pend

    def _hop_features(self, hops: list[int]) -> list[_HopFeat]:
        """Features of the windows ending at the given frames, computed in batches."""
        out: list[_HopFeat] = []
        p = self.params
        fn = self.frame_n
        # hops whose windows reach before the stream (or the kept tape) have no data
        need = max(self.win_frames, self.vit_frames) * fn + self._env_pad
        first = 0
        while first < len(hops) and hops[first] * fn - need < max(0, self.t_move.start):
            mov = self._flag(self.f_moving, hops[first], self.win_frames)
            settled = not self._flag(self.f_moving, hops[first], self.win_frames + self.settle_frames)
            flt = self._flag(self.f_fault, hops[first], self.win_frames)
            out.append(_HopFeat(np.nan, 0.0, None, None, mov, flt, settled))
            first += 1
        for b0 in range(first, len(hops), 256):
            ends = np.asarray(hops[b0 : b0 + 256])
            # movement / fault flags over the presence window (frames)
            f_lo = int(ends[0]) - self.win_frames
            ext = self.win_frames + self.settle_frames
            mv = self.f_moving.get(int(ends[0]) - ext, int(ends[-1]))
            ft = self.f_fault.get(f_lo, int(ends[-1]))
            if mv.size < int(ends[-1]) - int(ends[0]) + ext:  # near the stream start
                mv = np.concatenate((np.zeros(int(ends[-1]) - int(ends[0]) + ext - mv.size, bool), mv))
            mvx = np.lib.stride_tricks.sliding_window_view(mv, ext)[:: self.hop_frames]
            ftw = np.lib.stride_tricks.sliding_window_view(ft, self.win_frames)[:: self.hop_frames]
            moving = np.asarray(mvx[:, self.settle_frames :].any(axis=1), dtype=bool)
            settled_arr = ~np.asarray(mvx.any(axis=1), dtype=bool)
            faulty = np.asarray(ftw.any(axis=1), dtype=bool)
            # presence energy over the presence window
            pw = self.win_frames * fn
            i_lo = int(ends[0]) * fn - pw
            i_hi = int(ends[-1]) * fn
            hh = self.t_move.get(i_lo, i_hi)
            bb = self.t_breath.get(i_lo, i_hi)
            e2 = hh * hh + bb * bb
            win = np.lib.stride_tricks.sliding_window_view(e2, pw)[:: self.hop_frames * fn]
            rms = np.sqrt(win.mean(axis=1))
            # heart rate over the vitals window
            vw = self.vit_frames * fn
            hop_n = self.hop_frames * fn
            q = decimation(2, vw, hop_n)
            seg = self.t_move.get(int(ends[0]) * fn - vw - self._env_pad, i_hi)
            env, _ = heart_envelope(seg, self.fs)
            env = env[::q]
            wins = np.lib.stride_tricks.sliding_window_view(env, vw // q)[:: hop_n // q]
            # a window's rates and periodicity are read only if it is still and fault-free
            used = ~(moving | faulty)
            hr, hp = batch_rates(wins, self.fs / q, p.heart_min_bpm, p.heart_max_bpm, rows=used)
            qb = decimation(max(1, int(self.fs // 5.0)), vw, hop_n)
            seg = self.t_breath.get(int(ends[0]) * fn - vw, i_hi)[::qb]
            wins = np.lib.stride_tricks.sliding_window_view(seg, vw // qb)[:: hop_n // qb]
            br, bp = batch_rates(
                wins, self.fs / qb, p.breath_min_bpm, p.breath_max_bpm, BREATH_HARMONIC_RATIO, rows=used
            )
            # rates worth reporting (rounded one by one below: Python's round, not numpy's)
            hr_ok = (np.isfinite(hr) & (hp >= p.vitals_min_periodicity)).tolist()
            br_ok = (np.isfinite(br) & (bp >= p.vitals_min_periodicity)).tolist()
            hrs = [round(v, 1) if ok else None for v, ok in zip(hr.tolist(), hr_ok, strict=True)]
            brs = [round(v, 1) if ok else None for v, ok in zip(br.tolist(), br_ok, strict=True)]
            out += map(
                _HopFeat._make,
                zip(
                    rms.tolist(),
                    np.maximum(hp, bp).tolist(),
                    hrs,
                    brs,
                    moving.tolist(),
                    faulty.tolist(),
                    settled_arr.tolist(),
                    strict=True,
                ),
            )
        return out

    def _flag(self, tape: _Tape, f_end: int, frames: int) -> bool:
        return bool(tape.get(f_end - frames, f_end).any())

    def _hop(self, f_end: int, feat: _HopFeat) -> list[Pending]:
        p = self.params
        at = self._at(f_end)
        t_end = self._t(f_end)
        out: list[Pending] = []
        rms, per, hr, br, mov, flt, settled = feat
        w0 = f_end - self.win_frames
        if w0 >= 0 and not flt and math.isfinite(rms):
            occupied = self.presence.evidence(rms, per, mov)
            ch = self.presence.update(self._t(w0), t_end, occupied)
            if ch is not None:
                if not ch.first:
                    typ = "bed_entry" if ch.in_bed else "bed_exit"
                    ev = Event(-1, typ, ch.since_s, ch.since_s, 0.0, p.profile)
                    out.append(self._pend(at, ORDER_PRESENCE, ev))
                out.append(self._pend(at, ORDER_STATE, StateChange("in_bed", ch.in_bed, ch.since_s)))
                self.presence_log.append((f_end, ch.in_bed))
                del self.presence_log[:-64]  # only recent movements ask what it was
        if self.presence.state is not True or mov or flt:
            hr = br = None
        out.append(self._pend(at, ORDER_VITALS, Vitals(t_end, hr, br)))
        if hr is not None:
            # for sleep staging, rates measured after a movement's arousal has faded are
            # preferred; the others are used only when an epoch has no settled ones
            (self.epoch_hr if settled else self.epoch_hr_unsettled).append(hr)
        return out

    def _epoch(self, f_end: int) -> list[Pending]:
        at = self._at(f_end)
        count = self.epoch_count
        self.epoch_count = 0.0
        in_bed = self.presence.state is not False
        self.epoch_inbed.append(in_bed)
        self.epoch_counts.append(round(count, 6))
        out: list[Pending] = []
        # an epoch's heart rate needs two measurements (one window may straddle a movement)
        rates = self.epoch_hr if len(self.epoch_hr) >= 2 else self.epoch_hr + self.epoch_hr_unsettled
        hr = float(median(rates)) if len(rates) >= 2 else None  # statistics: quicker on a few values
        self.epoch_hr_unsettled = []
        self.epoch_hr = []
        for call in self.sleep.add(count, in_bed, hr):
            out += self._sleep_call(call, at)
        return out

    def _sleep_call(self, call: SleepCall, at: int) -> list[Pending]:
        p = self.params
        e_s = p.epoch_s
        # counts of called epochs are kept by the stream
        i = call.epoch - self.epoch_dropped
        count = self.epoch_counts[i]
        in_bed = self.epoch_inbed[i] if i < len(self.epoch_inbed) else False
        if i >= COMPACT_EPOCHS:  # calls come in epoch order: earlier epochs are never read again
            del self.epoch_counts[:i], self.epoch_inbed[:i]
            self.epoch_dropped += i
        out = [self._pend(at, ORDER_EPOCH, Epoch(call.epoch * e_s, e_s, count, call.asleep, in_bed))]
        if call.transition is not None:
            start = call.bout_start_epoch * e_s
            end = (call.epoch + 1) * e_s
            ev = Event(
                -1,
                call.transition,
                start,
                end,
                0.0,
                p.profile,
                details={"weighted_activity": round(call.weighted, 3)},
            )
            out.append(self._pend(at, ORDER_SLEEP, ev))
            out.append(
                self._pend(at, ORDER_STATE, StateChange("asleep", call.transition == "fell_asleep", start))
            )
        return out

    # ---------------------------------------------------------------- assembly
    def _assemble(self, pend: list[Pending]) -> list[Output]:
        pend.sort(key=Pending.key)
        out: list[Output] = []
        for item in pend:
            o = item.output
            if isinstance(o, StateChange):
                cur = self.state
                if getattr(cur, o.field) == o.value:
                    continue
                self.state = replace(cur, t_s=o.t_s, **{o.field: o.value})
                out.append(self.state)
                continue
            if isinstance(o, FaultLead):
                self.fault_leads.append(o)
                continue
            if isinstance(o, Event):
                if o.type == "sensor_fault":
                    o = self._extend_fault(o)
                cause = None
                if o.type == "awakening":
                    cause = self._cause(o)
                o = replace(o, seq=self.seq, cause_seq=cause)
                self.seq += 1
                if o.type in MOVEMENT_TYPES:
                    self.recent_moves.append(o)
            out.append(o)
        return out

    def _extend_fault(self, ev: Event) -> Event:
        """Start a fault event at the dropped movement that ran into it, if any."""
        start = ev.start_s
        keep: list[FaultLead] = []
        for lead in self.fault_leads:
            if lead.start_s <= ev.end_s and lead.end_s >= ev.start_s - self.params.min_off_s - self.frame_s:
                start = min(start, lead.start_s)
            elif lead.end_s > ev.end_s:
                keep.append(lead)
        self.fault_leads = keep
        return replace(ev, start_s=start) if start < ev.start_s else ev

    def _cause(self, aw: Event) -> int | None:
        """The movement that most likely caused an awakening.

        The last movement starting within ``cause_window_s`` before the wake bout; failing
        that, the first one starting in the bout's first epoch (epochs quantise the bout).
        """
        lo = aw.start_s - self.params.cause_window_s
        before = [m for m in self.recent_moves if lo <= m.start_s <= aw.start_s]
        if before:
            return before[-1].seq
        after = [m for m in self.recent_moves if aw.start_s < m.start_s <= aw.start_s + self.params.epoch_s]
        return after[0].seq if after else None


def _centred_mean(x: np.ndarray, n: int) -> np.ndarray:
    """The mean of ``x`` over ``n`` samples centred on each sample (zeros beyond the ends)."""
    if n <= 1:
        return x.copy()
    c = np.concatenate(([0.0], np.cumsum(x)))
    i = np.arange(x.size)
    a = np.clip(i - n // 2, 0, x.size)
    b = np.clip(i - n // 2 + n, 0, x.size)
    return (c[b] - c[a]) / n


def _centred_rms(x: np.ndarray, n: int) -> np.ndarray:
    """The RMS of ``x`` over ``n`` samples centred on each sample."""
    return np.sqrt(np.maximum(_centred_mean(x * x, n), 0.0))


ANALYZE_CHUNK_S = 600.0


def analyze_array(samples: np.ndarray, rate_hz: float, params: DetectorParams | None = None) -> list[Output]:
    """Offline convenience: the whole recording, then flush; the same outputs as streaming.

    The samples are fed in 10-min chunks (the result does not depend on the chunking), so
    memory stays bounded for long, fast recordings (8 h at 1000 Hz).
    """
    det = Detector(rate_hz, params)
    x = np.asarray(samples).ravel()
    step = max(1, round(ANALYZE_CHUNK_S * det.rate_hz))
    out: list[Output] = []
    for i in range(0, x.size, step):
        out += det.process(x[i : i + step])
    out += det.flush()
    return out
