"""ImuSource: an MPU-6050/MPU-6500 accelerometer on the bed frame, read over I2C from its FIFO."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, Protocol, TypeVar

import numpy as np

from hardware.errors import SensorError
from hardware.threaded import ThreadedSource
from hardware.timing import SettingError, check_range

logger = logging.getLogger(__name__)

# Register map (MPU-6000/6050 and MPU-6500 register maps; same addresses on both).
SMPLRT_DIV = 0x19
CONFIG = 0x1A
ACCEL_CONFIG = 0x1C
ACCEL_CONFIG2 = 0x1D  # MPU-6500 only: accelerometer low-pass filter
FIFO_EN = 0x23
INT_ENABLE = 0x38
INT_STATUS = 0x3A
USER_CTRL = 0x6A
PWR_MGMT_1 = 0x6B
FIFO_COUNTH = 0x72
FIFO_R_W = 0x74
WHO_AM_I = 0x75

# Bits.
PWR_CLKSEL_PLL_X = 0x01  # awake (SLEEP bit 6 clear), clocked from the X gyro PLL
FIFO_EN_ACCEL = 0x08  # FIFO_EN: accelerometer X, Y, Z into the FIFO
USER_CTRL_FIFO_EN = 0x40
USER_CTRL_FIFO_RESET = 0x04  # acts only while USER_CTRL.FIFO_EN is 0; clears itself
INT_FIFO_OFLOW = 0x10  # INT_ENABLE / INT_STATUS bit 4; INT_STATUS clears when read

#: WHO_AM_I value -> (model, FIFO size in bytes).
CHIPS: dict[int, tuple[str, int]] = {0x68: ("MPU-6050", 1024), 0x70: ("MPU-6500", 512)}
#: Full-scale range in g -> ACCEL_CONFIG.AFS_SEL.
ACCEL_RANGES_G: dict[int, int] = {2: 0, 4: 1, 8: 2, 16: 3}
#: DLPF_CFG -> accelerometer bandwidth in Hz (MPU-6050 register map; the 6500 is within 10 %).
DLPF_BANDWIDTH_HZ: dict[int, float] = {1: 184.0, 2: 94.0, 3: 44.0, 4: 21.0, 5: 10.0, 6: 5.0}
#: Internal sample clock with the DLPF on (DLPF_CFG 1..6), divided by 1 + SMPLRT_DIV.
BASE_RATE_HZ = 1000.0
BYTES_PER_SAMPLE = 6  # accel X, Y, Z as big-endian int16
#: Largest FIFO burst we read at once: SMBus block reads stop at 32 bytes; keep whole samples.
FIFO_BURST_BYTES = 30
MIN_RATE_HZ = 10.0
MAX_RATE_HZ = 1000.0

Axis = Literal["x", "y", "z", "magnitude"]
AXES: tuple[str, ...] = ("x", "y", "z", "magnitude")
T = TypeVar("T")


class I2CBus(Protocol):
    """The part of ``smbus2.SMBus`` we use (so a fake can stand in for it)."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def close(self) -> None: ...


