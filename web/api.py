"""JSON API under /api/ (events, live state, nights) and the /healthz probe.

Times are UTC ISO 8601 text as stored. Bad query parameters give 400 ``{"error": ...,
"parameter": NAME}``; unknown query parameters are refused the same way, so a typo such as
``nigth=`` is not silently ignored. While the daemon has not created the database yet,
the endpoints answer with empty results rather than an error.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, NotFound

from service.detect.types import EVENT_TYPES
from web import queries
from web.db import database_status, get_db

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")
health_bp = Blueprint("health", __name__)

MAX_LIMIT = 5000
DEFAULT_EVENTS_LIMIT = 500
DEFAULT_NIGHTS_LIMIT = 100


class BadParameter(BadRequest):
    """A query parameter that is missing, malformed or out of range; names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(description=f"{parameter}: {message}")
        self.parameter = parameter


class UnknownNight(NotFound):
    """The ``night`` parameter names no stored night."""

    def __init__(self, night_id: str) -> None:
        super().__init__(description=f"night: no night with id {night_id!r}")
        self.parameter = "night"


def _check_known(args: MultiDict[str, str], allowed: set[str]) -> None:
    for name in args:
        if name not in allowed:
            raise BadParameter(name, f"unknown parameter; expected one of {sorted(allowed)}")


def _single(args: MultiDict[str, str], name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise BadParameter(name, "given more than once")
    return values[0] if values else None


def parse_limit(args: MultiDict[str, str], default: int) -> int:
    """``limit``: an integer from 1 to MAX_LIMIT."""
    text = _single(args, "limit")
    if text is None:
        return default
    try:
        limit = int(text)
    except ValueError:
        raise BadParameter("limit", f"must be an integer, got {text!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter("limit", f"must be from 1 to {MAX_LIMIT}, got {limit}")
    return limit


def parse_since(args: MultiDict[str, str]) -> str | None:
    """``since``: an ISO 8601 time with a zone (``Z`` or ``+01:00``), as store-format UTC text.

    A time without a zone is refused rather than guessed: the store is UTC, people think in
    local time, and a silent guess would be off by hours.
    """
    text = _single(args, "since")
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(
            "since", f"must be an ISO 8601 time such as 2026-11-22T01:30:00Z, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise BadParameter("since", f"needs a time zone (Z or +HH:MM), got {text!r}")
    return queries.format_utc(moment)


def parse_types(args: MultiDict[str, str]) -> list[str]:
    """``type``: one of the known event types; may be repeated (``type=jerk&type=spasm``)."""
    types = args.getlist("type")
    for event_type in types:
        if event_type not in EVENT_TYPES:
            raise BadParameter(
                "type", f"unknown event type {event_type!r}; expected one of {list(EVENT_TYPES)}"
            )
    return types


@bp.get("/events")
def events() -> ResponseReturnValue:
    """Events of one night (default: the current one), oldest first.

    Parameters: ``night`` (id), ``type`` (repeatable), ``since`` (ISO time with zone; events
    starting at or after it), ``limit`` (1..5000, default 500; keeps the newest). The answer
    says ``truncated: true`` when the limit left older matching events out.
    """
    args = request.args
    _check_known(args, {"night", "type", "since", "limit"})
    night_id = _single(args, "night")
    if night_id is not None and not night_id:
        raise BadParameter("night", "must not be empty")
    types = parse_types(args)
    since = parse_since(args)
    limit = parse_limit(args, DEFAULT_EVENTS_LIMIT)

    conn = get_db()
    if conn is None:
        if night_id is not None:
            raise UnknownNight(night_id)
        return jsonify(night_id=None, events=[], truncated=False)
    if night_id is None:
        night_id = queries.latest_night_id(conn)
        if night_id is None:
            return jsonify(night_id=None, events=[], truncated=False)
    elif not queries.night_exists(conn, night_id):
        raise UnknownNight(night_id)
    found, truncated = queries.events(conn, night_id, types=types, since=since, limit=limit)
    return jsonify(night_id=night_id, events=found, truncated=truncated)


@bp.get("/state")
def state() -> ResponseReturnValue:
    """The daemon's live state for this unit, its age, and the current night with its counts."""
    _check_known(request.args, set())
    unit_id = current_app.config["UNIT_ID"]
    conn = get_db()
    if conn is None:
        return jsonify(queries.empty_state(unit_id))
    return jsonify(queries.live_state(conn, unit_id))


@bp.get("/nights")
def nights() -> ResponseReturnValue:
    """Nights, newest first, with event counts per type. Parameter: ``limit`` (default 100)."""
    _check_known(request.args, {"limit"})
    limit = parse_limit(request.args, DEFAULT_NIGHTS_LIMIT)
    conn = get_db()
    found: list[dict[str, Any]] = [] if conn is None else queries.nights(conn, limit)
    return jsonify(nights=found)


@health_bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness of the web process and what it sees of the database.

    200 ``{"ok": true, "database": "present"|"missing", "schema_version": N}``; a missing
    file is normal before the daemon's first start (``schema_version`` null). A file that
    exists but cannot be read gives 503 with ``ok: false`` and ``error``.
    """
    status = database_status()
    body: dict[str, Any] = {
        "ok": status.error is None,
        "database": "present" if status.present else "missing",
        "schema_version": status.schema_version,
    }
    if status.error is not None:
        body["error"] = f"database unreadable: {status.error}"
        return jsonify(body), 503
    return jsonify(body)
