"""Sampling statistics of live sources, and the hand-off of their Blocks to the asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hardware.block import Block
from hardware.errors import BedsideError

logger = logging.getLogger(__name__)

#: How many recent sample intervals the jitter percentiles are computed over.
INTERVAL_WINDOW = 16384


class SettingError(BedsideError, ValueError):
    """A source was given a setting it cannot use; ``parameter`` names it.

    Raised by the constructors of the hardware sources (``rate_hz`` out of range, unknown
    ``axis``...). It is a ``ValueError`` too, so the config layer can catch either.
    """

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def check_range(parameter: str, value: float, low: float, high: float, unit: str = "") -> float:
    """Return ``value`` if ``low <= value <= high``, else raise :class:`SettingError`."""
    if not (low <= value <= high):  # also rejects NaN
        suffix = f" {unit}" if unit else ""
        raise SettingError(parameter, f"must be between {low:g} and {high:g}{suffix}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class SamplingStats:
    """How well a live source kept its schedule, since it started.

    ``overruns``: for the piezo, samples taken more than one period late (the schedule was
    then resynchronised and the missed slots counted in ``dropped_samples``); for the IMU,
    FIFO overflows (the FIFO was reset and the samples it lost counted in ``dropped_samples``).
    ``interval_error_*_ms`` are percentiles of ``|actual interval - scheduled interval|``
    between consecutive samples over the last :data:`INTERVAL_WINDOW` samples (None where the
    source does not time its own samples, as the IMU whose chip does). ``lateness_p99_ms`` is
    how late, at the 99th percentile, a sample was read after its scheduled time.
    ``queue_dropped_blocks``: blocks thrown away because the asyncio side did not keep up.
    """

    rate_hz: float
    achieved_rate_hz: float
    samples: int
    dropped_samples: int
    overruns: int
    elapsed_s: float
    interval_error_p50_ms: float | None = None
    interval_error_p99_ms: float | None = None
    lateness_p99_ms: float | None = None
    queue_dropped_blocks: int = 0
    bus_errors: int = 0

    @property
    def rate_error(self) -> float:
        """Relative error of the achieved rate, ``(achieved - configured) / configured``."""
        return (self.achieved_rate_hz - self.rate_hz) / self.rate_hz

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


class IntervalRecorder:
    """Collects the timing of a sampler thread's samples; :meth:`snapshot` from any thread.

    The sampler thread calls :meth:`start` once, then :meth:`sample` for every sample it
    takes (``slot`` = its position on the absolute schedule, ``taken_s`` and ``target_s`` on
    the ``time.monotonic()`` clock) and :meth:`overrun` when it skips slots.
    """

    def __init__(self, rate_hz: float, window: int = INTERVAL_WINDOW) -> None:
        self._rate_hz = rate_hz
        self._period_s = 1.0 / rate_hz
        self._lock = threading.Lock()
        self._interval_err_s = np.zeros(window, dtype=np.float64)
        self._lateness_s = np.zeros(window, dtype=np.float64)
        self._window = window
        self._n_err = 0
        self._n_late = 0
        self._start_s: float | None = None
        self._first_s: float | None = None
        self._last_s: float | None = None
        self._last_slot = -1
        self._samples = 0
        self._dropped = 0
        self._overruns = 0
        self._bus_errors = 0

    def start(self, t_s: float) -> None:
        """Mark the start of sampling (monotonic seconds)."""
        with self._lock:
            self._start_s = t_s

    def sample(self, slot: int, taken_s: float, target_s: float) -> None:
        """Record one sample of schedule slot ``slot`` taken at ``taken_s`` for ``target_s``."""
        with self._lock:
            if self._last_s is not None:
                expected_s = (slot - self._last_slot) * self._period_s
                self._interval_err_s[self._n_err % self._window] = abs(taken_s - self._last_s - expected_s)
                self._n_err += 1
            else:
                self._first_s = taken_s
            self._lateness_s[self._n_late % self._window] = taken_s - target_s
            self._n_late += 1
            self._last_s = taken_s
            self._last_slot = slot
            self._samples += 1

    def count(self, samples: int, now_s: float) -> None:
        """Record ``samples`` samples timed by the device itself (no per-sample timing)."""
        with self._lock:
            if self._first_s is None:
                self._first_s = self._start_s if self._start_s is not None else now_s
            self._last_s = now_s
            self._samples += samples

    def overrun(self, skipped_samples: int) -> None:
        """Record that the source fell behind and lost ``skipped_samples`` samples."""
        with self._lock:
            self._overruns += 1
            self._dropped += skipped_samples

    def bus_error(self) -> None:
        """Record one bus error that a retry got past."""
        with self._lock:
            self._bus_errors += 1

    def snapshot(self, now_s: float, queue_dropped_blocks: int = 0) -> SamplingStats:
        """The statistics so far; ``now_s`` is the current monotonic time."""
        with self._lock:
            n_err = min(self._n_err, self._window)
            n_late = min(self._n_late, self._window)
            errors = self._interval_err_s[:n_err].copy()
            lateness = self._lateness_s[:n_late].copy()
            samples, dropped, overruns = self._samples, self._dropped, self._overruns
            first, last, start = self._first_s, self._last_s, self._start_s
            bus_errors = self._bus_errors
            per_sample = self._n_late > 0
        achieved = 0.0
        if first is not None and last is not None and last > first:
            # Per-sample timing: (n - 1) intervals between the first and last sample.
            # Device-timed counts: n samples since the start.
            intervals = samples - 1 if per_sample else samples
            achieved = intervals / (last - first)
        elapsed = 0.0 if start is None else max(0.0, now_s - start)
        p50 = p99 = late99 = None
        if errors.size:
            p50 = float(np.percentile(errors, 50) * 1e3)
            p99 = float(np.percentile(errors, 99) * 1e3)
        if lateness.size:
            late99 = float(np.percentile(lateness, 99) * 1e3)
        return SamplingStats(
            rate_hz=self._rate_hz,
            achieved_rate_hz=achieved,
            samples=samples,
            dropped_samples=dropped,
            overruns=overruns,
            elapsed_s=elapsed,
            interval_error_p50_ms=p50,
            interval_error_p99_ms=p99,
            lateness_p99_ms=late99,
            queue_dropped_blocks=queue_dropped_blocks,
            bus_errors=bus_errors,
        )


class _End:
    """Marks the end of a stream in the hand-off queue."""


_END = _End()


class BlockHandoff:
    """A bounded asyncio queue of Blocks fed from a sampler thread.

    :meth:`bind` is called on the loop's thread (it creates the queue); the sampler thread
    calls :meth:`put_threadsafe` and finally :meth:`finish_threadsafe`, which never block: they
    schedule the work on the loop with ``call_soon_threadsafe``. When the queue is full the
    *oldest* block is dropped and counted in :attr:`dropped_blocks` (fresh data beats stale
    data for a live monitor). :meth:`get` returns the next Block, raises the error the thread
    finished with, or ``StopAsyncIteration`` at the end of the stream.
    """

    def __init__(self, maxsize_blocks: int) -> None:
        self._maxsize = maxsize_blocks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Block | BaseException | _End] | None = None
        self._exhausted = False
        self.dropped_blocks = 0

    @property
    def bound(self) -> bool:
        """True once :meth:`bind` has been called."""
        return self._loop is not None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to ``loop``; call on the loop's thread before the sampler thread starts."""
        self._loop = loop
        self._queue = asyncio.Queue()

    def put_threadsafe(self, block: Block) -> bool:
        """Hand ``block`` to the loop (sampler thread); False if the loop is gone."""
        return self._call(self._put, block)

    def finish_threadsafe(self, error: BaseException | None = None) -> bool:
        """End the stream, with ``error`` raised to the reader first if given (sampler thread)."""
        if error is not None and not self._call(self._put, error):
            return False
        return self._call(self._put, _END)

    def end_now(self) -> None:
        """End the stream from the loop's thread (a source closed before it ever started)."""
        if self._queue is None:
            self._exhausted = True
        else:
            self._put(_END)

    def _call(self, fn: Any, item: Block | BaseException | _End) -> bool:
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    def _put(self, item: Block | BaseException | _End) -> None:
        """Runs on the loop: enqueue, dropping the oldest block while ``maxsize`` are waiting.

        The queue itself is unbounded so the error and end markers, which come last, always
        fit; only Blocks count towards the bound.
        """
        assert self._queue is not None
        if isinstance(item, Block):
            while self._queue.qsize() >= self._maxsize:
                oldest = self._queue.get_nowait()
                if not isinstance(oldest, Block):  # cannot happen: markers come last
                    self._queue.put_nowait(oldest)
                    break
                self.dropped_blocks += 1
        self._queue.put_nowait(item)

    async def get(self) -> Block:
        """The next Block (loop thread); raises the thread's error, or StopAsyncIteration."""
        if self._exhausted or self._queue is None:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, Block):
            return item
        if isinstance(item, _End):
            self._exhausted = True
            raise StopAsyncIteration
        raise item
