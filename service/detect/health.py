"""Stage 8 (run first): sensor faults, found and repaired before any filtering.

A sample is *implausible* when it sits on an ADC rail (if the full scale is known), or jumps
from the previous sample by more than ``glitch_jump_k`` times the larger of the typical
per-second largest jump (median over the last 30 s) and the previous second's (so an ongoing
movement raises the bar), or by more than ``disturbance_jump_k`` times the typical one whatever
is going on. (Per-second "largest" is the 10th largest, so a glitch does not raise its own
bar.) Within a second of a jump accepted as a sharp movement (it did not come back), only the
disturbance limit applies: a jerk's later samples can bounce back near an earlier one within
``glitch_max_samples``, and at 50 Hz a jerk of 40 resting levels jumps by 50-200x the quiet
scale, so the glitch rule would otherwise cut it out as a ``sensor_fault``. A dropped reading
(a sample at 0 or full scale) still jumps past the disturbance limit. Real movement on a bed
sensor is mechanically low-passed: on the reference fibre-optic recording the largest movement
jump is about 15x the quiet per-second maximum, on a clean piezo a sharp jerk sampled at 250 Hz
reaches 50-120x, while ADC glitches and the fibre's disturbance jump by 300-500x. Implausible
samples are replaced by the last good value (so they never reach the movement filters) until
either

* the signal returns to within a quarter of the limit of the last good value (a *glitch* if
  the run is at most ``glitch_max_samples`` long and every sample of it is away from that
  value by more than the limit, so a coarsely sampled burst that swings back through the level
  is no glitch; else a *disturbance*), or
* it stays self-consistent (every jump within the limit) for ``resync_s``: the sensor has
  a new level (re-zeroed, re-seated). The new level is accepted and downstream filters are
  reset to it, so the step never rings through the movement band.

Identical consecutive samples are no measurement: a real sensor always carries some noise (the
longest run on the reference recording is 3 samples, on the simulator 14 at 250 Hz). From the
``flat_s``-th second of such a run its samples are marked as fault samples (so the resting
baseline does not collapse to zero and presence does not read an empty bed), and where the run
ends the downstream filters restart at the new level. For ``stuck_s`` the run is a *stuck*
sensor and a ``sensor_fault`` event. Faults closer than
``fault_merge_s`` merge into one ``sensor_fault`` event, so a burst of glitches is one event.
All decisions are causal with sample-exact state, so results do not depend on block size.
The limit is undefined in the first second of a stream (no history): only rail values are
caught there.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from service.detect.emit import ORDER_FAULT, Pending
from service.detect.params import DetectorParams
from service.detect.types import Event

_HISTORY_SECONDS = 30
_RETURN_FRACTION = 0.25  # a glitch has returned when within a quarter of the limit
_KIND_CODE = {"glitch": 1.0, "disturbance": 2.0, "saturation": 3.0, "stuck": 4.0}


@dataclass(slots=True)
class HealthResult:
    """The repaired block and what health found in it."""

    clean: np.ndarray  # float64, same length as the input block
    fault: np.ndarray  # bool per sample: True where the value was replaced
    resets: list[int] = field(default_factory=list)  # block-relative indices: new level from here
    pending: list[Pending] = field(default_factory=list)


@dataclass(slots=True)
class _Span:
    start: int
    end: int
    kinds: set[str]
    samples: int


def _abs_steps(x: np.ndarray, prev: float) -> np.ndarray:
    """``np.abs(np.diff(x, prepend=prev))`` without the concatenated copy."""
    d = np.empty(x.size)
    if x.size:
        d[0] = x[0] - prev
        np.subtract(x[1:], x[:-1], out=d[1:])
    return np.abs(d, out=d)


@functools.lru_cache(maxsize=8)
def _sub_block_starts(rows: int, w: int) -> np.ndarray:
    """Start indices, in ``rows`` rows of ``w`` laid end to end, of each row's 8 sub-blocks of
    ``w // 8`` samples and (if ``w % 8``) of the left-over samples (for ``np.maximum.reduceat``)."""
    part = w // 8
    starts = list(range(0, 8 * part, part)) + ([8 * part] if w % 8 else [])
    idx = np.arange(rows)[:, None] * w + np.asarray(starts)[None, :]
    out = idx.ravel()
    out.flags.writeable = False
    return out


