"""Recorded signals (CSV, NumPy .npy) loaded strictly and replayed through the SampleSource protocol."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import math
import os
import time
import warnings
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from hardware.block import Block
from hardware.errors import RecordingError

logger = logging.getLogger(__name__)

MAX_RECORDING_BYTES: Final = 2 * 1024**3
"""Files larger than this (2 GiB) are refused rather than risk exhausting a Pi's memory."""

MIN_RATE_HZ: Final = 1e-3
"""Slowest sample rate we accept (one sample every ~17 min; actigraphy epochs are 1/min)."""

MAX_RATE_HZ: Final = 100_000.0
"""Fastest sample rate we accept; anything above is a wrong rate or a wrong time unit."""

TIME_UNITS_S: Final[dict[str, float]] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
"""Seconds per unit of a time column, by the ``time_unit`` name."""

TIME_COLUMN_NAMES: Final = frozenset(
    {"time", "timestamp", "epoch", "t", "ts", "time_s", "time_ms", "t_s", "t_ms", "epoch_ms"}
)
"""Header names (case-insensitive) taken as the time column when none is named."""

NOT_SIGNAL_NAMES: Final = frozenset(
    {"id", "index", "idx", "sample", "year", "month", "day", "hour", "minute", "second"}
    | {"millisecond", "date", "datetime"}
)
"""Header names (case-insensitive) never picked as the default signal column."""

_CSV_EXTENSIONS: Final = (".csv", ".tsv", ".txt")
_NPY_EXTENSIONS: Final = (".npy",)
_MAX_SHOWN_COLUMNS: Final = 40
_EPOCH_MIN_S: Final = 1e8  # 1973-03-03: a time column above this (in seconds) is Unix time
_EPOCH_MAX_S: Final = 4.1e9  # 2099-12-03


@dataclass(frozen=True, slots=True)
class Recording:
    """A recorded single-channel signal in memory.

    ``samples`` is float32 with shape ``(n,)`` and holds no NaN or inf; ``rate_hz`` is the
    sample rate; ``start`` is the UTC time of the first sample when the file says it (an
    epoch time column), else None; ``source`` describes where the samples came from (path
    and column) for logs; ``column`` is the name (or index, as text) of the column used.
    """

    samples: np.ndarray
    rate_hz: float
    start: datetime | None
    source: str
    column: str

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.n / self.rate_hz


def load_recording(
    path: str | os.PathLike[str],
    *,
    column: str | int | None = None,
    rate_hz: float | None = None,
    time_column: str | None = None,
    time_unit: str = "ms",
) -> Recording:
    """Load one signal column of a CSV/TSV (``.csv``, ``.tsv``, ``.txt``) or NumPy ``.npy`` file.

    CSV: the first non-blank line is the header. ``column`` names the signal column (or is
    its 0-based position); by default the first numeric column that is neither the time
    column nor an obvious counter/date part (``NOT_SIGNAL_NAMES``). ``time_column`` names a
    time column in ``time_unit`` (``s``, ``ms``, ``us``, ``ns``); if not given, a column with
    a usual time name (``TIME_COLUMN_NAMES``) is used when present. The rate is ``rate_hz``
    if given, else 1 / the median time step. A time column in Unix time gives ``start``.

    NPY: a 1-D numeric array, or 2-D with ``column`` the 0-based column index (or a field
    name of a structured array); ``rate_hz`` is required.

    Runs in the caller's thread and blocks while reading (call it before the loop starts or
    in an executor). Memory: about 8 bytes per row for each column read, plus the float32
    result; files over ``MAX_RECORDING_BYTES`` are refused.

    Raises RecordingError naming the problem: missing, unreadable, too large, empty or
    header-only files; unknown columns (listing those there are); non-numeric values (with
    the line number); NaN/inf values (how many, and the first line); a missing, absurd or
    uninferable rate; a time column that goes backwards; an unsupported extension.
    """
    p = Path(path)
    unit_s = TIME_UNITS_S.get(time_unit)
    if unit_s is None:
        raise RecordingError(f"unknown time_unit {time_unit!r}; use one of {', '.join(TIME_UNITS_S)}")
    if rate_hz is not None:
        _check_rate(rate_hz, f"rate_hz={rate_hz!r}")
    _check_file(p)
    suffix = p.suffix.lower()
    if suffix in _NPY_EXTENSIONS:
        return _load_npy(p, column=column, rate_hz=rate_hz)
    if suffix in _CSV_EXTENSIONS:
        return _load_csv(p, column=column, rate_hz=rate_hz, time_column=time_column, unit_s=unit_s)
    supported = ", ".join(_CSV_EXTENSIONS + _NPY_EXTENSIONS)
    raise RecordingError(f"{p}: unsupported file type {suffix or '(no extension)'!r}; supported: {supported}")