def lsb_per_g(accel_range_g: int) -> float:
    """Counts per g at a full-scale range: 16384 at +-2 g, 8192 at +-4 g, and so on."""
    return 16384.0 / (accel_range_g // 2)


def auto_dlpf_cfg(rate_hz: float) -> int:
    """The widest low-pass filter whose bandwidth stays below the Nyquist frequency."""
    for cfg in sorted(DLPF_BANDWIDTH_HZ):
        if DLPF_BANDWIDTH_HZ[cfg] < rate_hz / 2.0:
            return cfg
    return max(DLPF_BANDWIDTH_HZ)


class ImuSource(ThreadedSource):
    """Acceleration of one axis (or the magnitude), in g, from an MPU-6050/6500 FIFO.

    The chip samples on its own clock into its FIFO at ``rate_hz`` (1 kHz / (1 + SMPLRT_DIV),
    so ``rate_hz`` must divide 1000); a thread drains the FIFO every ``poll_s`` in bursts, so
    sample ``i`` is at exactly ``i / rate_hz`` after the FIFO started (the chip's clock, not
    the Pi's: its tolerance is about 1 %, visible as ``stats().achieved_rate_hz``).
    ``block.t0 = start_utc + index / rate_hz``.

    If the FIFO overflows (INT_STATUS bit 4, or the count reaches the FIFO size) it is reset,
    the overflow counted in ``stats().overruns`` and the samples lost, estimated from the
    monotonic clock (to within a sample period), in ``stats().dropped_samples``. With
    ``fill_gaps`` (the default) the lost samples are filled by repeating the last sample, so
    the stream stays contiguous and sample counting keeps time; with ``fill_gaps=False``
    ``block.index`` jumps over the gap. Bus errors (``OSError``) are retried ``bus_retries``
    times (a failed FIFO burst is recovered like an overflow, since the FIFO may have moved);
    after that the iterator raises SensorError.

    The constructor talks to the chip (a few ms of blocking I2C: call it before the loop
    runs or through ``asyncio.to_thread``): it checks WHO_AM_I (0x68 MPU-6050, 0x70 MPU-6500,
    else SensorError naming the value) before writing anything, then wakes the chip and sets
    the low-pass filter, rate divider, range and FIFO source. ``smbus`` may be injected (a
    test fake or a shared bus); it is then left open by :meth:`close`. ``clock`` is the
    monotonic clock used for anchoring and gap estimates.
    """

    def __init__(
        self,
        *,
        bus: int = 1,
        address: int = 0x68,
        axis: Axis = "magnitude",
        rate_hz: float = 100.0,
        block_s: float = 0.1,
        accel_range_g: int = 2,
        dlpf_cfg: int | None = None,
        poll_s: float | None = None,
        queue_blocks: int = 64,
        bus_retries: int = 3,
        fill_gaps: bool = True,
        smbus: I2CBus | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if address not in (0x68, 0x69):
            raise SettingError("address", f"must be 0x68 or 0x69 (AD0 low/high), got {address!r}")
        if axis not in AXES:
            raise SettingError("axis", f"must be one of {AXES}, got {axis!r}")
        check_range("rate_hz", rate_hz, MIN_RATE_HZ, MAX_RATE_HZ, "Hz")
        divider = round(BASE_RATE_HZ / rate_hz)
        if abs(BASE_RATE_HZ / divider - rate_hz) > 1e-6 * rate_hz:
            raise SettingError(
                "rate_hz",
                f"must be 1000/N Hz on the chip's 1 kHz clock, got {rate_hz!r} "
                f"(nearest: {BASE_RATE_HZ / divider:g} Hz)",
            )
        check_range("block_s", block_s, 1.0 / rate_hz, 10.0, "s")
        if accel_range_g not in ACCEL_RANGES_G:
            raise SettingError(
                "accel_range_g", f"must be one of {sorted(ACCEL_RANGES_G)}, got {accel_range_g!r}"
            )
        if dlpf_cfg is not None and dlpf_cfg not in DLPF_BANDWIDTH_HZ:
            raise SettingError("dlpf_cfg", f"must be 1..6, got {dlpf_cfg!r}")
        if bus_retries < 0:
            raise SettingError("bus_retries", f"must be >= 0, got {bus_retries!r}")
        self._bus_number = bus
        self._address = address
        self._axis: Axis = axis
        self._init_threaded(rate_hz, block_s, queue_blocks, clock)
        self._thread_name = "bedside-imu"
        self._divider = divider
        self._accel_range_g = accel_range_g
        self._lsb_per_g = lsb_per_g(accel_range_g)
        self._dlpf_cfg = auto_dlpf_cfg(rate_hz) if dlpf_cfg is None else dlpf_cfg
        self._bus_retries = bus_retries
        self._fill_gaps = fill_gaps
        self._pending_fill = 0  # lost samples still to fill, once the next real one is read
        self._last: float | None = None
        self._start_s = 0.0
        self._index = 0  # stream index of the next sample read from the FIFO
        self._buf = np.empty(self._block_n, dtype=np.float32)
        self._fill = 0
        self._owns_bus = smbus is None
        self._bus: I2CBus = self._open_bus() if smbus is None else smbus
        try:
            self._model, self._fifo_size = self._configure()
        except BaseException:
            if self._owns_bus:
                self._bus.close()
            raise
        capacity_s = (self._fifo_size // BYTES_PER_SAMPLE) / self._rate_hz
        self._poll_s = min(block_s / 2.0, capacity_s / 4.0) if poll_s is None else poll_s

    # -- set-up ---------------------------------------------------------------------------

    def _open_bus(self) -> I2CBus:
        from smbus2 import SMBus

        try:
            bus: I2CBus = SMBus(self._bus_number)
        except OSError as exc:
            raise SensorError(f"cannot open /dev/i2c-{self._bus_number} (is I2C enabled?): {exc}") from exc
        return bus

    def _configure(self) -> tuple[str, int]:
        addr = self._address
        who = self._retry("read WHO_AM_I", self._bus.read_byte_data, addr, WHO_AM_I)
        if who not in CHIPS:
            raise SensorError(
                f"unexpected WHO_AM_I 0x{who:02x} at address 0x{addr:02x} on I2C bus "
                f"{self._bus_number}: expected 0x68 (MPU-6050) or 0x70 (MPU-6500)"
            )
        model, fifo_size = CHIPS[who]
        writes = [
            ("wake (PWR_MGMT_1)", PWR_MGMT_1, PWR_CLKSEL_PLL_X),
            ("stop FIFO (USER_CTRL)", USER_CTRL, 0),
            ("FIFO sources off (FIFO_EN)", FIFO_EN, 0),
            ("low-pass filter (CONFIG)", CONFIG, self._dlpf_cfg),
            ("rate divider (SMPLRT_DIV)", SMPLRT_DIV, self._divider - 1),
            ("range (ACCEL_CONFIG)", ACCEL_CONFIG, ACCEL_RANGES_G[self._accel_range_g] << 3),
            ("overflow flag (INT_ENABLE)", INT_ENABLE, INT_FIFO_OFLOW),
            ("accel into FIFO (FIFO_EN)", FIFO_EN, FIFO_EN_ACCEL),
        ]
        if model == "MPU-6500":  # its accelerometer has its own filter register
            writes.insert(4, ("accel low-pass filter (ACCEL_CONFIG2)", ACCEL_CONFIG2, self._dlpf_cfg))
        for what, register, value in writes:
            self._retry(what, self._bus.write_byte_data, addr, register, value)
        logger.info(
            "%s at 0x%02x on bus %d: %g Hz, +-%d g, DLPF %d (%g Hz), axis %s",
            model,
            addr,
            self._bus_number,
            self._rate_hz,
            self._accel_range_g,
            self._dlpf_cfg,
            DLPF_BANDWIDTH_HZ[self._dlpf_cfg],
            self._axis,
        )
        return model, fifo_size

    def _retry(self, what: str, fn: Callable[..., T], *args: int) -> T:
        """Call a bus method, retrying OSError ``bus_retries`` times; then SensorError."""
        for attempt in range(self._bus_retries + 1):
            try:
                return fn(*args)
            except OSError as exc:
                if attempt == self._bus_retries:
                    raise SensorError(
                        f"I2C bus {self._bus_number} address 0x{self._address:02x}: {what} "
                        f"failed {attempt + 1} times: {exc}"
                    ) from exc
                self._timer.bus_error()
                logger.warning("I2C %s failed (%s), retrying", what, exc)
                self._stopping.wait(0.002 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- the public side ------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"<ImuSource {getattr(self, '_model', '?')} bus {self._bus_number} "
            f"0x{self._address:02x} {self._axis} at {self._rate_hz:g} Hz>"
        )

    @property
    def model(self) -> str:
        """``"MPU-6050"`` or ``"MPU-6500"``, from WHO_AM_I."""
        return self._model

    @property
    def poll_s(self) -> float:
        """How often the thread drains the FIFO, in seconds."""
        return self._poll_s

    def _release(self) -> None:
        try:
            self._bus.write_byte_data(self._address, USER_CTRL, 0)
        except OSError as exc:
            logger.warning("could not stop the IMU FIFO: %s", exc)
        if self._owns_bus:
            self._bus.close()

    # -- the FIFO thread ------------------------------------------------------------------

    def _reset_fifo(self) -> None:
        addr, write = self._address, self._bus.write_byte_data
        self._retry("stop FIFO", write, addr, USER_CTRL, 0)
        self._retry("reset FIFO", write, addr, USER_CTRL, USER_CTRL_FIFO_RESET)
        self._retry("clear INT_STATUS", self._bus.read_byte_data, addr, INT_STATUS)
        self._retry("start FIFO", write, addr, USER_CTRL, USER_CTRL_FIFO_EN)

    def _flush(self) -> None:
        if self._fill:
            self._emit(self._buf[: self._fill].copy(), self._index - self._fill)
            self._fill = 0

    def _append(self, values: np.ndarray) -> None:
        """Add samples to the block being filled, handing over each full block."""
        pos = 0
        while pos < values.size:
            take = min(self._block_n - self._fill, values.size - pos)
            self._buf[self._fill : self._fill + take] = values[pos : pos + take]
            self._fill += take
            self._index += take
            pos += take
            if self._fill == self._block_n:
                self._emit(self._buf.copy(), self._index - self._block_n)
                self._fill = 0

    def _convert(self, data: bytes) -> np.ndarray:
        """FIFO bytes (X, Y, Z big-endian int16 per sample) to the chosen axis, in g."""
        xyz = np.frombuffer(data, dtype=">i2").reshape(-1, 3).astype(np.float32)
        xyz /= np.float32(self._lsb_per_g)
        if self._axis == "magnitude":
            return np.sqrt(np.einsum("ij,ij->i", xyz, xyz)).astype(np.float32)
        return np.ascontiguousarray(xyz[:, "xyz".index(self._axis)])

    def _recover(self, reason: str) -> None:
        """Reset the FIFO after an overflow or a broken burst; account for the lost samples."""
        self._reset_fifo()
        expected = round((self._clock() - self._start_s) * self._rate_hz)
        lost = max(0, expected - self._index - self._pending_fill)
        self._timer.overrun(lost)
        if self._fill_gaps:  # filled with the last sample when the next real one arrives
            self._pending_fill += lost
        else:
            self._flush()
            self._index += lost
        logger.warning("IMU %s: FIFO reset, about %d samples lost", reason, lost)

    def _read_fifo(self, n_bytes: int) -> bytes:
        """Read ``n_bytes`` (whole samples) from FIFO_R_W in bursts; OSError propagates."""
        out = bytearray()
        while len(out) < n_bytes:
            length = min(FIFO_BURST_BYTES, n_bytes - len(out))
            out += bytes(self._bus.read_i2c_block_data(self._address, FIFO_R_W, length))
        return bytes(out)

    def _poll(self) -> None:
        addr = self._address
        status = self._retry("read INT_STATUS", self._bus.read_byte_data, addr, INT_STATUS)
        high, low = self._retry("read FIFO_COUNT", self._bus.read_i2c_block_data, addr, FIFO_COUNTH, 2)
        count = (high << 8) | low
        if status & INT_FIFO_OFLOW or count >= self._fifo_size:
            self._recover(f"FIFO overflow ({count} bytes)")
            return
        n = count // BYTES_PER_SAMPLE
        if n == 0:
            return
        try:
            data = self._read_fifo(n * BYTES_PER_SAMPLE)
        except OSError as exc:
            self._timer.bus_error()
            self._recover(f"bus error in a FIFO burst ({exc})")
            return
        self._timer.count(n, self._clock())  # before the blocks go: stats never lag them
        values = self._convert(data)
        if self._pending_fill:
            hold = values[0] if self._last is None else self._last
            values = np.concatenate([np.full(self._pending_fill, hold, dtype=np.float32), values])
            self._pending_fill = 0
        self._last = float(values[-1])
        self._append(values)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._reset_fifo()
            self._start_s = self._clock()
            self._start_utc = datetime.now(UTC)
            self._timer.start(self._start_s)
            logger.info("IMU sampling started: %r", self)
            while not self._stopping.wait(self._poll_s):
                self._poll()
        except Exception as exc:
            logger.exception("IMU reader stopped by an error")
            error = exc
            if not isinstance(exc, SensorError):
                error = SensorError(f"IMU reader: {exc!r}")
                error.__cause__ = exc
        if self._start_utc is not None:
            self._flush()
        self._handoff.finish_threadsafe(error)
