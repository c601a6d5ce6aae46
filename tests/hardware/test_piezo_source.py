"""PiezoSource through the real gpiozero MCP3008/MCP3208 classes on MockFactory SPI pins."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from itertools import pairwise

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from hardware.block import Block, SampleSource
from hardware.errors import BedsideError, SensorError
from hardware.piezo import PiezoSource
from hardware.timing import SettingError
from tests.hardware.wire_fakes import FakeMCP3008, FakeMCP3208

TIMEOUT_S = 10.0


async def collect(
    source: PiezoSource, until: Callable[[list[Block]], bool], timeout_s: float = TIMEOUT_S
) -> list[Block]:
    """Read blocks until ``until(blocks)``, then close the source and drain what is left."""
    blocks: list[Block] = []

    async def read() -> None:
        async for block in source:
            blocks.append(block)
            if until(blocks):
                return

    try:
        await asyncio.wait_for(read(), timeout_s)
    finally:
        await source.close()
    async for block in source:  # whatever was handed over before the thread stopped
        blocks.append(block)
    return blocks


def samples_of(blocks: list[Block]) -> np.ndarray:
    return np.concatenate([b.samples for b in blocks])


def total_samples(n: int) -> Callable[[list[Block]], bool]:
    return lambda blocks: sum(b.n for b in blocks) >= n


def assert_stream_accounts_for_every_slot(source: PiezoSource, blocks: list[Block]) -> None:
    """Every schedule slot is in the stream once: a sample taken, or a dropped one filled in."""
    stats = source.stats()
    assert blocks[0].index == 0
    for prev, block in pairwise(blocks):
        assert block.index == prev.index + prev.n  # contiguous
        assert prev.n == source.block_n  # full blocks, but for the last one
    assert sum(b.n for b in blocks) == stats.samples + stats.dropped_samples


def assert_gaps_are_the_dropped_samples(source: PiezoSource, blocks: list[Block]) -> None:
    """With ``fill_gaps=False``: blocks follow each other; each index gap is dropped samples."""
    gaps = blocks[0].index  # slots skipped before the first sample, if any
    for prev, block in pairwise(blocks):
        gap = block.index - (prev.index + prev.n)
        assert gap >= 0
        assert prev.n == source.block_n or gap > 0  # short blocks only before a gap
        gaps += gap
    stats = source.stats()
    assert gaps == stats.dropped_samples
    assert stats.samples == sum(b.n for b in blocks)


def without_repeats(values: np.ndarray) -> np.ndarray:
    """``values`` with runs of one value collapsed (undoes the filling of dropped slots)."""
    keep = np.ones(values.size, dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def stalling(at_conversion: int, stall_s: float, code: Callable[[int], int]) -> Callable[[int], int]:
    """A waveform whose conversion ``at_conversion`` holds the SPI bus for ``stall_s``."""

    def waveform(n: int) -> int:
        if n == at_conversion:
            threading.Event().wait(stall_s)  # a deliberate stall inside the read, not a test wait
        return code(n)

    return waveform


def test_piezo_source_is_a_sample_source(mock_factory: MockFactory) -> None:
    with FakeMCP3008():
        source = PiezoSource(rate_hz=100)
        assert isinstance(source, SampleSource)
        assert (source.rate_hz, source.channels, source.bits, source.block_n) == (100, 1, 10, 10)
        asyncio.run(source.close())


def test_blocks_carry_the_scripted_waveform_in_order(mock_factory: MockFactory) -> None:
    ramp = list(range(0, 1024, 7))
    with FakeMCP3008(inputs={0: ramp}) as fake:
        source = PiezoSource(chip="mcp3008", channel=0, rate_hz=250, block_s=0.04)
        blocks = asyncio.run(collect(source, total_samples(300)))
        values = samples_of(blocks)
        assert values.dtype == np.float32
        assert all(b.samples.ndim == 1 and b.rate_hz == 250 for b in blocks)
        # Conversions come back in order; slots dropped by an overrun on a busy machine
        # repeat the sample before them (consecutive ramp codes always differ).
        read = without_repeats(values)
        expected = np.array([ramp[i % len(ramp)] for i in range(read.size)], dtype=np.float32)
        np.testing.assert_array_equal(read, expected)
        assert len(fake.conversions) == read.size == source.stats().samples
        assert values.size - read.size == source.stats().dropped_samples
        assert_stream_accounts_for_every_slot(source, blocks)


@pytest.mark.parametrize("fill_gaps", [True, False])
def test_an_overrun_resynchronises_and_counts_the_dropped_slots(
    mock_factory: MockFactory, fill_gaps: bool
) -> None:
    # Conversion 12 takes 60 ms: at 200 Hz the next sample is ~11 slots late.
    with FakeMCP3008(inputs={0: stalling(12, 0.06, lambda n: n)}):
        source = PiezoSource(rate_hz=200, block_s=0.05, fill_gaps=fill_gaps)
        blocks = asyncio.run(collect(source, total_samples(60)))
        stats = source.stats()
        assert stats.overruns >= 1 and stats.dropped_samples >= 8
        values = samples_of(blocks)
        if fill_gaps:
            assert_stream_accounts_for_every_slot(source, blocks)
            np.testing.assert_array_equal(without_repeats(values), np.arange(stats.samples))
            assert np.count_nonzero(values == 12) >= 9  # the sample before the gap, held
        else:
            assert_gaps_are_the_dropped_samples(source, blocks)
            np.testing.assert_array_equal(values, np.arange(values.size))
            assert any(b.index != a.index + a.n for a, b in pairwise(blocks))


def test_block_times_come_from_the_sample_index_not_the_wall_clock(
    mock_factory: MockFactory,
) -> None:
    with FakeMCP3008(inputs={0: [512]}):
        source = PiezoSource(rate_hz=200, block_s=0.05)
        blocks = asyncio.run(collect(source, total_samples(100)))
        start = source.start_utc
        assert start is not None and start.utcoffset() == timedelta(0)
        for block in blocks:
            assert block.t0 == start + timedelta(seconds=block.index / 200)
        for prev, block in pairwise(blocks):
            if block.index == prev.index + prev.n:  # contiguous: no gap, no overlap
                assert abs((block.t0 - prev.t_end).total_seconds()) < 1e-5


def test_mcp3208_answers_twelve_bit_codes(mock_factory: MockFactory) -> None:
    codes = [0, 4095, 2048, 1, 4094, 1234]
    with FakeMCP3208(inputs={5: codes}) as fake:
        source = PiezoSource(chip="mcp3208", channel=5, rate_hz=200, block_s=0.03)
        assert source.bits == 12
        blocks = asyncio.run(collect(source, total_samples(30)))
        values = without_repeats(samples_of(blocks))  # consecutive codes differ
        np.testing.assert_array_equal(values, [codes[i % 6] for i in range(values.size)])
        assert set(fake.conversions) == {(True, 5)}


@pytest.mark.parametrize("channel", [0, 3, 7])
def test_the_channel_chosen_is_the_channel_read(mock_factory: MockFactory, channel: int) -> None:
    inputs = {pin: [100 * pin + 50] for pin in range(8)}
    with FakeMCP3008(inputs=inputs) as fake:
        source = PiezoSource(channel=channel, rate_hz=200, block_s=0.05)
        values = samples_of(asyncio.run(collect(source, total_samples(20))))
        assert set(values.tolist()) == {100 * channel + 50}
        assert set(fake.conversions) == {(True, channel)}


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (0, 0),  # CH0 - CH1 = 200 - 900: the chip clamps at 0
        (1, 700),  # CH1 - CH0
        (2, 400),  # CH2 - CH3
        (3, 0),  # CH3 - CH2
    ],
)
def test_differential_mode_addresses_the_pair(mock_factory: MockFactory, channel: int, expected: int) -> None:
    with FakeMCP3008(inputs={0: [200], 1: [900], 2: [500], 3: [100]}) as fake:
        source = PiezoSource(channel=channel, differential=True, rate_hz=200, block_s=0.05)
        values = samples_of(asyncio.run(collect(source, total_samples(10))))
        assert set(values.tolist()) == {expected}
        assert set(fake.conversions) == {(False, channel)}


@pytest.mark.parametrize(
    ("select_pin", "spi_device", "fake_select"),
    [(None, 1, 7), (7, None, 7), (5, None, 5)],  # CE1 by device, CE1 by pin, a software CS
)
def test_spi_chip_select_can_be_chosen(
    mock_factory: MockFactory, select_pin: int | None, spi_device: int | None, fake_select: int
) -> None:
    with FakeMCP3008(select_pin=fake_select, inputs={0: [321]}) as fake:
        source = PiezoSource(select_pin=select_pin, spi_device=spi_device, rate_hz=200)
        values = samples_of(asyncio.run(collect(source, total_samples(5))))
        assert set(values.tolist()) == {321}
        assert fake.conversions


def test_close_stops_the_thread_at_once_and_ends_the_iteration(
    mock_factory: MockFactory,
) -> None:
    async def scenario(source: PiezoSource) -> tuple[float, list[Block]]:
        source.start()
        deadline = time.monotonic() + TIMEOUT_S
        while source.stats().samples < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        began = time.monotonic()
        await source.close()
        took = time.monotonic() - began
        rest = [block async for block in source]
        return took, rest

    with FakeMCP3008(inputs={0: [42]}):
        # 50 Hz and 10-s blocks: without an immediate stop close() would wait for a block.
        source = PiezoSource(rate_hz=50, block_s=10.0)
        took, rest = asyncio.run(scenario(source))
        assert took < 1.0
        assert source._thread is not None and not source._thread.is_alive()
        assert len(rest) == 1 and 5 <= rest[0].n < 500  # the partial block, handed over
        assert source.stats().samples == rest[0].n
        asyncio.run(source.close())  # idempotent


def test_stats_report_counts_and_a_rate_near_the_configured_one(
    mock_factory: MockFactory,
) -> None:
    with FakeMCP3008(inputs={0: [1, 2, 3]}):
        source = PiezoSource(rate_hz=200, block_s=0.05)
        blocks = asyncio.run(collect(source, total_samples(200)))
        stats = source.stats()
        assert stats.rate_hz == 200
        last = blocks[-1]
        # Every slot of the schedule is either a sample taken or a sample dropped.
        assert stats.samples + stats.dropped_samples == last.index + last.n
        assert stats.overruns <= stats.dropped_samples
        assert_stream_accounts_for_every_slot(source, blocks)
        # Generous: a loaded CI machine may overrun, but cannot run faster than the schedule.
        assert 100 < stats.achieved_rate_hz < 210
        assert stats.interval_error_p99_ms is not None and stats.interval_error_p99_ms >= 0
        assert stats.interval_error_p50_ms is not None
        assert stats.interval_error_p50_ms <= stats.interval_error_p99_ms
        assert stats.elapsed_s > 0.5
        assert stats.as_dict()["samples"] == stats.samples


def test_a_full_queue_drops_the_oldest_blocks_and_counts_them(
    mock_factory: MockFactory,
) -> None:
    async def scenario(source: PiezoSource) -> list[Block]:
        source.start()
        deadline = time.monotonic() + TIMEOUT_S
        while source.stats().queue_dropped_blocks < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await source.close()
        return [block async for block in source]

    with FakeMCP3008(inputs={0: list(range(1000))}):
        source = PiezoSource(rate_hz=250, block_s=0.02, queue_blocks=2)
        blocks = asyncio.run(scenario(source))
        stats = source.stats()
        assert stats.queue_dropped_blocks >= 3
        assert 1 <= len(blocks) <= 2
        # Only the oldest blocks go (all full ones); the survivors are the newest, in order.
        assert blocks[0].index == source.block_n * stats.queue_dropped_blocks
        for prev, block in pairwise(blocks):
            assert block.index == prev.index + prev.n
        last = blocks[-1]
        assert last.index + last.n == stats.samples + stats.dropped_samples


def test_transient_read_errors_are_retried(mock_factory: MockFactory) -> None:
    with FakeMCP3008(inputs={0: list(range(100))}) as fake:
        fake.fail_conversions = 2
        source = PiezoSource(rate_hz=200, block_s=0.05, read_retries=3)
        values = samples_of(
            asyncio.run(collect(source, lambda blocks: without_repeats(samples_of(blocks)).size >= 20))
        )
        assert source.stats().bus_errors == 2
        np.testing.assert_array_equal(without_repeats(values)[:20], np.arange(20))


def test_a_dead_bus_ends_the_iteration_with_a_sensor_error(mock_factory: MockFactory) -> None:
    with FakeMCP3008(inputs={0: [1]}) as fake:
        fake.fail_conversions = 1000
        source = PiezoSource(rate_hz=200, read_retries=2)
        with pytest.raises(SensorError, match="read failed 3 times"):
            asyncio.run(collect(source, total_samples(1)))


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"rate_hz": 20}, "rate_hz"),
        ({"rate_hz": 2000}, "rate_hz"),
        ({"rate_hz": float("nan")}, "rate_hz"),
        ({"block_s": 0.0}, "block_s"),
        ({"channel": 8}, "channel"),
        ({"chip": "mcp3004"}, "chip"),
        ({"select_pin": 7, "spi_device": 1}, "select_pin"),
        ({"spi_device": 2}, "spi_device"),
        ({"spi_bus": 1}, "spi_bus"),
    ],
)
def test_bad_settings_raise_a_value_error_naming_the_parameter(
    mock_factory: MockFactory, kwargs: dict[str, object], parameter: str
) -> None:
    with pytest.raises(SettingError, match=parameter) as info:
        PiezoSource(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, BedsideError)
    assert info.value.parameter == parameter


def test_a_pin_already_in_use_is_a_sensor_error(mock_factory: MockFactory) -> None:
    from gpiozero import LED

    with FakeMCP3008(), LED(8), pytest.raises(SensorError, match="cannot open MCP3008"):
        PiezoSource()
