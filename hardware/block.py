"""The Block of samples every source produces, and the SampleSource protocol they share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Block:
    """A run of consecutive samples from one source.

    ``t0`` is the UTC time of the first sample (timezone-aware). ``index`` is the number of
    samples the source produced before this block (a monotonic sample counter), so the
    time of sample ``i`` of the stream is ``index / rate_hz`` seconds after the stream began,
    whatever the wall clock did meanwhile. ``samples`` is float32 with shape ``(n,)`` for one
    channel or ``(n, channels)`` for several.
    """

    t0: datetime
    index: int
    rate_hz: float
    samples: np.ndarray

    @property
    def n(self) -> int:
        """Number of samples in the block."""
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        """Duration covered by the block, in seconds."""
        return self.n / self.rate_hz

    @property
    def t_end(self) -> datetime:
        """UTC time just after the last sample."""
        return self.t0 + timedelta(seconds=self.duration_s)


@runtime_checkable
class SampleSource(Protocol):
    """What the daemon needs of a sensor: its rate, its channel count and a stream of Blocks.

    Iteration ends when the source is exhausted (a replayed file, a simulated night) or
    after ``close()``. A live sensor samples in its own thread and must never block the
    asyncio loop that iterates it.
    """

    @property
    def rate_hz(self) -> float: ...

    @property
    def channels(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[Block]: ...

    async def close(self) -> None: ...
