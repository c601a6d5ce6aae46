"""Read queries over the daemon's tables, returning plain JSON-ready dicts (times stay UTC text).

Shared by the pages and the JSON API so both show the same facts. Every function takes an
open connection and never writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from service.detect.types import EVENT_TYPES

logger = logging.getLogger(__name__)

EVENT_COLUMNS = (
    "id, night_id, event_type, start_at, end_at, duration_s, intensity, profile,"
    " confidence, cause_id, details"
)


def parse_utc(text: str) -> datetime | None:
    """Parse the store's ISO 8601 UTC text (``2026-11-22T01:30:00.123Z``); None if unreadable."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_utc(moment: datetime) -> str:
    """Format an aware datetime the way the store does: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    """Decode a JSON column; a value that is not a JSON object is logged and given as None."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        logger.warning("%s is not valid JSON; ignoring it", what)
        return None
    if not isinstance(value, dict):
        logger.warning("%s is not a JSON object; ignoring it", what)
        return None
    return value


def event_from_row(row: sqlite3.Row) -> dict[str, Any]:
    """One event as the API gives it; ``details`` is always an object (``{}`` if unreadable)."""
    return {
        "id": row["id"],
        "event_type": row["event_type"],
        "start": row["start_at"],
        "end": row["end_at"],
        "duration_s": row["duration_s"],
        "intensity": row["intensity"],
        "profile": row["profile"],
        "confidence": row["confidence"],
        "cause_id": row["cause_id"],
        "night_id": row["night_id"],
        "details": _json_object(row["details"], f"details of event {row['id']}") or {},
    }


def latest_night_id(conn: sqlite3.Connection) -> str | None:
    """The current night: the one that started last (ended or not), or None if none yet."""
    row = conn.execute("SELECT id FROM nights ORDER BY started_at DESC, rowid DESC LIMIT 1").fetchone()
    return None if row is None else str(row["id"])


def night_exists(conn: sqlite3.Connection, night_id: str) -> bool:
    """Whether a night with this id is stored."""
    return conn.execute("SELECT 1 FROM nights WHERE id = ?", (night_id,)).fetchone() is not None


def events(
    conn: sqlite3.Connection,
    night_id: str,
    types: Sequence[str] = (),
    since: str | None = None,
    limit: int = 500,
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` events of a night, returned oldest first, and whether more matched.

    ``types`` keeps only those event types (empty: all). ``since`` (store-format UTC text)
    keeps events starting at or after it; pollers drop duplicates by ``id``.
    """
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE night_id = ?"
    params: list[Any] = [night_id]
    if types:
        sql += f" AND event_type IN ({', '.join('?' for _ in types)})"
        params.extend(types)
    if since is not None:
        sql += " AND start_at >= ?"
        params.append(since)
    sql += " ORDER BY start_at DESC, rowid DESC LIMIT ?"
    params.append(limit + 1)
    rows = conn.execute(sql, params).fetchall()
    truncated = len(rows) > limit
    return [event_from_row(row) for row in reversed(rows[:limit])], truncated


def counts_by_night(conn: sqlite3.Connection, night_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Event counts per type for each night: every known type (0 if none) plus any other found."""
    result = {night_id: dict.fromkeys(EVENT_TYPES, 0) for night_id in night_ids}
    if not night_ids:
        return result
    marks = ", ".join("?" for _ in night_ids)
    rows = conn.execute(
        f"SELECT night_id, event_type, COUNT(*) AS n FROM events"
        f" WHERE night_id IN ({marks}) GROUP BY night_id, event_type",
        list(night_ids),
    )
    for row in rows:
        result[row["night_id"]][row["event_type"]] = int(row["n"])
    return result


def _night_from_row(row: sqlite3.Row, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "unit_id": row["unit_id"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "profile": row["profile"],
        "source": row["source"],
        "summary": _json_object(row["summary"], f"summary of night {row['id']}"),
        "counts": counts,
        "total_events": sum(counts.values()),
    }


def nights(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` nights, newest first, each with its event counts."""
    rows = conn.execute(
        "SELECT id, unit_id, started_at, ended_at, profile, source, summary FROM nights"
        " ORDER BY started_at DESC, rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    counts = counts_by_night(conn, [row["id"] for row in rows])
    return [_night_from_row(row, counts[row["id"]]) for row in rows]


def night(conn: sqlite3.Connection, night_id: str) -> dict[str, Any] | None:
    """One night with its event counts, or None if there is no such night."""
    row = conn.execute(
        "SELECT id, unit_id, started_at, ended_at, profile, source, summary FROM nights WHERE id = ?",
        (night_id,),
    ).fetchone()
    if row is None:
        return None
    return _night_from_row(row, counts_by_night(conn, [night_id])[night_id])


def live_state(conn: sqlite3.Connection, unit_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The daemon's latest ``live_state`` row for ``unit_id`` plus the current night.

    ``state`` is the decoded JSON object (None if there is no row or it is unreadable);
    ``age_s`` is seconds since ``updated_at`` by this machine's clock (the daemon runs on the
    same Pi), so a client can tell a stopped daemon from a quiet night.
    """
    row = conn.execute("SELECT updated_at, state FROM live_state WHERE unit_id = ?", (unit_id,)).fetchone()
    updated_at = None if row is None else str(row["updated_at"])
    state = None if row is None else _json_object(row["state"], f"live state of {unit_id}")
    age_s = None
    updated = parse_utc(updated_at) if updated_at is not None else None
    if updated is not None:
        age_s = round(((now or datetime.now(UTC)) - updated).total_seconds(), 3)
    night_id = latest_night_id(conn)
    return {
        "unit_id": unit_id,
        "updated_at": updated_at,
        "age_s": age_s,
        "state": state,
        "night_id": night_id,
        "night": None if night_id is None else night(conn, night_id),
    }


def empty_state(unit_id: str) -> dict[str, Any]:
    """What ``live_state`` gives while there is no database yet."""
    return {
        "unit_id": unit_id,
        "updated_at": None,
        "age_s": None,
        "state": None,
        "night_id": None,
        "night": None,
    }


def active_notices(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Notices not dismissed yet, newest first, ``details`` decoded."""
    rows = conn.execute(
        "SELECT id, created_at, kind, message, details FROM notices WHERE dismissed_at IS NULL"
        " ORDER BY created_at DESC"
    ).fetchall()
    return [
        {
            "id": row["id"],
            "created_at": row["created_at"],
            "kind": row["kind"],
            "message": row["message"],
            "details": _json_object(row["details"], f"details of notice {row['id']}") or {},
        }
        for row in rows
    ]


def export_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Nights newest first with whether their whole raw signal is still kept (for EDF+)."""
    rows = conn.execute(
        "SELECT n.id, n.night_date, n.kind, n.started_at, n.ended_at,"
        " EXISTS (SELECT 1 FROM raw_chunks r WHERE r.night_id = n.id) AS has_raw"
        " FROM nights n ORDER BY n.started_at DESC, n.rowid DESC"
    ).fetchall()
    return [
        {
            "id": row["id"],
            "night_date": row["night_date"],
            "kind": row["kind"],
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
            "has_raw": bool(row["has_raw"]),
        }
        for row in rows
    ]