def _check_file(p: Path) -> None:
    """Raise unless ``p`` exists, is a regular file, isn't empty and isn't too big."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise RecordingError(f"{p}: file not found") from None
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read file: {exc.strerror or exc}") from exc
    if not p.is_file():
        raise RecordingError(f"{p}: not a regular file (cannot read a directory or device)")
    if st.st_size > MAX_RECORDING_BYTES:
        raise RecordingError(
            f"{p}: file is too large ({st.st_size / 1024**3:.1f} GiB; the limit is "
            f"{MAX_RECORDING_BYTES / 1024**3:.0f} GiB): split it or downsample it first"
        )
    if st.st_size == 0:
        raise RecordingError(f"{p}: file is empty")


def _check_rate(rate_hz: float, what: str) -> float:
    """Return ``rate_hz`` as a float if it is a plausible sample rate, else raise."""
    try:
        value = float(rate_hz)
    except (TypeError, ValueError):
        raise RecordingError(f"{what}: the sample rate must be a number") from None
    if not math.isfinite(value) or not MIN_RATE_HZ <= value <= MAX_RATE_HZ:
        raise RecordingError(
            f"{what}: absurd sample rate {value!r} Hz (accepted: {MIN_RATE_HZ:g} to {MAX_RATE_HZ:g} Hz)"
        )
    return value


def _check_finite(values: np.ndarray, what: str) -> None:
    """Raise if ``values`` holds NaN or inf, saying how many and the first data row (1-based)."""
    bad = ~np.isfinite(values)
    count = int(np.count_nonzero(bad))
    if count:
        first = int(np.argmax(bad))
        raise RecordingError(
            f"{what}: {count} NaN/inf value(s), the first at data row {first + 1} "
            f"(value {float(values[first])!r}); fix or cut the file, they are not dropped"
        )


def _show_columns(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_SHOWN_COLUMNS])
    more = len(names) - _MAX_SHOWN_COLUMNS
    return shown + (f" and {more} more" if more > 0 else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_csv(
    p: Path,
    *,
    column: str | int | None,
    rate_hz: float | None,
    time_column: str | None,
    unit_s: float,
) -> Recording:
    """Read the header and the first data row, pick the columns, then read them in bulk."""
    header_line, header_lineno, first_row = _read_head(p)
    delimiter = max((",", ";", "\t"), key=header_line.count)
    header = [h.strip() for h in _parse_line(p, header_line, header_lineno, delimiter)]
    if all(_is_number(h) for h in header if h):
        raise RecordingError(
            f"{p}: line {header_lineno} looks like data, not a header row; "
            "add a header line naming the columns"
        )
    if first_row is None:
        raise RecordingError(f"{p}: has a header row but no data rows")
    row = [f.strip() for f in _parse_line(p, first_row, header_lineno + 1, delimiter)]

    t_idx = _pick_time_column(p, header, time_column)
    v_idx = _pick_value_column(p, header, row, column, t_idx)
    usecols = (v_idx,) if t_idx is None else (v_idx, t_idx)
    data = _read_columns(p, delimiter, header_lineno, usecols, header)
    values = data[0]
    name = header[v_idx] or str(v_idx)
    _check_finite(values, f"{p}: column {name!r}")

    start: datetime | None = None
    inferred: float | None = None
    tname = header[t_idx] if t_idx is not None else ""
    if t_idx is not None:
        times_s = data[1] * unit_s
        _check_finite(times_s, f"{p}: time column {tname!r}")
        steps = np.diff(data[1]) * unit_s  # differences first: epoch ms lose no precision
        if steps.size and np.any(steps < 0):
            k = int(np.argmax(steps < 0))
            raise RecordingError(
                f"{p}: time column {tname!r} is not monotonic: it goes backwards at data row "
                f"{k + 2} ({float(data[1][k + 1])!r} after {float(data[1][k])!r})"
            )
        if _EPOCH_MIN_S <= times_s[0] <= _EPOCH_MAX_S:
            start = datetime.fromtimestamp(float(times_s[0]), tz=UTC)
        if steps.size:
            median_s = float(np.median(steps))
            if median_s > 0:
                inferred = 1.0 / median_s
                irregular = int(np.count_nonzero(steps > 1.5 * median_s))
                if irregular:
                    logger.warning(
                        "%s: %d gap(s) longer than 1.5 x the median step of %.6g s; "
                        "replay assumes a constant rate",
                        p,
                        irregular,
                        median_s,
                    )
    if rate_hz is not None:
        rate = float(rate_hz)
        if inferred is not None and abs(rate / inferred - 1.0) > 0.01:
            logger.warning(
                "%s: rate_hz=%g given, but time column %r says %.6g Hz; using rate_hz",
                p,
                rate,
                tname,
                inferred,
            )
    elif inferred is not None:
        rate = _check_rate(
            inferred,
            f"{p}: rate inferred from time column {tname!r} with "
            f"time_unit {_unit_name(unit_s)!r} (wrong unit?)",
        )
    elif t_idx is not None:
        raise RecordingError(
            f"{p}: cannot infer the sample rate: time column {tname!r} has no "
            "positive median step; pass rate_hz"
        )
    else:
        raise RecordingError(
            f"{p}: no sample rate: pass rate_hz, or time_column naming a time column "
            f"(columns are {_show_columns(header)})"
        )
    logger.info("loaded %s column %r: %d samples at %g Hz", p, name, values.size, rate)
    return Recording(
        samples=values.astype(np.float32),
        rate_hz=rate,
        start=start,
        source=f"{p} [{name}]",
        column=name,
    )


def _unit_name(unit_s: float) -> str:
    return next(k for k, v in TIME_UNITS_S.items() if v == unit_s)


def _csv_problem(p: Path, lineno: int, exc: csv.Error) -> RecordingError:
    """The unreadable-recording error for a line the csv module refuses (a field over its limit of
    ``csv.field_size_limit()`` characters, a stray quote)."""
    if "field limit" in str(exc):
        return RecordingError(
            f"{p}: line {lineno}: a field is longer than {csv.field_size_limit()} characters "
            "(not a recording's number or name)"
        )
    return RecordingError(f"{p}: line {lineno}: malformed CSV: {exc}")


def _parse_line(p: Path, line: str, lineno: int, delimiter: str) -> list[str]:
    """The fields of one CSV line; RecordingError naming the line when the csv module refuses it."""
    try:
        return next(csv.reader([line], delimiter=delimiter))
    except csv.Error as exc:
        raise _csv_problem(p, lineno, exc) from None


def _read_head(p: Path) -> tuple[str, int, str | None]:
    """Return (header line, its 1-based line number, first data line or None)."""
    try:
        with p.open(encoding="utf-8-sig", newline="") as f:
            header: str | None = None
            header_lineno = 0
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                if header is None:
                    header, header_lineno = line.rstrip("\r\n"), lineno
                    continue
                return header, header_lineno, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{p}: not a UTF-8 text file ({exc.reason})") from exc
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read file: {exc.strerror or exc}") from exc
    if header is None:
        raise RecordingError(f"{p}: file is empty (only blank lines)")
    return header, header_lineno, None


def _find_column(header: list[str], wanted: str) -> int | None:
    if wanted in header:
        return header.index(wanted)
    folded = [h.casefold() for h in header]
    key = wanted.strip().casefold()
    return folded.index(key) if key in folded else None


def _pick_time_column(p: Path, header: list[str], time_column: str | None) -> int | None:
    if time_column is not None:
        idx = _find_column(header, time_column)
        if idx is None:
            raise RecordingError(f"{p}: no time column {time_column!r}; columns are {_show_columns(header)}")
        return idx
    for idx, name in enumerate(header):
        if name.casefold() in TIME_COLUMN_NAMES:
            return idx
    return None


def _pick_value_column(
    p: Path, header: list[str], row: list[str], column: str | int | None, t_idx: int | None
) -> int:
    if isinstance(column, int):
        if not 0 <= column < len(header):
            raise RecordingError(
                f"{p}: no column {column} (there are {len(header)}: {_show_columns(header)})"
            )
        return column
    if column is not None:
        idx = _find_column(header, column)
        if idx is None:
            raise RecordingError(f"{p}: unknown column {column!r}; columns are {_show_columns(header)}")
        return idx
    for idx, name in enumerate(header):
        if idx == t_idx or name.casefold() in NOT_SIGNAL_NAMES or idx >= len(row):
            continue
        if _is_number(row[idx]):
            return idx
    raise RecordingError(
        f"{p}: no numeric signal column found in the first data row; name one with column= "
        f"(columns are {_show_columns(header)})"
    )


def _read_columns(
    p: Path, delimiter: str, header_lineno: int, usecols: tuple[int, ...], header: list[str]
) -> list[np.ndarray]:
    """Read ``usecols`` as float64 arrays: numpy's C parser first, the csv module on trouble.

    The fallback handles quoted fields and, when a value really is bad, finds its line for
    the error message. Both stream the file, holding only the selected columns.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(
                p,
                delimiter=delimiter,
                skiprows=header_lineno,
                usecols=usecols,
                dtype=np.float64,
                ndmin=2,
                encoding="utf-8-sig",
                comments=None,
            )
        if arr.shape[0] > 0:
            return [np.ascontiguousarray(arr[:, k]) for k in range(len(usecols))]
    except (ValueError, UnicodeDecodeError):
        pass
    return _read_columns_csv(p, delimiter, header_lineno, usecols, header)


