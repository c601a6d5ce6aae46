"""Sampling statistics and the thread-to-loop block hand-off, with synthetic timings."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from hardware.block import Block
from hardware.errors import SensorError
from hardware.timing import BlockHandoff, IntervalRecorder, SettingError, check_range


def test_recorder_reports_rate_jitter_and_overruns_from_sample_times() -> None:
    recorder = IntervalRecorder(rate_hz=100.0)
    recorder.start(10.0)
    # 100 samples on time except every 10th, 2 ms late.
    for slot in range(100):
        target = 10.0 + slot / 100
        recorder.sample(slot, target + (0.002 if slot % 10 == 5 else 0.0), target)
    # Then fall behind: 3 slots skipped, the next sample 0.5 ms late on its new slot.
    recorder.overrun(3)
    recorder.sample(103, 10.0 + 1.03 + 0.0005, 10.0 + 1.03)
    stats = recorder.snapshot(now_s=11.1, queue_dropped_blocks=2)
    assert stats.samples == 101 and stats.dropped_samples == 3 and stats.overruns == 1
    assert stats.queue_dropped_blocks == 2
    assert stats.elapsed_s == pytest.approx(1.1)
    assert stats.achieved_rate_hz == pytest.approx(100 / 1.0305)
    assert stats.interval_error_p50_ms == pytest.approx(0.0, abs=1e-9)
    assert stats.interval_error_p99_ms == pytest.approx(2.0, abs=0.05)
    assert stats.lateness_p99_ms == pytest.approx(2.0, abs=0.05)
    assert stats.rate_error == pytest.approx(100 / 1.0305 / 100 - 1)


def test_recorder_of_a_device_timed_source_counts_samples() -> None:
    recorder = IntervalRecorder(rate_hz=200.0)
    recorder.start(5.0)
    recorder.count(100, now_s=5.5)
    recorder.count(98, now_s=6.0)
    stats = recorder.snapshot(now_s=6.0)
    assert stats.samples == 198 and stats.achieved_rate_hz == pytest.approx(198.0)
    assert stats.interval_error_p99_ms is None and stats.lateness_p99_ms is None


def test_an_empty_recorder_reports_zeros() -> None:
    stats = IntervalRecorder(rate_hz=50.0).snapshot(now_s=1.0)
    assert (stats.samples, stats.achieved_rate_hz, stats.elapsed_s) == (0, 0.0, 0.0)


def block(index: int) -> Block:
    return Block(datetime(2026, 1, 1, tzinfo=UTC), index, 100.0, np.zeros(10, np.float32))


def test_handoff_drops_the_oldest_blocks_but_never_the_end_or_the_error() -> None:
    async def scenario() -> tuple[list[int], BaseException | None, int]:
        handoff = BlockHandoff(maxsize_blocks=3)
        handoff.bind(asyncio.get_running_loop())

        def thread() -> None:
            for i in range(10):
                handoff.put_threadsafe(block(10 * i))
            handoff.finish_threadsafe(SensorError("unplugged"))

        worker = threading.Thread(target=thread)
        worker.start()
        await asyncio.to_thread(worker.join)
        await asyncio.sleep(0)  # let the scheduled callbacks run
        got: list[int] = []
        error: BaseException | None = None
        try:
            while True:
                got.append((await handoff.get()).index)
        except SensorError as exc:
            error = exc
        with pytest.raises(StopAsyncIteration):
            await handoff.get()
        return got, error, handoff.dropped_blocks

    got, error, dropped = asyncio.run(scenario())
    assert got == [70, 80, 90]
    assert dropped == 7
    assert isinstance(error, SensorError)


def test_handoff_to_a_closed_loop_reports_false() -> None:
    loop = asyncio.new_event_loop()
    handoff = BlockHandoff(2)
    handoff.bind(loop)
    loop.close()
    assert handoff.put_threadsafe(block(0)) is False
    assert handoff.finish_threadsafe() is False


def test_check_range_names_the_parameter() -> None:
    assert check_range("rate_hz", 100.0, 50.0, 1000.0) == 100.0
    with pytest.raises(SettingError, match=r"rate_hz: must be between 50 and 1000 Hz, got 10"):
        check_range("rate_hz", 10, 50.0, 1000.0, "Hz")
