"""What the live sources share: a worker thread that fills Blocks and an asyncio side that iterates them."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from hardware.block import Block
from hardware.errors import SensorError
from hardware.timing import BlockHandoff, IntervalRecorder, SamplingStats, SettingError

logger = logging.getLogger(__name__)


class ThreadedSource:
    """Base of PiezoSource and ImuSource (a SampleSource).

    A subclass calls :meth:`_init_threaded` in its constructor and implements ``_run`` (the
    worker thread: reads the sensor, hands Blocks over with ``self._handoff.put_threadsafe`` and
    ends with ``self._handoff.finish_threadsafe(error)``) and, if it holds a device,
    ``_release`` (called once by :meth:`close` after the thread has stopped).
    """

    _thread_name = "bedside-source"

    def _init_threaded(
        self,
        rate_hz: float,
        block_s: float,
        queue_blocks: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_blocks < 1:
            raise SettingError("queue_blocks", f"must be at least 1, got {queue_blocks!r}")
        self._rate_hz = float(rate_hz)
        self._block_n = max(1, round(block_s * rate_hz))
        self._clock = clock
        self._handoff = BlockHandoff(queue_blocks)
        self._timer = IntervalRecorder(self._rate_hz)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._start_utc: datetime | None = None

    @property
    def rate_hz(self) -> float:
        """Configured sampling rate, in Hz."""
        return self._rate_hz

    @property
    def channels(self) -> int:
        """Always 1: one ADC channel (or differential pair), or one IMU axis (or the magnitude)."""
        return 1

    @property
    def block_n(self) -> int:
        """Samples per full block (``round(block_s * rate_hz)``)."""
        return self._block_n

    @property
    def start_utc(self) -> datetime | None:
        """UTC time of sample 0, once sampling has started."""
        return self._start_utc

    def stats(self) -> SamplingStats:
        """Sampling statistics so far (any thread)."""
        return self._timer.snapshot(self._clock(), self._handoff.dropped_blocks)

    def start(self) -> None:
        """Start the worker thread; call on the asyncio loop (iteration calls it for you)."""
        if self._thread is not None:
            return
        if self._closed:
            raise SensorError(f"{type(self).__name__} is closed")
        self._handoff.bind(asyncio.get_running_loop())
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def __aiter__(self) -> ThreadedSource:
        return self

    async def __anext__(self) -> Block:
        if self._thread is None and not self._closed:
            self.start()
        return await self._handoff.get()

    async def close(self) -> None:
        """Stop at once, join the thread, release the device. Idempotent.

        Blocks already handed over stay readable; the iteration then ends (the last block
        may be shorter than ``block_n``).
        """
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        else:
            self._handoff.end_now()
        self._release()
        logger.info("%r closed: %s", self, self.stats())

    def _emit(self, samples: np.ndarray, index: int) -> bool:
        """Hand a Block starting at stream sample ``index`` to the loop (worker thread); False
        when the loop is gone and the worker should stop."""
        assert self._start_utc is not None
        block = Block(
            t0=self._start_utc + timedelta(seconds=index / self._rate_hz),
            index=index,
            rate_hz=self._rate_hz,
            samples=samples,
        )
        return self._handoff.put_threadsafe(block)

    def _run(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the source opened (after the thread has stopped)."""