def _read_columns_csv(
    p: Path, delimiter: str, header_lineno: int, usecols: tuple[int, ...], header: list[str]
) -> list[np.ndarray]:
    cols = [array("d") for _ in usecols]
    need = max(usecols) + 1
    reader: Any = None
    try:
        with p.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for row in reader:
                if reader.line_num <= header_lineno or not any(x.strip() for x in row):
                    continue
                if len(row) < need:
                    raise RecordingError(
                        f"{p}: line {reader.line_num} has {len(row)} field(s), expected at least {need}"
                    )
                for out, k in zip(cols, usecols, strict=True):
                    try:
                        out.append(float(row[k]))
                    except ValueError:
                        raise RecordingError(
                            f"{p}: non-numeric value {row[k]!r} at line {reader.line_num}, "
                            f"column {header[k]!r}"
                        ) from None
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{p}: not a UTF-8 text file ({exc.reason})") from exc
    except csv.Error as exc:
        # line_num counts the lines read so far, the refused one included
        raise _csv_problem(p, reader.line_num if reader is not None else 0, exc) from None
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read file: {exc.strerror or exc}") from exc
    if len(cols[0]) == 0:
        raise RecordingError(f"{p}: has a header row but no data rows")
    return [np.frombuffer(c, dtype=np.float64) for c in cols]


