"""CSV export of nights: one file per table (nights, events, epochs, vitals, tags, check-ins), folder or zip.

The column lists below are the contract (docs/exports.md lists them and a test pins the two
together): columns are only ever added at the end. Times are ISO 8601 UTC text with milliseconds
and a ``Z``, as stored; local dates (``night_date``) are ``YYYY-MM-DD``. Empty cells mean "not
known". The nights file carries each night's summary figures recomputed from its rows (so the
user's relabels count), with one ``count_<type>`` column per event type.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo
from pathlib import Path
from typing import Any, Final

from service.detect.types import EVENT_TYPES
from service.export import ExportError, NightNotFoundError
from service.history.load import NightData, checkins_by_date, load_night
from service.history.summary import summarize_night

NIGHT_COLUMNS: Final[tuple[str, ...]] = (
    "night_id",
    "night_date",
    "kind",
    "profile",
    "source",
    "started_at",
    "ended_at",
    "start_reason",
    "end_reason",
    "time_in_bed_min",
    "sleep_onset_latency_min",
    "total_sleep_min",
    "efficiency_pct",
    "waso_min",
    "awakenings",
    "awakenings_after_movement",
    "movements",
    "movement_index_per_h",
    "plm_series",
    "spasm_count",
    "spasm_mean_intensity",
    "spasm_max_intensity",
    "spasm_mean_duration_s",
    "spasm_max_duration_s",
    "mean_heart_bpm",
    "mean_breath_bpm",
    *(f"count_{t}" for t in EVENT_TYPES),
)
EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "night_id",
    "event_id",
    "event_type",
    "label",
    "start_at",
    "end_at",
    "duration_s",
    "intensity",
    "profile",
    "confidence",
    "cause_id",
    "details",
)
EPOCH_COLUMNS: Final[tuple[str, ...]] = ("night_id", "start_at", "duration_s", "count", "asleep", "in_bed")
VITAL_COLUMNS: Final[tuple[str, ...]] = ("night_id", "t_at", "heart_bpm", "breath_bpm")
TAG_COLUMNS: Final[tuple[str, ...]] = ("night_date", "tag", "detail", "at_local", "source", "created_at")
CHECKIN_COLUMNS: Final[tuple[str, ...]] = (
    "night_date",
    "sleep_quality",
    "spasm_severity",
    "note",
    "created_at",
    "updated_at",
)

TABLES: Final[dict[str, tuple[str, ...]]] = {
    "nights": NIGHT_COLUMNS,
    "events": EVENT_COLUMNS,
    "epochs": EPOCH_COLUMNS,
    "vitals": VITAL_COLUMNS,
    "tags": TAG_COLUMNS,
    "checkins": CHECKIN_COLUMNS,
}
"""File stem -> its columns, in the order the files are written."""

ProgressFn = Callable[[int, int], None]


def select_nights(
    conn: sqlite3.Connection,
    *,
    night_id: str | None = None,
    from_date: str | None = None,
    to_date: str | None = None,
    kind: str | None = None,
) -> list[str]:
    """Ids of the nights to export, oldest first: one night by id, or those whose ``night_date``
    lies in ``from_date``..``to_date`` (inclusive, ``YYYY-MM-DD``; either may be open).

    NightNotFoundError when ``night_id`` names no night; ExportError for a malformed date.
    """
    if night_id is not None:
        row = conn.execute("SELECT id FROM nights WHERE id = ?", (night_id,)).fetchone()
        if row is None:
            raise NightNotFoundError(f"no night with id {night_id!r} in the database")
        return [str(row[0])]
    where, params = [], []
    for name, value, op in (("from", from_date, ">="), ("to", to_date, "<=")):
        if value is not None:
            _check_date(name, value)
            where.append(f"night_date {op} ?")
            params.append(value)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    sql = "SELECT id FROM nights" + (" WHERE " + " AND ".join(where) if where else "")
    return [str(r[0]) for r in conn.execute(sql + " ORDER BY started_at, id", params)]


def night_row(data: NightData, *, tz: tzinfo | None = None) -> dict[str, Any]:
    """The nights-file row of one night (summary recomputed from its rows)."""
    n = data.night
    s = summarize_night(data, tz=tz)
    spasms = s.get("spasms") or {}
    counts = s.get("counts") or {}
    row: dict[str, Any] = {k: n.get(k) for k in ("night_date", "kind", "profile", "source", "started_at")}
    row.update({k: n.get(k) for k in ("ended_at", "start_reason", "end_reason")})
    row["night_id"] = n["id"]
    for key in NIGHT_COLUMNS:
        if key in s and key not in row:
            row[key] = s[key]
    for key in ("count", "mean_intensity", "max_intensity", "mean_duration_s", "max_duration_s"):
        row[f"spasm_{key}"] = spasms.get(key)
    for t in EVENT_TYPES:
        row[f"count_{t}"] = counts.get(t, 0)
    return row


def event_rows(data: NightData) -> Iterator[dict[str, Any]]:
    """The events-file rows of one night; ``label`` is the user's relabel (empty when none)."""
    for e in data.events:
        yield {
            **{k: e.get(k) for k in EVENT_COLUMNS},
            "event_id": e["id"],
            "details": json.dumps(e.get("details") or {}, sort_keys=True, separators=(",", ":")),
        }


def epoch_rows(data: NightData) -> Iterator[dict[str, Any]]:
    """The epochs-file rows of one night; ``asleep`` and ``in_bed`` as 1 / 0."""
    for ep in data.epochs:
        yield {**ep, "night_id": data.night["id"], "asleep": int(ep["asleep"]), "in_bed": int(ep["in_bed"])}


