"""Stage 2b: the adaptive, robust resting baseline of the movement envelope.

The AASM and WASM limb-movement rules measure movement against the EMG's *resting level*
(AASM 2007/2012: onset at 8 uV above resting, offset below 2 uV above resting; WASM 2016
restates them relative to the resting baseline). A bed sensor has no calibrated microvolts,
so the resting level is estimated from the envelope itself:

* every ``baseline_hop_s`` the hop's *largest* frame envelope becomes a candidate: at rest
  that is the peak of a heartbeat (the BCG J-wave), so the resting level is the typical
  heartbeat peak, and a movement must stand ``k_on`` times above the heartbeats, not above
  the near-silence between them (on a clean piezo the beats alone reach 5-10x the median
  frame);
* it enters the history only if the hop was still (below ``k_on`` x the current baseline)
  and free of sensor faults, so the baseline is *frozen while moving*;
* the baseline is the median of the last ``baseline_window_s`` of accepted hop values;
* at stream start there is no history: the first ``baseline_warmup_s`` of frames are held
  back and the first baseline is the median of the still hops among them (still judged
  against the median of the quieter half of the hops), then those frames are released;
* the level itself can change (someone gets into an empty bed; a new posture): if the frozen
  hops have been *steady* for ``baseline_steady_s`` (largest / smallest hop value at most
  ``baseline_steady_ratio``) and their frames *beat* (an autocorrelation peak at a heart
  rate of at least ``baseline_steady_periodicity``: heartbeats, not a movement's envelope)
  the baseline re-learns from them; failing that, after ``baseline_max_freeze_s`` it re-learns
  from the recent hop values. With an empty bed the baseline is simply the sensor noise floor.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from statistics import median

import numpy as np

from service.detect.params import DetectorParams
from service.detect.vitals import batch_rates

_FLOOR = 1e-12
_RUN_MIN = 64  # still runs at least this long take the vectorised path (_still_run, _accept_run)


class Baseline:
    """Streaming baseline tracker over envelope frames (one per stream)."""

    def __init__(self, frame_s: float, params: DetectorParams) -> None:
        self.p = params
        # frames per hop (at least 5, so that a slow stream's hop maximum is not one sample)
        self.fph = max(5, round(params.baseline_hop_s / frame_s))
        hop_s = self.fph * frame_s
        self.window_hops = max(1, round(params.baseline_window_s / hop_s))
        self.warm_hops = max(1, round(params.baseline_warmup_s / hop_s))
        self.max_freeze_hops = max(1, round(params.baseline_max_freeze_s / hop_s))
        self.history: deque[float] = deque(maxlen=self.window_hops)
        self._sorted: list[float] = []  # the history, sorted: its median without a sort per hop
        self.recent: deque[float] = deque(maxlen=self.window_hops)
        self.freeze = 0
        self.steady_hops = max(2, round(params.baseline_steady_s / hop_s))
        self.frozen_vals: deque[float] = deque(maxlen=self.steady_hops)
        self.frozen_frames: deque[np.ndarray] = deque(maxlen=self.steady_hops)
        self.frame_s = frame_s
        self.b = _FLOOR
        self.warming = True
        self._held_env: list[np.ndarray] = []
        self._held_fault: list[np.ndarray] = []
        self._held_n = 0
        self._hop_env = np.zeros(0)
        self._hop_fault = np.zeros(0, bool)

    # ------------------------------------------------------------------------------------
    def process(self, env: np.ndarray, fault: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed frames; return (env, fault, baseline) of the frames released now (in order)."""
        if self.warming:
            self._held_env.append(env)
            self._held_fault.append(fault)
            self._held_n += env.size
            need = self.warm_hops * self.fph
            if self._held_n < need:
                return np.zeros(0), np.zeros(0, bool), np.zeros(0)
            allenv = np.concatenate(self._held_env)
            allf = np.concatenate(self._held_fault)
            self._held_env, self._held_fault = [], []
            w_env, w_f = allenv[:need], allf[:need]
            base = self._warm_up(w_env, w_f, self.warm_hops)
            rest = self._steady(allenv[need:], allf[need:])
            return allenv, allf, np.concatenate((base, rest))
        return env, fault, self._steady(env, fault)

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """End of stream: release held warm-up frames (a stream shorter than the warm-up)."""
        if not self.warming:
            return np.zeros(0), np.zeros(0, bool), np.zeros(0)
        allenv = np.concatenate(self._held_env) if self._held_env else np.zeros(0)
        allf = np.concatenate(self._held_fault) if self._held_fault else np.zeros(0, bool)
        self._held_env, self._held_fault = [], []
        hops = allenv.size // self.fph
        base = self._warm_up(allenv, allf, hops)
        return allenv, allf, base

    # ------------------------------------------------------------------------------------
    def _warm_up(self, env: np.ndarray, fault: np.ndarray, hops: int) -> np.ndarray:
        self.warming = False
        n_full = hops * self.fph
        if hops > 0:
            blk = env[:n_full].reshape(hops, self.fph)
            mx = blk.max(axis=1)
            med = mx
            ok = ~fault[:n_full].reshape(hops, self.fph).any(axis=1)
            if not ok.any():
                ok = np.ones(hops, bool)
            meds = med[ok]
            lower = meds[meds <= np.median(meds)]
            b0 = max(float(np.median(lower)), _FLOOR)
            still = ok & (mx < self.p.k_on * b0)
            vals = med[still].tolist() or [b0]
            for v in vals[-self.window_hops :]:
                self.history.append(float(v))
            for v in med[ok].tolist()[-self.window_hops :]:
                self.recent.append(float(v))
            self._resort()
        elif env.size:
            self.b = max(float(np.median(env)), _FLOOR)
        # leftover frames of an incomplete hop (only at flush) start the running hop
        self._hop_env = env[n_full:].copy()
        self._hop_fault = fault[n_full:].copy()
        return np.full(env.size, self.b)

    def _resort(self) -> None:
        """The history was replaced: sort it again and take its median as the baseline."""
        self._sorted = sorted(self.history)
        self.b = max(median(self._sorted), _FLOOR)

    def _push(self, v: float) -> None:
        """Accept one hop value: the oldest leaves a full history; the baseline is the median
        (the same number as ``statistics.median(self.history)``, kept by insertion)."""
        srt = self._sorted
        if len(self.history) == self.history.maxlen:
            del srt[bisect_left(srt, self.history[0])]
        self.history.append(v)
        insort(srt, v)
        n = len(srt)
        mid = n // 2
        self.b = max(srt[mid] if n % 2 else (srt[mid - 1] + srt[mid]) / 2, _FLOOR)

    def _beating(self) -> bool:
        """Do the frozen frames pulse at a heart rate (a resting level, not a movement)?"""
        frames = np.concatenate(list(self.frozen_frames))[None, :]
        rate, per = batch_rates(frames, 1.0 / self.frame_s, 40.0, 150.0)
        return bool(np.isfinite(rate[0]) and per[0] >= self.p.baseline_steady_periodicity)

    def _still_run(self, mx: np.ndarray, bad: np.ndarray, j: int) -> int:
        """End (exclusive) of the run of hops from ``j`` that are surely all accepted.

        Hop i is accepted when ``mx[i] < k_on * b``, b the larger of the floor and the median
        of the history before it. With a full history, every such median is at least the
        smallest value of the history and of the run so far, so while the run's largest value
        stays below ``k_on`` times that smallest value, every hop of it is accepted, whatever
        the medians are. A fault hop ends a run.
        """
        seg = mx[j:]
        run_max = np.maximum.accumulate(seg)
        run_min = np.minimum(np.minimum.accumulate(seg), self._sorted[0])
        fail = bad[j:] | ~(run_max < self.p.k_on * run_min)
        return j + int(np.argmax(fail)) if fail.any() else mx.size

    def _accept_run(self, vals: np.ndarray) -> list[float]:
        """Accept hop values that ``_still_run`` found all accepted (with a full history): the
        state ``_push`` would leave one by one, and the baseline after each of them (medians
        of the sliding windows by a row sort: the same numbers as the sorted-list median)."""
        w = self.window_hops
        hist = np.fromiter(self.history, float, w)
        srt = np.sort(np.lib.stride_tricks.sliding_window_view(np.concatenate((hist, vals)), w)[1:], axis=1)
        mid = w // 2
        med = srt[:, mid] if w % 2 else (srt[:, mid - 1] + srt[:, mid]) / 2
        new = vals.tolist()
        self.recent.extend(new)
        self.history.extend(new)
        self._sorted = sorted(self.history)
        base: list[float] = np.maximum(med, _FLOOR).tolist()
        self.b = base[-1]
        self.freeze = 0
        self.frozen_vals.clear()
        self.frozen_frames.clear()
        return base

    def _steady(self, env: np.ndarray, fault: np.ndarray) -> np.ndarray:
        n = env.size
        out = np.empty(n)
        if n == 0:
            return out
        have = self._hop_env.size
        head = min(n, self.fph - have)
        out[:head] = self.b
        if have + head < self.fph:
            self._hop_env = np.concatenate((self._hop_env, env))
            self._hop_fault = np.concatenate((self._hop_fault, fault))
            return out
        first_env = np.concatenate((self._hop_env, env[:head]))
        first_f = np.concatenate((self._hop_fault, fault[:head]))
        m = (n - head) // self.fph
        body = slice(head, head + m * self.fph)
        envs = np.concatenate((first_env, env[body]))
        fs = np.concatenate((first_f, fault[body]))
        blk = envs.reshape(m + 1, self.fph)
        mx_arr = blk.max(axis=1)
        bad_arr = np.asarray(fs.reshape(m + 1, self.fph).any(axis=1), dtype=bool)
        mxs = mx_arr.tolist()
        bad: list[bool] = bad_arr.tolist()
        bs: list[float] = []  # the baseline after each hop (the next hop's)
        k_on = self.p.k_on
        w = self.window_hops
        j = 0
        try_from = 0  # no search for a long still run before this hop (the last one failed)
        while j <= m:
            if (
                j >= try_from
                and m + 1 - j >= _RUN_MIN
                and len(self.history) == w
                and not bad[j]
                and mxs[j] < k_on * min(self._sorted[0], mxs[j])  # (a cheap first test: the hop itself)
            ):
                r = self._still_run(mx_arr, bad_arr, j)
                if r - j >= _RUN_MIN:
                    bs += self._accept_run(mx_arr[j:r])
                    j = r
                    continue
                try_from = r + 1  # hops j..r-1 are accepted one by one below
            # hop j is complete: update, then the next hop uses the new baseline
            if not bad[j]:
                v = mxs[j]
                self.recent.append(v)
                if v < k_on * self.b:
                    self._push(v)
                    if self.freeze:  # (frozen_vals and frozen_frames are empty when freeze is 0)
                        self.freeze = 0
                        self.frozen_vals.clear()
                        self.frozen_frames.clear()
                else:
                    self.freeze += 1
                    self.frozen_vals.append(v)
                    self.frozen_frames.append(blk[j])
                    steady = (
                        len(self.frozen_vals) == self.steady_hops
                        and max(self.frozen_vals) <= self.p.baseline_steady_ratio * min(self.frozen_vals)
                        and self._beating()
                    )
                    if steady or self.freeze >= self.max_freeze_hops:
                        src = self.frozen_vals if steady else self.recent
                        self.history = deque(src, maxlen=self.window_hops)
                        self._resort()
                        self.freeze = 0
                        self.frozen_vals.clear()
                        self.frozen_frames.clear()
            bs.append(self.b)
            j += 1
        del bs[m:]
        out[body] = np.repeat(bs, self.fph)
        tail = head + m * self.fph
        out[tail:] = self.b
        self._hop_env = env[tail:].copy()
        self._hop_fault = fault[tail:].copy()
        return out