def _row_medians(win: np.ndarray) -> np.ndarray:
    """``np.median(win, axis=1)``, the same numbers (NaN for a row holding one), by a sort:
    quicker on these short rows (30 seconds of history)."""
    w = win.shape[1]
    srt = np.sort(win, axis=1)  # NaN sorts last
    mid = w // 2
    med = srt[:, mid] if w % 2 else (srt[:, mid - 1] + srt[:, mid]) / 2
    return np.where(np.isnan(srt[:, -1]), np.nan, med)


class SensorHealth:
    """Streaming glitch / disturbance / stuck detector and repairer (one per stream)."""

    def __init__(self, rate_hz: float, params: DetectorParams) -> None:
        self.rate_hz = rate_hz
        self.p = params
        self.sec_n = max(1, round(rate_hz))
        self.resync_n = max(2, round(params.resync_s * rate_hz))
        self.stuck_n = max(2, round(params.stuck_s * rate_hz))
        self.merge_n = max(1, round(params.fault_merge_s * rate_hz))
        self.full_scale = float(params.adc_full_scale_counts)
        self.n = 0  # samples seen
        self.prev: float | None = None  # last raw input sample
        self.prev_clean = 0.0  # last repaired sample
        self.lookahead = params.glitch_max_samples + 1
        self._hold = np.zeros(0)  # raw samples waiting for their look-ahead
        self._carry_glitch: tuple[float, int] | None = None
        self.stats: deque[float] = deque(maxlen=_HISTORY_SECONDS)
        self._sec_buf = np.zeros(0)  # |diff| of the current, incomplete second
        self.limit: tuple[float, float] = (np.inf, np.inf)
        # fault state
        self.in_fault = False
        self.fault_start = 0
        self.last_good = 0.0
        self.consistent = 0
        self.fault_rail = False
        # a sharp movement is in progress up to this sample (absolute index): only the
        # disturbance limit applies until then
        self.move_until = -1
        # stuck state
        self.same_run = 0
        self.stuck_reported = False
        # flat state: identical transitions so far in the current run (run length - 1)
        self.flat_n = max(8, round(params.flat_s * rate_hz))
        self.flat_run = 0
        # merging of fault spans into events
        self.span: _Span | None = None
        self.serial = 0

    # ------------------------------------------------------------------------------------
    def _limit_pair(self, values: np.ndarray) -> tuple[float, float]:
        """(glitch limit, disturbance limit) from the per-second history (oldest first)."""
        med = float(np.median(values)) if values.size else 0.0
        if med <= 0:
            return np.inf, np.inf
        last = float(values[-1])
        return self.p.glitch_jump_k * max(med, last), self.p.disturbance_jump_k * med

    @staticmethod
    def _sec_stat(d: np.ndarray) -> np.ndarray:
        """Per-second robust largest jump: the 3rd largest of 8 sub-block maxima.

        A glitch (in and out jumps, a few samples apart) touches at most two sub-blocks, so
        it does not raise its own bar; a movement's jumps fill the whole second.
        """
        rows = d.reshape(-1, d.shape[-1])
        w = rows.shape[1]
        if w < 8:
            return rows.max(axis=1)
        # the maxima of rows[:, :w - w % 8] cut in 8 (one reduceat call, no copy); a row's last
        # w % 8 samples are left out: they make a 9th segment whose maximum is dropped
        flat = np.ascontiguousarray(rows).ravel()
        sub = np.maximum.reduceat(flat, _sub_block_starts(rows.shape[0], w))
        sub = sub.reshape(rows.shape[0], -1)[:, :8]
        return np.partition(sub, 5, axis=1)[:, 5]

    def _limits(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Per-second (glitch, disturbance) limits covering this block, and its first second.

        ``d[i]`` is |x[i] - x[i-1]| of the block. The limits of a second come from the
        seconds before it only (causal); the statistics are updated with the block.
        """
        n = d.size
        s0 = self.n // self.sec_n
        s_last = (self.n + n - 1) // self.sec_n
        lg = np.empty(s_last - s0 + 1)
        ld = np.empty(s_last - s0 + 1)
        k = 0
        off = self.n % self.sec_n
        a = min(n, (self.sec_n - off) % self.sec_n)
        if a:
            lg[0], ld[0] = self.limit
            k = 1
            self._sec_buf = np.concatenate((self._sec_buf, d[:a]))
            if off + a == self.sec_n:
                self.stats.append(float(self._sec_stat(self._sec_buf[None, :])[0]))
                self._sec_buf = np.zeros(0)
                self.limit = self._limit_pair(np.fromiter(self.stats, float))
        m = (n - a) // self.sec_n
        if m:
            full = self._sec_stat(d[a : a + m * self.sec_n].reshape(m, self.sec_n))
            prior = np.fromiter(self.stats, float)
            comb = np.concatenate((np.full(_HISTORY_SECONDS - prior.size, np.nan), prior, full))
            win = np.lib.stride_tricks.sliding_window_view(comb[:-1], _HISTORY_SECONDS)[-m:]
            if prior.size >= _HISTORY_SECONDS:
                med = _row_medians(win)
            else:
                med = np.full(m, np.nan)
                ok = ~np.isnan(win).all(axis=1)
                if ok.any():
                    with np.errstate(all="ignore"):
                        med[ok] = np.nanmedian(win[ok], axis=1)
            last = win[:, -1]
            good = np.nan_to_num(med, nan=0.0) > 0
            lg[k : k + m] = np.where(good, self.p.glitch_jump_k * np.fmax(med, last), np.inf)
            ld[k : k + m] = np.where(good, self.p.disturbance_jump_k * med, np.inf)
            k += m
            self.stats.extend(full.tolist())
            self.limit = self._limit_pair(np.fromiter(self.stats, float))
        r = n - a - m * self.sec_n
        if r:
            lg[k], ld[k] = self.limit
            self._sec_buf = np.concatenate((self._sec_buf, d[n - r :]))
        return lg, ld, s0

    def _candidates(self, d: np.ndarray, lim: np.ndarray, s0: int) -> np.ndarray:
        """Indices where d exceeds its second's limit (vectorised by seconds)."""
        n = d.size
        off = self.n % self.sec_n  # self.n is still the block start here
        head = min(n, (self.sec_n - off) % self.sec_n)
        out = []
        k = 0
        if head:
            out.append(np.flatnonzero(d[:head] > lim[0]))
            k = 1
        m = (n - head) // self.sec_n
        if m:
            body = d[head : head + m * self.sec_n].reshape(m, self.sec_n) > lim[k : k + m, None]
            out.append(np.flatnonzero(body) + head)
            k += m
        r = n - head - m * self.sec_n
        if r:
            out.append(np.flatnonzero(d[n - r :] > lim[k]) + (n - r))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def process(self, x: np.ndarray) -> HealthResult:
        """Check and repair raw samples (float64, 1-D); returns the samples now decided.

        The last ``glitch_max_samples + 1`` samples are held back until the samples after
        them have arrived (a glitch is only a glitch if the signal comes back) only when one
        of them could start a fault (see ``_plain_tail``); otherwise the whole block is
        decided at once. ``flush`` releases what is held.
        """
        buf = np.concatenate((self._hold, x)) if self._hold.size else x
        res = self._decide(buf, max(0, buf.size - self.lookahead))
        if self._hold.size and self._plain_tail():
            # nothing in the look-ahead can start a fault: decide it now, as it would be decided
            # later (a plain sample never consults its look-ahead), one block sooner
            tail = self._hold
            more = self._decide(tail, tail.size)
            k = res.clean.size
            # neither part repaired (both still views of their input): the whole block as it came
            same = np.shares_memory(res.clean, buf) and np.shares_memory(more.clean, tail)
            res = HealthResult(
                buf if same else np.concatenate((res.clean, more.clean)),
                np.concatenate((res.fault, more.fault)),
                res.resets + [r + k for r in more.resets],
                res.pending + more.pending,
            )
        return res

    def _plain_tail(self) -> bool:
        """Are the held look-ahead samples plain (no fault open, none on a rail, every jump
        within the current second's limits)? Such samples are decided the same whether or
        not the samples after them have arrived, so they need not wait: this takes a block
        off the latency of every decision (a movement's onset or end)."""
        t = self._hold
        if self.in_fault or self._carry_glitch is not None or self.prev is None:
            return False
        if (self.n % self.sec_n) + t.size > self.sec_n:  # the limit would change inside the tail
            return False
        if self.full_scale > 0 and self._rail_arr(t).any():
            return False
        d = np.abs(np.diff(t, prepend=self.prev))
        return bool((d <= min(self.limit)).all())

    def _decide(self, buf: np.ndarray, n: int) -> HealthResult:
        """Decide ``buf[:n]`` (``buf[n:]`` is look-ahead, kept for the next call)."""
        self._hold = buf[n:].copy()
        if n == 0:
            return HealthResult(np.zeros(0), np.zeros(0, bool))
        x = buf
        start_abs = self.n
        prev = x[0] if self.prev is None else self.prev
        d = _abs_steps(x, prev)  # over the look-ahead too
        lg, ld, s0 = self._limits(d[:n])
        ld_full = np.concatenate((ld, ld[-1:]))  # the look-ahead shares the last limit
        cand = self._candidates(d[:n], np.minimum(lg, ld), s0)
        rail_all = self._rail_arr(x)
        if self.full_scale > 0:
            rail_idx = np.flatnonzero(rail_all[:n])
            if rail_idx.size:
                cand = np.union1d(cand, rail_idx)
        clean = x[:n]
        fault = np.zeros(n, bool)
        resets: list[int] = []
        pending: list[Pending] = []
        copied = False

        def sec(i: int) -> int:
            return min((start_abs + i) // self.sec_n - s0, ld.size)

        pos = 0
        ci = 0
        if self._carry_glitch is not None:
            value, count = self._carry_glitch
            self._carry_glitch = None
            c = min(count, n)
            clean = x[:n].copy()
            copied = True
            fault[:c] = True
            clean[:c] = value
            if count >= n:  # the rest of the glitch (or its returning sample) comes next call
                self._carry_glitch = (value, count - n)
                pos = n
            else:
                pos = count + 1  # the returning sample's jump is from the glitch, not a new one
        while pos < n:
            if not self.in_fault:
                while ci < cand.size and cand[ci] < pos:
                    ci += 1
                if ci >= cand.size:
                    break
                i = int(cand[ci])
                ci += 1
                last_good = float(clean[i - 1]) if i > 0 else float(self.prev_clean)
                k = sec(i)
                if start_abs + i <= self.move_until and d[i] <= ld_full[k] and not rail_all[i]:
                    # within a second of a sharp movement jump: the movement raises the bar
                    # (a jerk's later samples can bounce back near an earlier one)
                    self.move_until = start_abs + i + self.sec_n
                    pos = i + 1
                    continue
                tol = _RETURN_FRACTION * ld_full[k] / self.p.disturbance_jump_k * self.p.glitch_jump_k
                big = bool(rail_all[i]) or d[i] > ld_full[k]
                # a glitch comes back within glitch_max_samples: look ahead for the return
                hi = min(x.size, i + 1 + self.p.glitch_max_samples)
                back = ~rail_all[i + 1 : hi] & (np.abs(x[i + 1 : hi] - last_good) <= tol)
                j = i + 1 + int(np.argmax(back)) if back.any() else -1
                # every sample of a glitch is away from the level (beyond the glitch limit): a
                # burst sampled coarsely swings out and passes back through it on its way
                if j > i + 1 and not (np.abs(x[i + 1 : j] - last_good) > 4.0 * tol).all():
                    j = -1
                if j > 0:
                    if not copied:
                        clean = x[:n].copy()
                        copied = True
                    stop = min(j, n)
                    fault[i:stop] = True
                    clean[i:stop] = last_good
                    if j >= n:  # the glitch (or its returning sample) is in the next call
                        self._carry_glitch = (last_good, j - n)
                    pending += self._add_span(start_abs + i, start_abs + j, "glitch", j - i)
                    pos = j + 1  # the returning sample is good; its jump was from the glitch
                    continue
                if not big:
                    pos = i + 1  # a sharp movement, not a fault: it did not come back
                    self.move_until = start_abs + i + self.sec_n
                    continue
                if not copied:
                    clean = x[:n].copy()
                    copied = True
                self.in_fault = True
                self.fault_start = start_abs + i
                self.last_good = last_good
                self.consistent = 0
                self.fault_rail = bool(rail_all[i])
                fault[i] = True
                clean[i] = self.last_good
                pos = i + 1
                continue
            if not copied:
                clean = x[:n].copy()
                copied = True
            # in a disturbance: look for its end in bounded windows, both tests on the quiet
            # scale (the disturbance limit is disturbance_jump_k x it)
            hi = min(n, pos + max(4 * self.resync_n, 1024))
            ks = np.minimum((start_abs + np.arange(pos, hi)) // self.sec_n - s0, ld.size - 1)
            dist = ld[ks]
            quiet = dist / self.p.disturbance_jump_k * self.p.glitch_jump_k
            ok = ~rail_all[pos:hi]
            returned = ok & (np.abs(x[pos:hi] - self.last_good) <= _RETURN_FRACTION * quiet)
            consistent = ok & (d[pos:hi] <= dist)
            self.fault_rail = self.fault_rail or not bool(ok.all())
            jj = np.arange(consistent.size)
            last_false = np.maximum.accumulate(np.where(~consistent, jj, -1))
            run = np.where(last_false < 0, jj + 1 + self.consistent, jj - last_false)
            ret_i = int(np.argmax(returned)) if returned.any() else -1
            res_hits = np.flatnonzero(run >= self.resync_n)
            res_i = int(res_hits[0]) if res_hits.size else -1
            if ret_i < 0 and res_i < 0:
                fault[pos:hi] = True
                clean[pos:hi] = self.last_good
                self.consistent = int(run[-1])
                pos = hi
                continue
            if ret_i >= 0 and (res_i < 0 or ret_i <= res_i):
                end = pos + ret_i
                resync = False
            else:
                end = pos + res_i
                resync = True
            fault[pos:end] = True
            clean[pos:end] = self.last_good
            length = start_abs + end - self.fault_start
            if resync:
                resets.append(end)
            kind = "saturation" if self.fault_rail else "disturbance"
            self.in_fault = False
            pending += self._add_span(self.fault_start, start_abs + end, kind, length)
            pos = end + 1  # the returning / resyncing sample is good
            while ci < cand.size and cand[ci] <= end:
                ci += 1
            if end < n and self._rail(x[end]):
                pos = end
                cand = np.concatenate(([end], cand[ci:]))
                ci = 0

        # same[i]: sample i repeats the one before it (never the stream's first sample)
        same = np.empty(n, bool)
        same[0] = x[0] == prev and self.n > 0
        np.equal(x[1:n], x[: n - 1], out=same[1:])
        pending += self._stuck(x[:n], same, start_abs)
        flat_resets = self._flat(same, fault)
        if flat_resets:
            resets = sorted({*resets, *flat_resets})
        self.prev = float(x[n - 1])
        self.prev_clean = float(clean[-1])
        self.n += n
        pending += self._due(self.n)
        return HealthResult(clean, fault, resets, pending)

    @property
    def fault_open_s(self) -> float:
        """How long the fault in progress has lasted (a disturbance or rail run not yet ended, or a
        flat run past ``flat_s``), seconds; 0 when none. Its event comes only when it ends."""
        if self.in_fault:
            return (self.n - self.fault_start) / self.rate_hz
        if self.flat_run + 1 >= self.flat_n:
            return (self.flat_run + 1) / self.rate_hz
        return 0.0

    def _flat(self, same: np.ndarray, fault: np.ndarray) -> list[int]:
        """Mark samples of identical runs past ``flat_n`` in ``fault`` (in place); returns the
        block indices where such a run ends (the first sample of the new level). ``same``: each
        sample equals the one before it."""
        n = same.size
        carried = self.flat_run
        if self._no_flat_run(same, carried):
            return []
        if same.all():
            run_end = carried + n
            if run_end + 1 >= self.flat_n:
                first = max(0, self.flat_n - 1 - carried - 1)
                fault[first:] = True
            self.flat_run = run_end
            return []
        idx = np.arange(n)
        last_false = np.maximum.accumulate(np.where(~same, idx, -1))
        run = np.where(last_false < 0, idx + 1 + carried, idx - last_false)
        self.flat_run = int(run[-1])
        flat = run + 1 >= self.flat_n
        if not flat.any() and carried + 1 < self.flat_n:
            return []
        fault |= flat
        before = np.concatenate(([carried], run[:-1]))
        ends = np.flatnonzero(~same & (before + 1 >= self.flat_n))
        return ends.tolist()

    def _no_flat_run(self, same: np.ndarray, carried: int) -> bool:
        """Cheap test (a few passes over bools) that no run reaches ``flat_n`` in this block; if so,
        ``flat_run`` is updated and the block needs nothing else. A run of ``flat_n - 1`` equal
        steps holds an aligned chunk of a third of that in the chunked part, or touches the ends."""
        n = same.size
        steps = self.flat_n - 1
        first_change = int(np.argmin(same))
        if same[first_change] or carried + first_change >= steps:
            return False  # the whole block is one run, or the carried run reaches the limit
        h = max(1, steps // 3)
        m = n // h
        if m and bool(same[: m * h].reshape(m, h).all(axis=1).any()):
            return False
        # trailing repeats (fewer than n: the block has a change); only the last steps + 1 matter
        k = min(n, steps + 1)
        changes = np.flatnonzero(~same[n - k :])
        if changes.size == 0:
            return False  # at least steps trailing repeats
        trailing = k - 1 - int(changes[-1])
        if trailing >= steps:
            return False
        self.flat_run = trailing
        return True

    def _rail(self, v: float) -> bool:
        return self.full_scale > 0 and (v <= 0.0 or v >= self.full_scale)

    def _rail_arr(self, v: np.ndarray) -> np.ndarray:
        if self.full_scale <= 0:
            return np.zeros(v.size, bool)
        return np.asarray((v <= 0.0) | (v >= self.full_scale))

    # ------------------------------------------------------------------------------------
    def _stuck(self, x: np.ndarray, same: np.ndarray, start_abs: int) -> list[Pending]:
        """Runs of identical samples reaching ``stuck_n``; cheap when nothing is flat.

        A run of ``stuck_n`` identical samples contains a whole aligned chunk of
        ``stuck_n // 2`` flat samples, so only blocks with such a chunk (or a run carried in
        from the last block) are examined sample by sample. ``same``: each sample equals
        the one before it (False for the stream's first).
        """
        n = x.size
        h = max(1, self.stuck_n // 2)
        flat_chunk = False  # a block no longer than stuck_n cannot hold a whole run
        if n > self.stuck_n:
            m = n // h
            # a chunk is flat when each of its samples but the first repeats the one before
            flat_chunk = bool(same[: m * h].reshape(m, h)[:, 1:].all(axis=1).any())
        if not flat_chunk:
            lim = min(n, self.stuck_n)
            cont = self.n > 0
            neq = np.flatnonzero(~same[:lim]) if cont else np.zeros(1, np.int64)
            lead = int(neq[0]) if neq.size else lim
            if self.same_run + lead < self.stuck_n:
                # no run in this block reaches the limit: just carry the trailing run
                tail = x[n - lim :]
                neq_t = np.flatnonzero(tail != x[-1])
                if neq_t.size:
                    self.same_run = lim - 1 - int(neq_t[-1]) - 1
                elif lim == n and cont and same[0]:
                    self.same_run += n
                else:
                    self.same_run = lim - 1
                if lead < n:
                    self.stuck_reported = False
                return []
        idx = np.arange(n)
        last_false = np.maximum.accumulate(np.where(~same, idx, -1))
        run = np.where(last_false < 0, idx + 1 + self.same_run, idx - last_false)
        out: list[Pending] = []
        breaks = np.flatnonzero(~same)
        hits = np.flatnonzero(run >= self.stuck_n)
        if hits.size:
            # first hit of each run that was not reported yet
            run_id = np.searchsorted(breaks, hits, side="right")
            first = np.r_[True, run_id[1:] != run_id[:-1]]
            for k in np.flatnonzero(first):
                hh = int(hits[k])
                if run_id[k] == 0 and self.stuck_reported:
                    continue
                at = start_abs + hh + 1
                t0 = (at - self.stuck_n) / self.rate_hz
                ev = Event(
                    -1,
                    "sensor_fault",
                    t0,
                    at / self.rate_hz,
                    0.0,
                    self.p.profile,
                    details={"kind": _KIND_CODE["stuck"], "samples": float(self.stuck_n)},
                )
                self.serial += 1
                out.append(Pending(at, ORDER_FAULT, ev, self.serial))
        if breaks.size:
            self.stuck_reported = bool(run[-1] >= self.stuck_n)
        else:
            self.stuck_reported = self.stuck_reported or bool(run[-1] >= self.stuck_n)
        self.same_run = int(run[-1])
        return out

    def _add_span(self, start: int, end: int, kind: str, length: int) -> list[Pending]:
        out: list[Pending] = []
        if self.span is not None and start - self.span.end > self.merge_n:
            out.append(self._emit(self.span, self.span.end + self.merge_n))
            self.span = None
        if self.span is None:
            self.span = _Span(start, end, {kind}, length)
        else:
            self.span.end = end
            self.span.kinds.add(kind)
            self.span.samples += length
        return out

    def _due(self, now: int) -> list[Pending]:
        if self.span is None or now < self.span.end + self.merge_n:
            return []
        if not self.in_fault or self.fault_start - self.span.end > self.merge_n:
            p = self._emit(self.span, self.span.end + self.merge_n)
            self.span = None
            return [p]
        return []

    def _emit(self, span: _Span, at: int) -> Pending:
        kind = max(span.kinds, key=lambda k: _KIND_CODE[k])
        ev = Event(
            -1,
            "sensor_fault",
            span.start / self.rate_hz,
            span.end / self.rate_hz,
            0.0,
            self.p.profile,
            details={"kind": _KIND_CODE[kind], "samples": float(span.samples)},
        )
        self.serial += 1
        return Pending(at, ORDER_FAULT, ev, self.serial)

    def flush(self) -> tuple[HealthResult, list[Pending]]:
        """End of stream: decide the held samples, close an open fault, emit the last event."""
        held = self._decide(self._hold, self._hold.size) if self._hold.size else None
        out: list[Pending] = list(held.pending) if held else []
        if self.in_fault:
            self.in_fault = False
            kind = "saturation" if self.fault_rail else "disturbance"
            out += self._add_span(self.fault_start, self.n, kind, self.n - self.fault_start)
        if self.span is not None:
            out.append(self._emit(self.span, self.n))
            self.span = None
        if held is None:
            held = HealthResult(np.zeros(0), np.zeros(0, bool))
        return held, out
