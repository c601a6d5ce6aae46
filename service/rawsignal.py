"""Raw signal kept with the history: snippets around events and whole-night chunks (pure numpy).

The daemon keeps the last few minutes of samples in a :class:`RawRing`; when an event is
stored, the samples from ``snippet_pad_s`` before it to ``snippet_pad_s`` after it (at most
``snippet_max_s``) become its snippet, once the ring holds them. While a night is open,
samples are also cut into fixed chunks (:class:`ChunkCutter`) for the whole-night record,
which is pruned after ``storage.raw_retention_days``. Both are encoded with
``service.store.signal_codec``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Samples per whole-night chunk, in seconds of signal.
CHUNK_S = 60.0


def snippet_span(start_s: float, end_s: float, pad_s: float, max_s: float) -> tuple[float, float]:
    """The stretch of signal kept for an event: padded on both sides, at most ``max_s`` long
    (a long event keeps its start, where the movement began), never before the stream."""
    a = max(0.0, start_s - pad_s)
    b = end_s + pad_s
    if b - a > max_s:
        b = a + max_s
    return a, b


class RawRing:
    """The most recent ``capacity_s`` seconds of a one-channel stream, addressed by sample index."""

    def __init__(self, rate_hz: float, capacity_s: float) -> None:
        self.rate_hz = rate_hz
        self._cap = max(1, math.ceil(rate_hz * capacity_s))
        self._buf = np.zeros(self._cap, dtype=np.float32)
        self.end_index = 0
        """Index just after the newest sample held."""

    def extend(self, start_index: int, samples: np.ndarray) -> None:
        """Append samples that begin at ``start_index`` (a gap restarts the ring's content)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if start_index != self.end_index:
            self.end_index = start_index
        if x.size >= self._cap:
            x = x[-self._cap :]
            start_index += int(samples.shape[0]) - self._cap
        pos = start_index % self._cap
        first = min(x.size, self._cap - pos)
        self._buf[pos : pos + first] = x[:first]
        self._buf[: x.size - first] = x[first:]
        self.end_index = start_index + x.size

    @property
    def start_index(self) -> int:
        """Index of the oldest sample still held."""
        return max(0, self.end_index - self._cap)

    def slice(self, a: int, b: int) -> np.ndarray | None:
        """Samples ``a`` to ``b`` (clipped to what is held); None when none of them is held."""
        a, b = max(a, self.start_index), min(b, self.end_index)
        if b <= a:
            return None
        idx = np.arange(a, b) % self._cap
        return self._buf[idx].copy()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of ``CHUNK_S`` seconds (or less, at the end) starting at sample ``start_index``."""

    start_index: int
    samples: np.ndarray


class ChunkCutter:
    """Collects samples and hands out whole chunks of ``chunk_s`` seconds."""

    def __init__(self, rate_hz: float, start_index: int, chunk_s: float = CHUNK_S) -> None:
        self._n = max(1, round(rate_hz * chunk_s))
        self._start = start_index
        self._parts: list[np.ndarray] = []
        self._held = 0

    def add(self, start_index: int, samples: np.ndarray) -> list[Chunk]:
        """Add samples beginning at ``start_index``; returns the chunks completed. A gap in the
        indices closes the current chunk first, so each chunk's samples are consecutive."""
        out: list[Chunk] = []
        if start_index != self._start + self._held:
            out += self.flush()
            self._start = start_index
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        while x.size:
            take = min(x.size, self._n - self._held)
            self._parts.append(x[:take])
            self._held += take
            x = x[take:]
            if self._held == self._n:
                out += self.flush()
        return out

    def flush(self) -> list[Chunk]:
        """The partial chunk held, if any."""
        if not self._held:
            return []
        chunk = Chunk(self._start, np.concatenate(self._parts))
        self._start += self._held
        self._parts, self._held = [], 0
        return [chunk]