def _load_npy(p: Path, *, column: str | int | None, rate_hz: float | None) -> Recording:
    """Load a .npy array memory-mapped, then copy out the one column as float32."""
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise RecordingError(f"{p}: not a plain numeric .npy file ({exc})") from exc
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read as a .npy file: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise RecordingError(f"{p}: not a .npy array")
    if arr.size == 0:
        raise RecordingError(f"{p}: array is empty (shape {arr.shape})")
    name: str
    if arr.dtype.names:
        fields = list(arr.dtype.names)
        if column is None or str(column) not in fields or arr.ndim != 1:
            raise RecordingError(
                f"{p}: structured array: name a field with column=; fields are {_show_columns(fields)}"
            )
        name = str(column)
        data = arr[name]
    elif arr.ndim == 1:
        if column not in (None, 0, "0"):
            raise RecordingError(f"{p}: 1-D array has a single column; got column={column!r} (omit it)")
        name, data = "0", arr
    elif arr.ndim == 2:
        try:
            idx = int(column) if column is not None else None
        except ValueError:
            idx = None
        if idx is None or not 0 <= idx < arr.shape[1]:
            raise RecordingError(
                f"{p}: 2-D array of shape {arr.shape}: pass column= an integer index from 0 "
                f"to {arr.shape[1] - 1} (got {column!r})"
            )
        name, data = str(idx), arr[:, idx]
    else:
        raise RecordingError(f"{p}: array has {arr.ndim} dimensions; expected 1 or 2")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise RecordingError(f"{p}: array dtype {data.dtype} is not numeric")
    if rate_hz is None:
        raise RecordingError(f"{p}: a .npy file carries no sample rate: pass rate_hz")
    samples = np.array(data, dtype=np.float32)
    _check_finite(samples, f"{p}: column {name!r} (data row = sample index + 1)")
    logger.info("loaded %s column %r: %d samples at %g Hz", p, name, samples.size, rate_hz)
    return Recording(samples=samples, rate_hz=float(rate_hz), start=None, source=f"{p} [{name}]", column=name)


