"""ImuSource against a fake MPU-6050 that speaks the SMBus calls smbus2 makes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import numpy as np
import pytest

from hardware.block import Block, SampleSource
from hardware.errors import SensorError
from hardware.imu import ImuSource
from hardware.timing import SettingError
from tests.hardware.wire_fakes import (
    ACCEL_CONFIG,
    ACCEL_CONFIG2,
    CONFIG,
    FIFO_EN,
    FIFO_R_W,
    INT_ENABLE,
    PWR_MGMT_1,
    SMPLRT_DIV,
    USER_CTRL,
    FakeMPU6050,
)

TIMEOUT_S = 10.0


class FakeClock:
    """A monotonic clock the test moves by hand (the chip's time, in seconds)."""

    def __init__(self) -> None:
        self.t = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def wave(n: int) -> tuple[int, int, int]:
    """A deterministic, signed, per-axis different accelerometer waveform in counts."""
    return (10 * n - 500, 3000 - 7 * n, 16000 - 3 * n)


class Rig:
    """A fake chip, the clock it shares with the source, and the source under test."""

    def __init__(self, rate_hz: float = 100.0, **kwargs: object) -> None:
        self.clock = FakeClock()
        self.chip = FakeMPU6050(wave, **kwargs.pop("chip", {}))  # type: ignore[arg-type]
        self.rate_hz = rate_hz
        self.source = ImuSource(
            smbus=self.chip,
            rate_hz=rate_hz,
            clock=self.clock,
            poll_s=0.002,
            **kwargs,  # type: ignore[arg-type]
        )
        self.blocks: list[Block] = []
        self._iterator = aiter(self.source)

    def produce(self, n: int) -> None:
        """``n`` sample periods pass: the clock moves and the chip samples."""
        self.clock.advance(n / self.rate_hz)
        self.chip.produce(n)

    async def started(self) -> None:
        self.source.start()
        await until(lambda: self.source.start_utc is not None)

    async def read_samples(self, n: int) -> np.ndarray:
        """Read blocks until ``n`` more samples have arrived; return those samples."""
        have = len(self.blocks)
        got = 0
        while got < n:
            block = await asyncio.wait_for(anext(self._iterator), TIMEOUT_S)
            self.blocks.append(block)
            got += block.n
        return np.concatenate([b.samples for b in self.blocks[have:]])


async def until(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


def run(rig: Rig, scenario: Callable[[Rig], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await scenario(rig)
        finally:
            await rig.source.close()

    asyncio.run(main())


def test_imu_source_is_a_sample_source() -> None:
    rig = Rig()
    assert isinstance(rig.source, SampleSource)
    assert (rig.source.rate_hz, rig.source.channels, rig.source.model) == (100, 1, "MPU-6050")
    run(rig, lambda r: asyncio.sleep(0))


@pytest.mark.parametrize(
    ("rate_hz", "accel_range_g", "divider", "dlpf", "afs"),
    [(100, 2, 9, 3, 0), (250, 4, 3, 2, 1), (1000, 16, 0, 1, 3), (50, 8, 19, 4, 2)],
)
def test_configuration_registers_are_written_as_specified(
    rate_hz: float, accel_range_g: int, divider: int, dlpf: int, afs: int
) -> None:
    rig = Rig(rate_hz, accel_range_g=accel_range_g)
    chip = rig.chip
    assert chip.written(PWR_MGMT_1) == [0x01]  # awake, PLL clock
    assert chip.written(SMPLRT_DIV) == [divider]
    assert chip.written(CONFIG) == [dlpf]
    assert chip.written(ACCEL_CONFIG) == [afs << 3]
    assert chip.written(INT_ENABLE) == [0x10]
    assert chip.written(FIFO_EN)[-1] == 0x08  # accelerometer only
    assert chip.written(ACCEL_CONFIG2) == []  # a 6500-only register
    assert chip.rate_hz == rate_hz

    async def scenario(r: Rig) -> None:
        await r.started()
        # FIFO off, reset while off (the only way it takes), then on.
        assert chip.written(USER_CTRL)[-3:] == [0x00, 0x04, 0x40]
        assert chip.fifo_enabled and chip.fifo_resets == 1

    run(rig, scenario)
    assert chip.written(USER_CTRL)[-1] == 0x00  # close() stops the FIFO
    assert not chip.closed  # an injected bus belongs to its owner


def test_mpu6500_gets_its_accelerometer_filter_and_smaller_fifo() -> None:
    rig = Rig(250, chip={"who_am_i": 0x70, "fifo_size": 512})
    assert rig.source.model == "MPU-6500"
    assert rig.chip.written(ACCEL_CONFIG2) == [2]
    run(rig, lambda r: asyncio.sleep(0))


@pytest.mark.parametrize("accel_range_g", [2, 8])
@pytest.mark.parametrize("axis", ["x", "y", "z", "magnitude"])
def test_samples_are_converted_to_g(axis: str, accel_range_g: int) -> None:
    rig = Rig(100, axis=axis, accel_range_g=accel_range_g, block_s=0.1)
    counts = np.array([wave(n) for n in range(40)], dtype=np.float64)
    g = counts / (16384 / (accel_range_g // 2))
    expected = np.sqrt((g**2).sum(axis=1)) if axis == "magnitude" else g[:, "xyz".index(axis)]

    async def scenario(r: Rig) -> None:
        await r.started()
        r.produce(25)  # bursts that do not line up with the blocks
        r.produce(15)
        values = await r.read_samples(40)
        assert values.dtype == np.float32
        np.testing.assert_allclose(values, expected, rtol=1e-6)

    run(rig, scenario)


def test_blocks_are_contiguous_and_timed_by_the_chip() -> None:
    rig = Rig(200, block_s=0.05)

    async def scenario(r: Rig) -> None:
        await r.started()
        for _ in range(7):
            r.produce(13)
        await r.read_samples(90)
        start = r.source.start_utc
        assert start is not None
        for i, block in enumerate(r.blocks):
            assert block.index == 10 * i and block.n == 10 and block.rate_hz == 200
            assert block.t0 == start + timedelta(seconds=block.index / 200)
        stats = r.source.stats()
        assert stats.samples >= 90 and stats.dropped_samples == 0 and stats.overruns == 0
        assert stats.achieved_rate_hz == pytest.approx(200, rel=0.05)

    run(rig, scenario)


def norm_g(n: int) -> float:
    return float(np.linalg.norm(wave(n)) / 16384)


@pytest.mark.parametrize("fill_gaps", [True, False])
def test_fifo_overflow_is_detected_counted_and_recovered(fill_gaps: bool) -> None:
    rig = Rig(100, block_s=0.1, fill_gaps=fill_gaps)

    async def scenario(r: Rig) -> None:
        await r.started()
        r.produce(20)
        before = await r.read_samples(20)
        np.testing.assert_allclose(before, [norm_g(n) for n in range(20)], rtol=1e-6)
        resets = r.chip.fifo_resets
        r.produce(200)  # 1200 bytes into a 1024-byte FIFO, nobody reading
        await until(lambda: r.source.stats().overruns == 1)
        assert r.chip.fifo_resets == resets + 1
        r.produce(30)
        if fill_gaps:
            # Samples 20..219 were lost: the last one read (19) stands in for them, and the
            # chip's samples 220.. follow at their own index.
            after = await r.read_samples(230)
            assert [b.index for b in r.blocks] == list(range(0, 250, 10))
            np.testing.assert_allclose(after[:200], norm_g(19), rtol=1e-6)
            np.testing.assert_allclose(after[200:], [norm_g(n) for n in range(220, 250)], rtol=1e-6)
        else:
            after = await r.read_samples(30)
            # The stream resumes at the chip's sample number, with the chip's samples.
            assert [b.index for b in r.blocks[-3:]] == [220, 230, 240]
            np.testing.assert_allclose(after, [norm_g(n) for n in range(220, 250)], rtol=1e-6)
        stats = r.source.stats()
        assert (stats.overruns, stats.dropped_samples, stats.samples) == (1, 200, 50)

    run(rig, scenario)


def test_transient_bus_errors_are_retried_without_losing_samples() -> None:
    rig = Rig(100, axis="x")

    async def scenario(r: Rig) -> None:
        await r.started()
        r.chip.fail_next(2)
        await until(lambda: r.source.stats().bus_errors == 2)
        r.produce(30)
        values = await r.read_samples(30)
        np.testing.assert_allclose(values, [wave(n)[0] / 16384 for n in range(30)], rtol=1e-6)
        assert r.source.stats().dropped_samples == 0

    run(rig, scenario)


@pytest.mark.parametrize("fill_gaps", [True, False])
def test_a_failed_fifo_burst_resets_the_fifo_and_accounts_for_the_gap(fill_gaps: bool) -> None:
    rig = Rig(100, axis="z", fill_gaps=fill_gaps)

    async def scenario(r: Rig) -> None:
        await r.started()
        r.chip.fail_next(1, register=FIFO_R_W)
        r.produce(10)
        await until(lambda: r.source.stats().overruns == 1)
        r.produce(10)
        expected = [wave(n)[2] / 16384 for n in range(10, 20)]
        if fill_gaps:  # nothing read before the gap: the first sample after it stands in
            values = await r.read_samples(20)
            assert r.blocks[0].index == 0
            np.testing.assert_allclose(values, [expected[0]] * 10 + expected, rtol=1e-6)
        else:
            values = await r.read_samples(10)
            assert r.blocks[-1].index == 10  # the 10 samples of the broken burst were skipped
            np.testing.assert_allclose(values, expected, rtol=1e-6)
        assert r.source.stats().bus_errors == 1
        assert r.source.stats().dropped_samples == 10

    run(rig, scenario)


def test_a_dead_bus_raises_a_sensor_error_from_the_iterator() -> None:
    rig = Rig(100, bus_retries=2)

    async def scenario(r: Rig) -> None:
        await r.started()
        r.chip.fail_next(1000)
        with pytest.raises(SensorError, match="failed 3 times"):
            await r.read_samples(1)

    run(rig, scenario)


def test_bus_errors_while_configuring_are_retried() -> None:
    chip = FakeMPU6050(wave)
    chip.fail_next(2)
    source = ImuSource(smbus=chip, rate_hz=100)
    assert source.stats().bus_errors == 2
    assert chip.written(SMPLRT_DIV) == [9]
    asyncio.run(source.close())


@pytest.mark.parametrize("who_am_i", [0x12, 0x71, 0x00])
def test_an_unknown_who_am_i_is_a_sensor_error_naming_the_value(who_am_i: int) -> None:
    chip = FakeMPU6050(who_am_i=who_am_i)
    with pytest.raises(SensorError, match=f"WHO_AM_I 0x{who_am_i:02x}"):
        ImuSource(smbus=chip)
    assert chip.writes == []  # nothing written to a chip we do not know


def test_no_device_at_the_address_is_a_sensor_error() -> None:
    with pytest.raises(SensorError, match="0x69"):
        ImuSource(smbus=FakeMPU6050(address=0x68), address=0x69, bus_retries=0)


def test_a_missing_i2c_bus_is_a_sensor_error() -> None:
    with pytest.raises(SensorError, match="/dev/i2c-97"):
        ImuSource(bus=97)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"rate_hz": 333}, "rate_hz"),
        ({"rate_hz": 5}, "rate_hz"),
        ({"rate_hz": 2000}, "rate_hz"),
        ({"axis": "w"}, "axis"),
        ({"address": 0x70}, "address"),
        ({"accel_range_g": 3}, "accel_range_g"),
        ({"dlpf_cfg": 0}, "dlpf_cfg"),
        ({"block_s": 0}, "block_s"),
    ],
)
def test_bad_settings_raise_a_value_error_naming_the_parameter(
    kwargs: dict[str, object], parameter: str
) -> None:
    with pytest.raises(SettingError, match=parameter) as info:
        ImuSource(smbus=FakeMPU6050(), **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and info.value.parameter == parameter
