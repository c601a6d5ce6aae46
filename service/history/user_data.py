"""Writes of the user's own tables: tags, the morning check-in, relabels of events, dismissed notices.

The web process and the CLI call these with a read-write connection from
``service.history.load.connect(path, readonly=False)``. Every input is checked before anything
is written; a bad value raises :class:`UserDataError` naming the field and the reason. Each
function commits its own transaction. The detector's data (``events``) is never changed: a
relabel is kept beside the event as the user's ground truth.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import date
from typing import Final

from service.detect.types import EVENT_TYPES
from service.errors import BedsideError
from service.timefmt import iso_utc, parse_iso_utc, utc_now

TAGS: Final = ("stretching", "heat", "medication", "caffeine", "alcohol", "late_exercise", "custom")
"""Interventions a night can be tagged with; ``medication`` and ``custom`` need a ``detail``."""

TAGS_NEEDING_DETAIL: Final = ("medication", "custom")
NOT_AN_EVENT: Final = "not_an_event"
LABELS: Final = (*EVENT_TYPES, NOT_AN_EVENT)
"""What a relabel may say: an event type, or that the detection was not an event at all."""

MAX_DETAIL_CHARS: Final = 60
MAX_NOTE_CHARS: Final = 2000
MAX_SOURCE_CHARS: Final = 32
MAX_EVENT_ID_CHARS: Final = 128

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HHMM_RE = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class UserDataError(BedsideError, ValueError):
    """User input that cannot be stored; the message names the field and why."""


def _check_date(night_date: object) -> str:
    if not isinstance(night_date, str) or not _DATE_RE.fullmatch(night_date):
        raise UserDataError(f"night_date must be a date as YYYY-MM-DD, got {night_date!r}")
    try:
        date.fromisoformat(night_date)
    except ValueError as exc:
        raise UserDataError(f"night_date {night_date!r} is not a calendar date ({exc})") from exc
    return night_date


def _check_text(field: str, value: object, max_chars: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise UserDataError(f"{field} must be text, got {type(value).__name__}")
    text = value.strip()
    if required and not text:
        raise UserDataError(f"{field} must not be empty")
    if len(text) > max_chars:
        raise UserDataError(f"{field} is {len(text)} characters long; at most {max_chars} are allowed")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise UserDataError(f"{field} contains control characters")
    return text


def _check_scale(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserDataError(f"{field} must be a whole number from 1 to 5 or empty, got {value!r}")
    if not 1 <= value <= 5:
        raise UserDataError(f"{field} must be from 1 to 5, got {value}")
    return value


def add_tag(
    conn: sqlite3.Connection,
    night_date: str,
    tag: str,
    *,
    detail: str = "",
    at_local: str | None = None,
    source: str,
) -> int:
    """Tag the night of ``night_date`` (the evening's local date) with an intervention; returns its id.

    ``tag`` is one of :data:`TAGS`; ``medication`` and ``custom`` need a ``detail`` (the
    medication's or the custom tag's name, at most 60 characters, surrounding spaces removed).
    ``at_local`` is the optional local clock time ``HH:MM``. ``source`` says who wrote it
    (``web``, ``cli``). The same date, tag and detail again returns the existing tag's id
    and changes nothing. The night need not exist yet.
    """
    night_date = _check_date(night_date)
    if tag not in TAGS:
        raise UserDataError(f"tag must be one of {', '.join(TAGS)}; got {tag!r}")
    detail = _check_text("detail", detail, MAX_DETAIL_CHARS, required=tag in TAGS_NEEDING_DETAIL)
    if at_local is not None and (not isinstance(at_local, str) or not _HHMM_RE.fullmatch(at_local)):
        raise UserDataError(f"at_local must be a local time as HH:MM (00:00 to 23:59), got {at_local!r}")
    source = _check_text("source", source, MAX_SOURCE_CHARS, required=True)
    existing = conn.execute(
        "SELECT rowid FROM tags WHERE night_date = ? AND tag = ? AND detail = ?", (night_date, tag, detail)
    ).fetchone()
    if existing is not None:
        return int(existing[0])
    with conn:
        cur = conn.execute(
            "INSERT INTO tags (night_date, tag, detail, at_local, created_at, source) VALUES (?,?,?,?,?,?)",
            (night_date, tag, detail, at_local, iso_utc(utc_now()), source),
        )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


def remove_tag(conn: sqlite3.Connection, tag_id: int) -> bool:
    """Delete the tag ``tag_id``; True if it existed."""
    if isinstance(tag_id, bool) or not isinstance(tag_id, int):
        raise UserDataError(f"tag_id must be a whole number, got {tag_id!r}")
    with conn:
        cur = conn.execute("DELETE FROM tags WHERE rowid = ?", (tag_id,))
    return cur.rowcount > 0


def set_checkin(
    conn: sqlite3.Connection,
    night_date: str,
    *,
    sleep_quality: int | None,
    spasm_severity: int | None,
    note: str = "",
) -> None:
    """Write (or replace) the morning check-in for ``night_date``.

    ``sleep_quality`` (1 poor .. 5 good) and ``spasm_severity`` (1 none/mild .. 5 severe) are
    whole numbers 1..5 or None for "not answered"; ``note`` is free text up to 2000
    characters. Replacing keeps the first ``created_at`` and updates ``updated_at``.
    """
    night_date = _check_date(night_date)
    quality = _check_scale("sleep_quality", sleep_quality)
    severity = _check_scale("spasm_severity", spasm_severity)
    note = _check_text("note", note, MAX_NOTE_CHARS)
    now = iso_utc(utc_now())
    with conn:
        conn.execute(
            "INSERT INTO checkins (night_date, sleep_quality, spasm_severity, note, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (night_date) DO UPDATE SET "
            "sleep_quality = excluded.sleep_quality, spasm_severity = excluded.spasm_severity, "
            "note = excluded.note, updated_at = excluded.updated_at",
            (night_date, quality, severity, note, now, now),
        )


def relabel(conn: sqlite3.Connection, event_id: str, label: str, *, source: str) -> None:
    """Record the user's label for event ``event_id``: an event type or ``not_an_event``.

    Replaces an earlier relabel of the same event. An unknown ``event_id`` or ``label``
    raises :class:`UserDataError`. Summaries count the event as its label from then on.
    """
    event_id = _check_text("event_id", event_id, MAX_EVENT_ID_CHARS, required=True)
    if label not in LABELS:
        raise UserDataError(
            f"label must be an event type or {NOT_AN_EVENT!r} ({', '.join(LABELS)}); got {label!r}"
        )
    source = _check_text("source", source, MAX_SOURCE_CHARS, required=True)
    if conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is None:
        raise UserDataError(f"event_id {event_id!r} names no recorded event")
    with conn:
        conn.execute(
            "INSERT INTO relabels (event_id, label, created_at, source) VALUES (?,?,?,?) "
            "ON CONFLICT (event_id) DO UPDATE SET label = excluded.label, "
            "created_at = excluded.created_at, source = excluded.source",
            (event_id, label, iso_utc(utc_now()), source),
        )


def dismiss_notice(conn: sqlite3.Connection, notice_id: str, at: str | None = None) -> bool:
    """Mark notice ``notice_id`` dismissed at ``at`` (ISO UTC text; default now).

    True if the notice exists (dismissed now or already before: the first dismissal time is
    kept), False if there is no such notice.
    """
    notice_id = _check_text("notice_id", notice_id, MAX_EVENT_ID_CHARS, required=True)
    if at is None:
        at = iso_utc(utc_now())
    else:
        try:
            at = iso_utc(parse_iso_utc(at))
        except (TypeError, ValueError) as exc:
            raise UserDataError(f"at must be an ISO 8601 time with a time zone, got {at!r}") from exc
    with conn:
        cur = conn.execute(
            "UPDATE notices SET dismissed_at = ? WHERE id = ? AND dismissed_at IS NULL", (at, notice_id)
        )
    if cur.rowcount:
        return True
    return conn.execute("SELECT 1 FROM notices WHERE id = ?", (notice_id,)).fetchone() is not None
