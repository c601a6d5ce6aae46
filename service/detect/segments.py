"""Stage 3: movement segments from the envelope, with hysteresis, minimum off time and merging.

Rule (AASM 2007/2012 limb-movement onset/offset, restated relative to the resting level by
WASM 2016): a movement starts at the first frame whose envelope exceeds ``k_on`` x baseline;
it ends at the start of the first run of at least ``min_off_s`` of frames below ``k_off`` x
baseline; a new onset less than ``merge_gap_s`` after an end merges into the previous
movement. Frames holding repaired sensor-fault samples never count as active.

The work is vectorised over runs of active frames (above ``k_off``); only the runs are
visited in Python. Every decision is dated by the frame at which it could first be made
(onset: its frame; end: ``min_off_s`` after it; final: ``max(min_off_s, merge_gap_s)`` after
it), so the result does not depend on how frames are chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.detect.params import DetectorParams


@dataclass(slots=True)
class Segment:
    """A finished movement, in absolute frame indices (``end`` exclusive)."""

    start: int
    end: int
    decided: int  # frame index after which the segment was final


@dataclass(slots=True)
class SegmentUpdate:
    """What one chunk of frames produced."""

    onsets: list[int]  # frame index of each movement onset (moving turns ON there)
    finished: list[Segment]
    moving: np.ndarray  # bool per frame of the chunk: inside a movement, or after its end
    # until that end was known (min_off_s later): the same whatever the chunking


class Segmenter:
    """Streaming hysteresis segmenter over envelope frames (one per stream)."""

    def __init__(self, frame_s: float, params: DetectorParams) -> None:
        self.p = params
        self.n_off = max(1, round(params.min_off_s / frame_s))
        self.n_merge = max(0, round(params.merge_gap_s / frame_s))
        self.n_final = max(self.n_off, self.n_merge)
        self.pos = 0  # absolute index of the next frame
        self.in_seg = False
        self.seg_start = 0
        self.seg_end = 0  # exclusive end of the last active run inside the segment
        self.closed: tuple[int, int] | None = None  # closed, waiting for a possible merge

    @property
    def open_start(self) -> int | None:
        """Start frame of a movement not yet final (open or waiting for a merge), else None."""
        if self.in_seg:
            return self.seg_start
        if self.closed is not None:
            return self.closed[0]
        return None

    def process(self, env: np.ndarray, base: np.ndarray, fault: np.ndarray) -> SegmentUpdate:
        """Feed frames (envelope, baseline, fault flag); return onsets and finished segments."""
        n = env.size
        k0 = self.pos
        onsets: list[int] = []
        finished: list[Segment] = []
        moving = np.zeros(n, bool)
        if n == 0:
            return SegmentUpdate(onsets, finished, moving)
        ok = ~fault
        active = ok & (env > self.p.k_off * base)
        on = ok & (env > self.p.k_on * base)
        on_idx = np.flatnonzero(on)
        if not self.in_seg and self.closed is None and on_idx.size == 0:
            self.pos += n
            return SegmentUpdate(onsets, finished, moving)
        edges = np.diff(np.concatenate(([False], active, [False])).astype(np.int8))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        first_on = np.searchsorted(on_idx, starts)

        spans: list[tuple[int, int]] = []

        def close(at_end: int) -> None:
            self.closed = (self.seg_start, at_end)
            self.in_seg = False
            # moving until the end was known (n_off later), as a live stream would see it
            spans.append((self.seg_start, at_end + self.n_off))

        def finalize() -> None:
            assert self.closed is not None
            s, e = self.closed
            finished.append(Segment(s, e, e + self.n_final))
            self.closed = None

        for r in range(starts.size):
            rs, re = k0 + int(starts[r]), k0 + int(ends[r])
            if self.in_seg:
                if rs - self.seg_end < self.n_off:
                    self.seg_end = re
                    continue
                close(self.seg_end)
            fo = int(first_on[r])
            if fo >= on_idx.size or on_idx[fo] >= int(ends[r]):
                continue  # a sub-threshold wiggle: no onset in this run
            onset = k0 + int(on_idx[fo])
            if self.closed is not None and onset - self.closed[1] < self.n_merge:
                self.seg_start = self.closed[0]
                self.closed = None
            else:
                if self.closed is not None:
                    finalize()
                self.seg_start = onset
                onsets.append(onset)
            self.in_seg = True
            self.seg_end = re
        end_pos = k0 + n
        if self.in_seg and end_pos - self.seg_end >= self.n_off:
            close(self.seg_end)
        if self.in_seg:
            spans.append((self.seg_start, end_pos))
        if self.closed is not None and end_pos - self.closed[1] >= self.n_final:
            finalize()
        for s0, s1 in spans:
            lo, hi = max(s0, k0) - k0, max(min(s1, end_pos), k0) - k0
            if hi > lo:
                moving[lo:hi] = True
        self.pos = end_pos
        return SegmentUpdate(onsets, finished, moving)

    def flush(self) -> list[Segment]:
        """End of stream: close and finalise any open movement."""
        out: list[Segment] = []
        if self.in_seg:
            self.closed = (self.seg_start, self.seg_end)
            self.in_seg = False
        if self.closed is not None:
            out.append(Segment(self.closed[0], self.closed[1], self.pos))
            self.closed = None
        return out
