"""Epoch activity counts from files: CamNtech/Actiwatch ``.AWD`` exports and count CSVs."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from hardware.errors import RecordingError

logger = logging.getLogger(__name__)

#: AWD epoch codes (header line 4) to epoch length in seconds.
AWD_EPOCH_CODES = {1: 15.0, 2: 30.0, 4: 60.0, 8: 120.0, 20: 300.0, 81: 2.0, 84: 5.0, 85: 10.0}
AWD_HEADER_LINES = 7


@dataclass(frozen=True, slots=True)
class EpochCounts:
    """Activity counts per epoch; ``start`` is the local (naive) start time when the file gives one."""

    counts: np.ndarray
    epoch_s: float
    start: datetime | None
    markers: np.ndarray  # epoch indices where the event-marker button was pressed
    source: str


def read_awd(path: str | Path) -> EpochCounts:
    """An ``.AWD`` file: 7 header lines (name, date, time, epoch code, age, serial, sex), then one
    count a line, optionally followed by ``M`` (a marker press). RecordingError if it is not one."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read ({exc.strerror})") from None
    if len(lines) < AWD_HEADER_LINES + 1:
        raise RecordingError(f"{p}: too short for an AWD file ({len(lines)} lines; the header alone is 7)")
    try:
        start = datetime.strptime(f"{lines[1].strip()} {lines[2].strip()}", "%d-%b-%Y %H:%M")
    except ValueError:
        raise RecordingError(f"{p}: line 2-3 should be a date and time like 23-Jan-1918 / 13:58") from None
    try:
        code = int(lines[3].strip())
    except ValueError:
        raise RecordingError(f"{p}: line 4 should be the epoch code, got {lines[3].strip()!r}") from None
    if code not in AWD_EPOCH_CODES:
        raise RecordingError(f"{p}: unknown epoch code {code} (known: {sorted(AWD_EPOCH_CODES)})")
    counts: list[float] = []
    markers: list[int] = []
    for lineno, line in enumerate(lines[AWD_HEADER_LINES:], AWD_HEADER_LINES + 1):
        parts = line.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            raise RecordingError(f"{p}: line {lineno}: count {parts[0]!r} is not a number") from None
        if not np.isfinite(value) or value < 0:
            raise RecordingError(f"{p}: line {lineno}: count {parts[0]!r} is not a non-negative number")
        if len(parts) > 1 and parts[1].upper() == "M":
            markers.append(len(counts))
        counts.append(value)
    return EpochCounts(np.array(counts), AWD_EPOCH_CODES[code], start, np.array(markers, int), str(p))


def read_counts_csv(path: str | Path, column: str, epoch_s: float) -> EpochCounts:
    """A CSV with a header and a column of counts per epoch of ``epoch_s`` seconds."""
    p = Path(path)
    reader: csv.DictReader[str] | None = None
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise RecordingError(f"{p}: empty file")
            if column not in reader.fieldnames:
                raise RecordingError(f"{p}: no column {column!r}; columns are {', '.join(reader.fieldnames)}")
            values: list[float] = []
            for row in reader:
                lineno = reader.line_num
                try:
                    v = float(row[column])
                except (TypeError, ValueError):
                    raise RecordingError(
                        f"{p}: line {lineno}: {column} {str(row[column])[:40]!r} is not numeric"
                    ) from None
                if not np.isfinite(v) or v < 0:
                    raise RecordingError(f"{p}: line {lineno}: {column} must be a non-negative number")
                values.append(v)
    except FileNotFoundError:
        raise RecordingError(f"{p}: not found") from None
    except UnicodeDecodeError:
        raise RecordingError(f"{p}: not UTF-8 text") from None
    except csv.Error as exc:  # a field over csv.field_size_limit(), a stray quote
        line = reader.reader.line_num if reader is not None else 1
        raise RecordingError(f"{p}: line {line}: malformed CSV: {exc}") from None
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not values:
        raise RecordingError(f"{p}: no data rows")
    return EpochCounts(np.array(values), float(epoch_s), None, np.zeros(0, int), str(p))
