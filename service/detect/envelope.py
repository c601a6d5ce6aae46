"""Stage 2a: short-window energy envelope of the movement band (RMS per frame)."""

from __future__ import annotations

import numpy as np


class FrameEnvelope:
    """Cuts the internal-rate movement band into frames of ``frame_n`` samples.

    Returns the RMS of each complete frame and whether any sample in it was a repaired
    (fault) value. Samples of an incomplete frame wait for the next call, so the frames are
    the same whatever the block size.
    """

    def __init__(self, frame_n: int) -> None:
        self.frame_n = max(1, int(frame_n))
        self._x = np.zeros(0)
        self._f = np.zeros(0, bool)
        self.frames = 0  # complete frames produced so far

    def process(self, move: np.ndarray, fault: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed internal-rate samples; return (rms, fault) of the frames completed."""
        if self._x.size:
            move = np.concatenate((self._x, move))
            fault = np.concatenate((self._f, fault))
        k = move.size // self.frame_n
        used = k * self.frame_n
        self._x = move[used:].copy()
        self._f = fault[used:].copy()
        if k == 0:
            return np.zeros(0), np.zeros(0, bool)
        blk = move[:used].reshape(k, self.frame_n)
        rms = np.sqrt(np.einsum("ij,ij->i", blk, blk) / self.frame_n)
        ff = np.asarray(fault[:used].reshape(k, self.frame_n).any(axis=1), dtype=bool)
        self.frames += k
        return rms, ff
