"""Synchronous sqlite3 readers of past nights: one night with its rows, the list of nights, tags, check-ins.

Used by the CLI, the web process and the daemon (in a worker thread, never on the loop).
Every function takes an open ``sqlite3.Connection`` from :func:`connect`; none of them writes.
Times come back as stored: ISO 8601 UTC text with milliseconds and a ``Z``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import StoreError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
"""How long a query waits for a lock held by another process (the daemon) before failing."""


class DatabaseMissingError(StoreError, FileNotFoundError):
    """The database file does not exist (the daemon has not run yet, or the path is wrong)."""


def connect(path: str | Path, *, readonly: bool = True) -> sqlite3.Connection:
    """Open the Bedside database with a 5 s busy timeout and ``sqlite3.Row`` rows.

    ``readonly`` opens a ``file:...?mode=ro`` URI, so a write through the connection fails.
    A read-write connection also turns foreign keys on (a relabel must name a real event).
    Neither mode creates a file: a missing file raises :class:`DatabaseMissingError`
    (a ``StoreError`` and a ``FileNotFoundError``) naming the path. The connection may be
    used from the thread that opened it only (sqlite3's default).
    """
    p = Path(path)
    if not p.is_file():
        raise DatabaseMissingError(f"database {p} does not exist (has the Bedside daemon run yet?)")
    uri = p.resolve().as_uri() + ("?mode=ro" if readonly else "?mode=rw")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.OperationalError as exc:
        raise StoreError(f"cannot open database {p}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    if not readonly:
        conn.execute("PRAGMA foreign_keys=ON")
    return conn


@dataclass(frozen=True)
class NightData:
    """One night and everything recorded in it, as plain dicts (column name -> value).

    ``night``: the ``nights`` row, ``summary`` parsed from JSON (or None).
    ``events``: ordered by ``start_at``, ``details`` parsed, plus ``label``: the user's relabel
    (an event type or ``not_an_event``) or None. ``epochs``: ordered by ``start_at``, with
    ``asleep`` and ``in_bed`` as bool. ``vitals``: ordered by ``t_at``. ``annotations``: the
    night's marks (button, MQTT), ordered by ``at``.
    """

    night: dict[str, Any]
    events: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    vitals: list[dict[str, Any]]
    annotations: list[dict[str, Any]]


def _parse_json(text: str | None, what: str) -> Any:
    """JSON text from a column, or None for NULL; a damaged value is logged and read as None."""
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        logger.warning("unreadable JSON in %s: %.80r", what, text)
        return None


def _night_dict(row: sqlite3.Row) -> dict[str, Any]:
    night = dict(row)
    night["summary"] = _parse_json(night.get("summary"), f"nights.summary of {night.get('id')}")
    return night


def load_night(conn: sqlite3.Connection, night_id: str) -> NightData | None:
    """The night ``night_id`` with its events, epochs, vitals and annotations; None if unknown."""
    row = conn.execute("SELECT * FROM nights WHERE id = ?", (night_id,)).fetchone()
    if row is None:
        return None
    events = []
    for r in conn.execute(
        "SELECT e.*, r.label AS label FROM events e LEFT JOIN relabels r ON r.event_id = e.id "
        "WHERE e.night_id = ? ORDER BY e.start_at, e.rowid",
        (night_id,),
    ):
        ev = dict(r)
        ev["details"] = _parse_json(ev.get("details"), f"events.details of {ev.get('id')}") or {}
        events.append(ev)
    epochs = []
    for r in conn.execute("SELECT * FROM epochs WHERE night_id = ? ORDER BY start_at", (night_id,)):
        ep = dict(r)
        ep["asleep"] = bool(ep["asleep"])
        ep["in_bed"] = bool(ep["in_bed"])
        epochs.append(ep)
    vitals = [
        dict(r) for r in conn.execute("SELECT * FROM vitals WHERE night_id = ? ORDER BY t_at", (night_id,))
    ]
    annotations = [
        dict(r)
        for r in conn.execute("SELECT * FROM annotations WHERE night_id = ? ORDER BY at, rowid", (night_id,))
    ]
    return NightData(_night_dict(row), events, epochs, vitals, annotations)


def list_nights(
    conn: sqlite3.Connection,
    *,
    kind: str | None = "night",
    limit: int | None = None,
    since_date: str | None = None,
) -> list[dict[str, Any]]:
    """Nights newest first (by ``started_at``), each the ``nights`` row with ``summary`` parsed.

    ``kind`` ``"night"`` or ``"nap"`` keeps that kind only, None keeps both; ``since_date``
    (``YYYY-MM-DD``) keeps nights whose ``night_date`` is on or after it; ``limit`` keeps the
    newest ``limit`` (ValueError if negative).
    """
    where: list[str] = []
    params: list[Any] = []
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if since_date is not None:
        where.append("night_date >= ?")
        params.append(since_date)
    sql = "SELECT * FROM nights"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, id DESC"
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        sql += " LIMIT ?"
        params.append(limit)
    return [_night_dict(r) for r in conn.execute(sql, params)]


def in_progress(night: Mapping[str, Any]) -> bool:
    """Whether a ``nights`` row (as ``list_nights`` gives it) is a night still open: no end yet.

    An open night's figures are partial (0:00 in bed, no sleep yet, a few events), so it is shown
    "in progress" and left out of averages, trends, comparisons and the change rule until it ends.
    A dict without an ``ended_at`` key at all (not a ``nights`` row) counts as finished.
    """
    return "ended_at" in night and not night["ended_at"]


def tags_by_date(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every tag, grouped by night date: ``{"2026-11-21": [{"id", "tag", "detail", "at_local"}]}``.

    Dates ascend; within a date tags are in the order they were added.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(
        "SELECT rowid AS id, night_date, tag, detail, at_local FROM tags ORDER BY night_date, rowid"
    ):
        out.setdefault(r["night_date"], []).append(
            {"id": r["id"], "tag": r["tag"], "detail": r["detail"], "at_local": r["at_local"]}
        )
    return out


def checkins_by_date(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The morning check-ins by night date: ``{"2026-11-21": {"sleep_quality", "spasm_severity",
    "note", "created_at", "updated_at"}}`` (scales 1..5 or None)."""
    return {
        r["night_date"]: {
            "sleep_quality": r["sleep_quality"],
            "spasm_severity": r["spasm_severity"],
            "note": r["note"],
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
        }
        for r in conn.execute("SELECT * FROM checkins ORDER BY night_date")
    }
