"""PiezoSource: a piezo film read through an MCP3008/MCP3208 ADC on SPI by a sampler thread."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from hardware.errors import SensorError
from hardware.threaded import ThreadedSource
from hardware.timing import SettingError, check_range

logger = logging.getLogger(__name__)

MIN_RATE_HZ = 50.0
MAX_RATE_HZ = 1000.0
#: Resolution of each supported ADC, in bits.
ADC_BITS: dict[str, int] = {"mcp3008": 10, "mcp3208": 12}

AdcChip = Literal["mcp3008", "mcp3208"]


class PiezoSource(ThreadedSource):
    """Samples one ADC channel at ``rate_hz`` in its own thread and yields Blocks of raw counts.

    Usage, on the asyncio loop::

        source = PiezoSource(chip="mcp3208", channel=0, rate_hz=250)
        async for block in source:  # the sampler thread starts on the first iteration
            ...
        await source.close()        # from anywhere on the loop: the iteration then ends

    The sampler thread reads ``raw_value`` (counts, 0..1023 for the MCP3008, 0..4095 for the
    MCP3208) at absolute ``time.monotonic()`` targets ``start + k / rate_hz``, so the schedule
    never drifts. A sample read more than one period late is an *overrun*: the schedule
    resynchronises to the slot it is in now and the missed slots are counted in
    ``stats().dropped_samples``. With ``fill_gaps`` (the default) the missed slots are filled
    by repeating the last sample, so the stream stays contiguous and blocks keep their size:
    whoever counts samples (the detector does) keeps exact time. With ``fill_gaps=False`` the
    current block is handed over early and the next one starts after the gap, so
    ``block.index`` jumps past ``prev.index + prev.n``. Either way sample ``i`` of the stream
    is at ``i / rate_hz`` seconds after the start, and ``block.t0 = start_utc + index /
    rate_hz`` (from a monotonic anchor: a wall-clock jump does not move samples).

    SPI: by default hardware SPI0, CE0 (GPIO8). ``spi_device=1`` picks CE1 (GPIO7); ``spi_bus``
    must be 0 (the only bus gpiozero drives); ``select_pin`` (GPIO number) uses that pin as
    chip select on the SCLK/MOSI/MISO pins, bit-banged by gpiozero unless it is CE0/CE1.
    ``pin_factory`` is passed to gpiozero, but gpiozero's software SPI (and so its
    ``MockFactory``) also asks for the global ``Device.pin_factory``: set that one in tests.

    The constructor opens the ADC (SensorError if it cannot); bad settings raise
    :class:`~hardware.timing.SettingError` (a ValueError) naming the parameter.
    """

    def __init__(
        self,
        *,
        chip: AdcChip = "mcp3008",
        channel: int = 0,
        differential: bool = False,
        rate_hz: float = 250.0,
        block_s: float = 0.1,
        select_pin: int | str | None = None,
        spi_bus: int | None = None,
        spi_device: int | None = None,
        queue_blocks: int = 64,
        read_retries: int = 3,
        fill_gaps: bool = True,
        pin_factory: Any = None,
    ) -> None:
        if chip not in ADC_BITS:
            raise SettingError("chip", f"must be one of {sorted(ADC_BITS)}, got {chip!r}")
        if not (isinstance(channel, int) and 0 <= channel <= 7):
            raise SettingError("channel", f"must be an integer 0..7, got {channel!r}")
        check_range("rate_hz", rate_hz, MIN_RATE_HZ, MAX_RATE_HZ, "Hz")
        check_range("block_s", block_s, 1.0 / rate_hz, 10.0, "s")
        if read_retries < 0:
            raise SettingError("read_retries", f"must be >= 0, got {read_retries!r}")
        self._chip: AdcChip = chip
        self._channel = channel
        self._differential = differential
        self._init_threaded(rate_hz, block_s, queue_blocks)
        self._thread_name = f"bedside-piezo-ch{channel}"
        self._read_retries = read_retries
        self._fill_gaps = fill_gaps
        self._spi_args = _spi_args(select_pin, spi_bus, spi_device)
        self._adc: Any = self._open(pin_factory)

    def _open(self, pin_factory: Any) -> Any:
        from gpiozero import MCP3008, MCP3208, GPIOZeroError

        cls = MCP3008 if self._chip == "mcp3008" else MCP3208
        try:
            return cls(
                channel=self._channel,
                differential=self._differential,
                pin_factory=pin_factory,
                **self._spi_args,
            )
        except (GPIOZeroError, OSError) as exc:
            raise SensorError(f"cannot open {self._chip.upper()} ({self._describe()}): {exc}") from exc

    def _describe(self) -> str:
        mode = "differential" if self._differential else "single-ended"
        where = ", ".join(f"{k}={v}" for k, v in self._spi_args.items()) or "SPI0 CE0"
        return f"channel {self._channel} {mode}, {where}"

    def __repr__(self) -> str:
        return f"<PiezoSource {self._chip} {self._describe()} at {self._rate_hz:g} Hz>"

    @property
    def bits(self) -> int:
        """ADC resolution: samples are counts in ``0 .. 2**bits - 1``."""
        return ADC_BITS[self._chip]

    def _release(self) -> None:
        self._adc.close()

    # -- the sampler thread ---------------------------------------------------------------

    def _read(self) -> int:
        """One conversion, with retries on bus errors (sampler thread)."""
        for attempt in range(self._read_retries + 1):
            try:
                return int(self._adc.raw_value)
            except OSError as exc:
                if attempt == self._read_retries:
                    raise SensorError(f"{self._chip.upper()} read failed {attempt + 1} times: {exc}") from exc
                self._timer.bus_error()
                logger.warning("%s read failed (%s), retrying", self._chip.upper(), exc)
        raise AssertionError("unreachable")

    def _run(self) -> None:
        """The sampler thread: absolute schedule, blocks handed to the loop as they fill."""
        period_s = 1.0 / self._rate_hz
        block_n = self._block_n
        buf = np.empty(block_n, dtype=np.float32)
        fill = 0
        buf_index = 0  # stream index of buf[0]
        slot = 0  # position of the next sample on the schedule
        last: float | None = None  # the last sample read
        fill_gaps = self._fill_gaps
        stopping = self._stopping
        clock = time.monotonic
        timer = self._timer
        error: BaseException | None = None
        start_s = clock()
        self._start_utc = datetime.now(UTC)
        timer.start(start_s)
        logger.info("piezo sampling started: %r", self)
        try:
            while True:
                target_s = start_s + slot * period_s
                wait_s = target_s - clock()
                if wait_s > 0.0:
                    if stopping.wait(wait_s):
                        break
                elif stopping.is_set():
                    break
                taken_s = clock()
                value = self._read()
                late_s = taken_s - target_s
                if late_s > period_s:  # overrun: skip to the slot we are in now
                    skipped = int(late_s / period_s)
                    target_s += skipped * period_s
                    timer.overrun(skipped)
                    if fill_gaps:  # repeat the last sample in the skipped slots
                        hold = value if last is None else last
                        for _ in range(skipped):
                            if fill == 0:
                                buf_index = slot
                            buf[fill] = hold
                            fill += 1
                            slot += 1
                            if fill == block_n:
                                if not self._emit(buf.copy(), buf_index):
                                    return
                                fill = 0
                    else:  # hand over what we have; the next block starts after the gap
                        slot += skipped
                        if fill:
                            if not self._emit(buf[:fill].copy(), buf_index):
                                return
                            fill = 0
                if fill == 0:
                    buf_index = slot
                buf[fill] = last = value
                fill += 1
                timer.sample(slot, taken_s, target_s)
                slot += 1
                if fill == block_n:
                    if not self._emit(buf.copy(), buf_index):
                        return  # the loop is closed: nobody to hand blocks to
                    fill = 0
        except Exception as exc:
            logger.exception("piezo sampler stopped by an error")
            error = exc
            if not isinstance(exc, SensorError):
                error = SensorError(f"piezo sampler: {exc!r}")
                error.__cause__ = exc
        if fill:
            self._emit(buf[:fill].copy(), buf_index)
        self._handoff.finish_threadsafe(error)


def _spi_args(select_pin: int | str | None, spi_bus: int | None, spi_device: int | None) -> dict[str, Any]:
    """gpiozero SPI keyword arguments for our three ways of naming the bus."""
    if select_pin is not None:
        if spi_bus is not None or spi_device is not None:
            raise SettingError("select_pin", "give select_pin or spi_bus/spi_device, not both")
        return {"select_pin": select_pin}
    if spi_bus is None and spi_device is None:
        return {}
    port = 0 if spi_bus is None else spi_bus
    device = 0 if spi_device is None else spi_device
    if port != 0:
        raise SettingError("spi_bus", f"gpiozero drives SPI0 only, got {port!r}")
    if device not in (0, 1):
        raise SettingError("spi_device", f"must be 0 (CE0, GPIO8) or 1 (CE1, GPIO7), got {device!r}")
    return {"port": port, "device": device}