class PacedSource:
    """Serves a known run of one-channel samples as Blocks, paced against ``time.monotonic()``.

    ``speed`` 1 is real time, 60 is sixty times faster, 0 as fast as possible (yielding to
    the loop between blocks). Block ``k`` is released when its last sample is due:
    ``origin + (index + n) / (rate_hz * speed)``, targets computed from the origin so there
    is no drift; a late consumer gets the overdue blocks back to back. Iterate once, on the
    asyncio loop; ``close()`` (on the same loop) ends iteration promptly, even mid-wait.
    Subclasses implement ``_read(index, n)``, which runs on the loop and must be quick.
    """

    def __init__(
        self,
        *,
        rate_hz: float,
        total_samples: int,
        start: datetime | None,
        speed: float,
        block_s: float,
    ) -> None:
        if not (math.isfinite(speed) and speed >= 0):
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed!r}")
        if not (math.isfinite(block_s) and block_s > 0):
            raise ValueError(f"block_s must be > 0 seconds, got {block_s!r}")
        if start is None:
            start = datetime.now(UTC)
        elif start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware (UTC), got naive {start!r}")
        self._rate_hz = float(rate_hz)
        self._total = int(total_samples)
        self._start = start.astimezone(UTC)
        self._speed = float(speed)
        self._block_n = max(1, round(block_s * self._rate_hz))
        self._closed = False
        self._iterated = False
        self._wake: asyncio.Event | None = None

    @property
    def rate_hz(self) -> float:
        """Samples per second."""
        return self._rate_hz

    @property
    def channels(self) -> int:
        """Always 1: these sources carry one channel."""
        return 1

    @property
    def start(self) -> datetime:
        """UTC time of sample 0."""
        return self._start

    @property
    def speed(self) -> float:
        """Replay speed: 1 real time, 0 as fast as possible."""
        return self._speed

    @property
    def block_n(self) -> int:
        """Samples per block (the last block may be shorter)."""
        return self._block_n

    @property
    def total_samples(self) -> int:
        """Samples the source yields in all, unless closed early."""
        return self._total

    def _read(self, index: int, n: int) -> np.ndarray:
        """Return samples ``index`` to ``index + n`` as float32 (runs on the loop)."""
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[Block]:
        if self._iterated:
            raise RuntimeError(f"{type(self).__name__} can be iterated only once")
        self._iterated = True
        return self._blocks()

    async def close(self) -> None:
        """Stop: the iteration ends before its next block, waking it if it is waiting."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()

    async def _blocks(self) -> AsyncIterator[Block]:
        wake = asyncio.Event()
        self._wake = wake
        rate, speed, total = self._rate_hz, self._speed, self._total
        origin = time.monotonic()
        index = 0
        while not self._closed and index < total:
            n = min(self._block_n, total - index)
            delay = origin + (index + n) / (rate * speed) - time.monotonic() if speed else 0.0
            if delay > 0:
                with contextlib.suppress(TimeoutError):  # the normal case: nobody closed us
                    await asyncio.wait_for(wake.wait(), timeout=delay)
            else:
                await asyncio.sleep(0)
            if self._closed:
                break
            samples = self._read(index, n)
            t0 = self._start + timedelta(seconds=index / rate)
            yield Block(t0=t0, index=index, rate_hz=rate, samples=samples)
            index += n
        logger.debug("%s finished after %d of %d samples", type(self).__name__, index, total)


class ReplaySource(PacedSource):
    """A Recording replayed as a SampleSource.

    ``start`` is the UTC time of the first sample: by default the recording's own start if
    it has one, else now. ``speed`` 0 (the default) replays as fast as possible, 1 in real
    time. Blocks carry copies, so consumers may modify them.
    """

    def __init__(
        self,
        recording: Recording,
        start: datetime | None = None,
        speed: float = 0.0,
        block_s: float = 0.1,
    ) -> None:
        super().__init__(
            rate_hz=recording.rate_hz,
            total_samples=recording.n,
            start=start if start is not None else recording.start,
            speed=speed,
            block_s=block_s,
        )
        self._recording = recording

    @property
    def recording(self) -> Recording:
        """The recording being replayed."""
        return self._recording

    def _read(self, index: int, n: int) -> np.ndarray:
        return self._recording.samples[index : index + n].copy()

    def __repr__(self) -> str:
        return f"ReplaySource({self._recording.source!r}, speed={self._speed:g})"