def iter_rows(
    conn: sqlite3.Connection,
    night_ids: Sequence[str],
    *,
    all_user_data: bool = False,
    tz: tzinfo | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(table, row)`` for every row of every table, one night at a time (memory stays per night).

    Tags and check-ins come last: those of the exported nights' dates, or all of them with
    ``all_user_data`` (a whole-history export keeps tags of dates without a recorded night).
    NightNotFoundError when an id names no night. ``conn`` comes from ``history.load.connect``.
    """
    dates: set[str] = set()
    for i, night_id in enumerate(night_ids):
        data = load_night(conn, night_id)
        if data is None:
            raise NightNotFoundError(f"no night with id {night_id!r} in the database")
        dates.add(str(data.night.get("night_date")))
        yield "nights", night_row(data, tz=tz)
        for row in event_rows(data):
            yield "events", row
        for row in epoch_rows(data):
            yield "epochs", row
        for v in data.vitals:
            yield "vitals", {**v, "night_id": night_id}
        if progress is not None:
            progress(i + 1, len(night_ids))
    for r in conn.execute("SELECT * FROM tags ORDER BY night_date, rowid"):
        if all_user_data or r["night_date"] in dates:
            yield "tags", dict(r)
    for night_date, c in checkins_by_date(conn).items():
        if all_user_data or night_date in dates:
            yield "checkins", {"night_date": night_date, **c}


def collect_tables(
    conn: sqlite3.Connection,
    night_ids: Sequence[str],
    *,
    all_user_data: bool = False,
    tz: tzinfo | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows for ``night_ids`` in memory (for a few nights; :func:`export_csv` streams)."""
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    for table, row in iter_rows(conn, night_ids, all_user_data=all_user_data, tz=tz):
        tables[table].append(row)
    return tables


@dataclass(frozen=True, slots=True)
class CsvExport:
    """What :func:`export_csv` wrote: the files (or the zip) and the rows per table."""

    files: list[Path]
    rows: dict[str, int]


def export_csv(
    conn: sqlite3.Connection,
    night_ids: Sequence[str],
    out: str | Path,
    *,
    all_user_data: bool = False,
    tz: tzinfo | None = None,
    progress: ProgressFn | None = None,
) -> CsvExport:
    """Write ``<table>.csv`` for every table into the folder ``out`` (made if missing), or into a
    zip when ``out`` ends in ``.zip``.

    Rows are streamed to files night by night. Nothing is overwritten: ExportError when ``out``
    is an existing zip or file, or a folder already holding one of the CSV files; a failed
    export leaves no partial files behind.
    """
    path = Path(out)
    names = [f"{name}.csv" for name in TABLES]
    as_zip = path.suffix.lower() == ".zip"
    if as_zip:
        if path.exists():
            raise ExportError(f"{path} already exists; give a new file name")
    elif path.exists() and not path.is_dir():
        raise ExportError(f"{path} is a file; give a folder, or a name ending in .zip")
    else:
        clashes = [name for name in names if (path / name).exists()]
        if clashes:
            raise ExportError(f"{path} already holds {', '.join(clashes)}; give an empty or new folder")
    if not path.parent.is_dir():
        raise ExportError(f"folder {path.parent} does not exist")
    counts = dict.fromkeys(TABLES, 0)
    with tempfile.TemporaryDirectory(prefix=".bedside-export-", dir=path.parent) as tmp:
        staged = {name: Path(tmp) / f"{name}.csv" for name in TABLES}
        with contextlib.ExitStack() as stack:
            writers = {}
            for name, file in staged.items():
                f = stack.enter_context(file.open("w", encoding="utf-8", newline=""))
                writers[name] = csv.writer(f, lineterminator="\n")
                writers[name].writerow(TABLES[name])
            rows = iter_rows(conn, night_ids, all_user_data=all_user_data, tz=tz, progress=progress)
            for table, row in rows:
                writers[table].writerow(_cells(TABLES[table], row))
                counts[table] += 1
        if as_zip:
            with zipfile.ZipFile(path, "x", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, file in staged.items():
                    zf.write(file, f"{name}.csv")
            return CsvExport([path], counts)
        path.mkdir(exist_ok=True)
        files = []
        for file in staged.values():
            target = path / file.name
            shutil.move(file, target)
            files.append(target)
    return CsvExport(files, counts)


def to_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """CSV text with a header row, as the files hold it."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(_cells(columns, row))
    return buf.getvalue()


FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is run as a formula by spreadsheets (CSV injection)."""


def _cells(columns: Sequence[str], row: dict[str, Any]) -> list[Any]:
    """A row's cells in column order: None becomes an empty cell, text is made inert
    (:func:`neutralise`), numbers stay numbers."""
    return [neutralise(row.get(c)) for c in columns]


def neutralise(value: Any) -> Any:
    """A cell value a spreadsheet will not run as a formula (OWASP's CSV injection advice).

    Text starting with ``= + - @``, tab or carriage return gets a leading ``'``, which
    spreadsheets show as text (``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``). Numbers, and
    text that is just a number (``-3.5``), are left alone; None becomes an empty cell. A
    carriage return in text becomes a newline: the writer (lines end in ``\n``) would not quote
    a lone CR, and readers would split the row there.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        if value.startswith(FORMULA_STARTS) and not _is_number(value):
            value = "'" + value
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text and text.lower().lstrip("+-") not in ("inf", "infinity", "nan")


def _check_date(name: str, value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ExportError(f"--{name} must be a date as YYYY-MM-DD, got {value!r}") from exc
    if len(value) != 10:
        raise ExportError(f"--{name} must be a date as YYYY-MM-DD, got {value!r}")
