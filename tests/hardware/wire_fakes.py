"""Fakes of the sensor chips at the wire-protocol level: MCP3008/MCP3208 on SPI, MPU-6050 on I2C.

``FakeMCP3008`` sits on gpiozero's ``MockFactory`` SPI pins and answers the bits the real
``gpiozero.MCP3008`` clocks in; ``FakeMPU6050`` stands in for ``smbus2.SMBus``. Also used by
``bench/bench_sampling.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from gpiozero.pins.mock import MockSPIDevice

#: A scripted input: conversion number -> ADC code, or a list of codes played in a loop.
Waveform = Callable[[int], int] | Sequence[int]


def _at(waveform: Waveform, n: int) -> int:
    if callable(waveform):
        return int(waveform(n))
    return int(waveform[n % len(waveform)])


class FakeMCP3008(MockSPIDevice):
    """The slave side of an MCP3008 (10 bits): decodes start, SGL/DIFF and D2..D0 bits.

    ``inputs`` maps input pins CH0..CH7 to waveforms, evaluated at the conversion number
    ``n`` (0, 1, 2... counted over every conversion the chip makes). Single-ended, channel
    ``c`` answers input ``c``; differential, channel code ``c`` answers
    ``IN+ - IN-`` (clamped to 0, as the chip does) of the pair ``(c & 6, c & 6 | 1)``, IN+
    being the odd input when ``c`` is odd (datasheet table 5-2). ``conversions`` records
    ``(single_ended, channel_code)`` of every conversion. ``fail_conversions`` makes the next
    conversions raise OSError, as a spidev transfer would.
    """

    bits = 10

    def __init__(
        self,
        clock_pin: int = 11,
        mosi_pin: int = 10,
        miso_pin: int = 9,
        select_pin: int = 8,
        *,
        inputs: Mapping[int, Waveform] | None = None,
    ) -> None:
        super().__init__(clock_pin, mosi_pin, miso_pin, select_pin)
        self.inputs: dict[int, Waveform] = dict(inputs or {})
        self.conversions: list[tuple[bool, int]] = []
        self.fail_conversions = 0
        self._start_bit_at: int | None = None

    @property
    def full_scale(self) -> int:
        """Largest code: 1023 (10 bits) or 4095 (12 bits)."""
        return (1 << self.bits) - 1

    def input_code(self, pin: int, n: int) -> int:
        """Code of input ``pin`` at conversion ``n`` (0 when not scripted)."""
        waveform = self.inputs.get(pin)
        code = 0 if waveform is None else _at(waveform, n)
        return max(0, min(self.full_scale, code))

    def convert(self, single_ended: bool, channel: int, n: int) -> int:
        """The code the chip answers for a request, at conversion ``n``."""
        if single_ended:
            return self.input_code(channel, n)
        low, high = channel & 6, (channel & 6) | 1
        plus, minus = (high, low) if channel & 1 else (low, high)
        return max(0, self.input_code(plus, n) - self.input_code(minus, n))

    def on_start(self) -> None:
        super().on_start()
        self._start_bit_at = None

    def on_bit(self) -> None:
        if self._start_bit_at is None:
            if self.rx_buf[-1]:
                self._start_bit_at = self.rx_bit
            return
        if self.rx_bit == self._start_bit_at + 4:
            sgl, d2, d1, d0 = self.rx_buf[-4:]
            single_ended, channel = bool(sgl), (d2 << 2) | (d1 << 1) | d0
            if self.fail_conversions > 0:
                self.fail_conversions -= 1
                raise OSError(5, "Input/output error (fake)")
            code = self.convert(single_ended, channel, len(self.conversions))
            self.conversions.append((single_ended, channel))
            # One clock to finish sampling, a null bit, then the result MSB first.
            self.tx_word(code, self.bits + 2)


class FakeMCP3208(FakeMCP3008):
    """The 12-bit MCP3208: same request bits, earlier in the frame, 12 result bits."""

    bits = 12


# -- MPU-6050 ------------------------------------------------------------------------------

SMPLRT_DIV = 0x19
CONFIG = 0x1A
ACCEL_CONFIG = 0x1C
ACCEL_CONFIG2 = 0x1D
FIFO_EN = 0x23
INT_ENABLE = 0x38
INT_STATUS = 0x3A
USER_CTRL = 0x6A
PWR_MGMT_1 = 0x6B
FIFO_COUNTH = 0x72
FIFO_COUNTL = 0x73
FIFO_R_W = 0x74
WHO_AM_I = 0x75

#: Sample number -> accelerometer (x, y, z) in raw int16 counts.
AccelWaveform = Callable[[int], tuple[int, int, int]]


class FakeMPU6050:
    """An MPU-6050 (or, with ``who_am_i=0x70, fifo_size=512``, an MPU-6500) behind an SMBus.

    Implements the ``smbus2.SMBus`` methods ``read_byte_data``, ``write_byte_data``,
    ``read_i2c_block_data``, ``write_i2c_block_data``, ``read_word_data`` and ``close`` over a
    128-register map. It powers up asleep (PWR_MGMT_1 = 0x40). The test drives time: each
    :meth:`produce` makes the chip take ``n`` samples from ``waveform``; they enter the FIFO
    (6 big-endian bytes each) only while awake with USER_CTRL.FIFO_EN and FIFO_EN.ACCEL set.
    Past ``fifo_size`` bytes the oldest bytes are lost and INT_STATUS bit 4 is set (cleared
    when INT_STATUS is read). USER_CTRL.FIFO_RESET empties the FIFO only when written with
    FIFO_EN 0, as on the chip. :meth:`fail_next` makes the next bus calls raise OSError 121.
    """

    def __init__(
        self,
        waveform: AccelWaveform | None = None,
        *,
        address: int = 0x68,
        who_am_i: int = 0x68,
        fifo_size: int = 1024,
    ) -> None:
        self.waveform: AccelWaveform = waveform or (lambda n: (0, 0, 16384))
        self.address = address
        self.fifo_size = fifo_size
        self.regs = bytearray(128)
        self.regs[PWR_MGMT_1] = 0x40
        self.regs[WHO_AM_I] = who_am_i
        self.writes: list[tuple[int, int]] = []
        self.fifo = bytearray()
        self.produced = 0
        self.fifo_resets = 0
        self.closed = False
        self._failures = 0
        self._fail_register: int | None = None
        self._lock = threading.Lock()

    # -- what the test drives -------------------------------------------------------------

    @property
    def fifo_enabled(self) -> bool:
        """True when samples go into the FIFO."""
        awake = not self.regs[PWR_MGMT_1] & 0x40
        return awake and bool(self.regs[USER_CTRL] & 0x40) and bool(self.regs[FIFO_EN] & 0x08)

    @property
    def rate_hz(self) -> float:
        """Sample rate the registers configure: 1 kHz (8 kHz with the DLPF off) / (1 + div)."""
        base = 1000.0 if 1 <= (self.regs[CONFIG] & 7) <= 6 else 8000.0
        return base / (1 + self.regs[SMPLRT_DIV])

    def produce(self, n: int) -> None:
        """The chip takes ``n`` samples (numbered on from :attr:`produced`)."""
        with self._lock:
            for _ in range(n):
                number, self.produced = self.produced, self.produced + 1
                if not self.fifo_enabled:
                    continue
                for code in self.waveform(number):
                    self.fifo += int(code).to_bytes(2, "big", signed=True)
                if len(self.fifo) > self.fifo_size:
                    del self.fifo[: len(self.fifo) - self.fifo_size]
                    self.regs[INT_STATUS] |= 0x10

    def fail_next(self, calls: int, register: int | None = None) -> None:
        """Make the next ``calls`` bus calls (on ``register`` only, if given) raise OSError 121."""
        with self._lock:
            self._failures = calls
            self._fail_register = register

    def written(self, register: int) -> list[int]:
        """Every value written to ``register``, in order."""
        return [v for r, v in self.writes if r == register]

    # -- the SMBus side -------------------------------------------------------------------

    def _transaction(self, i2c_addr: int, register: int) -> None:
        if self.closed:
            raise OSError(9, "Bad file descriptor (fake bus closed)")
        if i2c_addr != self.address:
            raise OSError(121, "Remote I/O error (no device at that address)")
        if self._failures > 0 and self._fail_register in (None, register):
            self._failures -= 1
            raise OSError(121, "Remote I/O error (fake)")

    def _read_register(self, register: int) -> int:
        if register == FIFO_R_W:
            if not self.fifo:
                return 0
            value = self.fifo[0]
            del self.fifo[0]
            return value
        if register == FIFO_COUNTH:
            return len(self.fifo) >> 8
        if register == FIFO_COUNTL:
            return len(self.fifo) & 0xFF
        value = self.regs[register]
        if register == INT_STATUS:
            self.regs[INT_STATUS] = 0
        return value

    def _write_register(self, register: int, value: int) -> None:
        assert 0 <= value <= 0xFF, value
        self.writes.append((register, value))
        if register == USER_CTRL:
            if value & 0x04 and not value & 0x40:
                self.fifo.clear()
                self.fifo_resets += 1
            value &= ~0x04  # FIFO_RESET clears itself
        elif register == PWR_MGMT_1 and value & 0x80:  # DEVICE_RESET
            who = self.regs[WHO_AM_I]
            self.regs[:] = bytes(128)
            self.regs[PWR_MGMT_1], self.regs[WHO_AM_I] = 0x40, who
            self.fifo.clear()
            return
        elif register in (WHO_AM_I, INT_STATUS, FIFO_COUNTH, FIFO_COUNTL):
            return  # read-only
        self.regs[register] = value

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        with self._lock:
            self._transaction(i2c_addr, register)
            return self._read_register(register)

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        with self._lock:
            self._transaction(i2c_addr, register)
            self._write_register(register, value)

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        if not 1 <= length <= 32:
            raise ValueError("SMBus block reads are 1..32 bytes")
        with self._lock:
            self._transaction(i2c_addr, register)
            if register == FIFO_R_W:  # the FIFO register does not auto-increment
                return [self._read_register(FIFO_R_W) for _ in range(length)]
            return [self._read_register(register + i) for i in range(length)]

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: Sequence[int], force: bool | None = None
    ) -> None:
        with self._lock:
            self._transaction(i2c_addr, register)
            for i, value in enumerate(data):
                self._write_register(register + i, value)

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """SMBus word read: low byte from ``register``, high byte from the next one."""
        with self._lock:
            self._transaction(i2c_addr, register)
            low = self._read_register(register)
            return low | (self._read_register(register + 1) << 8)

    def close(self) -> None:
        self.closed = True
