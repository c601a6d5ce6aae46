"""JSON API under /api/ (events, live state, nights, user input, trends, status) and /healthz.

The routes are described by the OpenAPI 3 document at ``/api/openapi.json`` (web/openapi.py);
a test checks that every route is in it and runs schemathesis against it. Writes (POST, PUT,
DELETE) take JSON bodies, need the CSRF token in ``X-CSRF-Token`` (``GET /api/session``), and
go through ``service.history.user_data``; bad input gives 400 ``{"error": ...}`` naming the
field.

Times are UTC ISO 8601 text as stored. Bad query parameters give 400 ``{"error": ...,
"parameter": NAME}``; unknown query parameters are refused the same way, so a typo such as
``nigth=`` is not silently ignored. While the daemon has not created the database yet,
the endpoints answer with empty results rather than an error.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, NotFound, ServiceUnavailable

from service.detect.types import EVENT_TYPES
from service.history.load import checkins_by_date, load_night, tags_by_date
from service.history.summary import summarize_night
from service.history.user_data import (
    TAGS,
    UserDataError,
    add_tag,
    dismiss_notice,
    relabel,
    remove_tag,
    set_checkin,
)
from service.timefmt import iso_utc, utc_now
from web import history, queries, snippets, status_info
from web.db import database_status, get_db
from web.inputs import BadInput, clean_json, parse_int
from web.security import csrf_token, session_is_current
from web.userdb import get_user_db

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")
health_bp = Blueprint("health", __name__)

MAX_LIMIT = 5000
DEFAULT_EVENTS_LIMIT = 500
DEFAULT_NIGHTS_LIMIT = 100


class BadParameter(BadInput):
    """A query parameter that is missing, malformed or out of range; names the parameter."""


class UnknownNight(NotFound):
    """The ``night`` parameter names no stored night."""

    def __init__(self, night_id: str) -> None:
        super().__init__(description=f"night: no night with id {night_id!r}")
        self.parameter = "night"


def check_known(args: MultiDict[str, str], allowed: set[str]) -> None:
    """Refuse query parameters not in ``allowed`` (a typo must not be silently ignored)."""
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
    return parse_int(text, "limit", 1, MAX_LIMIT)


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
    check_known(args, {"night", "type", "since", "limit"})
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
    check_known(request.args, set())
    unit_id = current_app.config["UNIT_ID"]
    conn = get_db()
    if conn is None:
        return jsonify(queries.empty_state(unit_id))
    return jsonify(queries.live_state(conn, unit_id))


@bp.get("/nights")
def nights() -> ResponseReturnValue:
    """Nights, newest first, with event counts per type. Parameter: ``limit`` (default 100)."""
    check_known(request.args, {"limit"})
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


# --- one night, snippets, user input, trends, status -------------------------------------------


class BadBody(BadRequest):
    """A JSON body that is missing, not an object, or has a bad or unknown field; names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(description=f"{field}: {message}")
        self.parameter = field


def _user_error(exc: UserDataError) -> ResponseReturnValue:
    """A value ``service.history.user_data`` refused: 400 with its message (it names the field)."""
    message = str(exc)
    field = message.split(" ", 1)[0]
    return jsonify(error=message, parameter=field), 400


def json_body(allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """The request's JSON object, its text cleaned (``web.inputs.clean_text``); 400 naming the
    problem if it is not one or has unknown fields. A body over ``MAX_CONTENT_LENGTH`` is a 413."""
    body = clean_json(request.get_json(silent=True))
    if not isinstance(body, dict):
        raise BadBody("body", "must be a JSON object (Content-Type: application/json)")
    for name in body:
        if name not in allowed:
            raise BadBody(name, f"unknown field; expected some of {sorted(allowed)}")
    for name in sorted(required):
        if name not in body:
            raise BadBody(name, "is required")
    return body


def _require_db() -> Any:
    conn = get_db()
    if conn is None:
        raise ServiceUnavailable(description="database: the monitor has not created its database yet")
    return conn


@bp.get("/session")
def session_info() -> ResponseReturnValue:
    """Whether a login is needed and present, and the CSRF token for writes."""
    check_known(request.args, set())
    return jsonify(
        login_required=bool(current_app.config["LOGIN_REQUIRED"]),
        logged_in=session_is_current(),
        csrf_token=csrf_token(),
    )


@bp.get("/nights/<night_id>")
def night_detail(night_id: str) -> ResponseReturnValue:
    """One night: its row, summary, epochs, vitals, events (with the user's labels), tags, check-in."""
    check_known(request.args, set())
    conn = get_db()
    data = None if conn is None else load_night(conn, night_id)
    if conn is None or data is None:
        raise UnknownNight(night_id)
    night_date = str(data.night.get("night_date"))
    return jsonify(
        night=data.night,
        summary=summarize_night(data),
        epochs=data.epochs,
        vitals=data.vitals,
        events=data.events,
        annotations=data.annotations,
        tags=tags_by_date(conn).get(night_date, []),
        checkin=checkins_by_date(conn).get(night_date),
    )


@bp.get("/events/<event_id>/snippet")
def snippet(event_id: str) -> ResponseReturnValue:
    """The raw signal kept around one event: start time, rate, and the samples."""
    check_known(request.args, set())
    conn = get_db()
    found = None if conn is None else snippets.load_snippet(conn, event_id)
    if found is None:
        raise NotFound(description=f"event_id: no waveform kept for event {event_id!r}")
    return jsonify(
        event_id=event_id,
        start_at=found.start_at,
        rate_hz=found.rate_hz,
        n=int(found.samples.size),
        samples=[round(float(x), 4) for x in found.samples],
    )


@bp.post("/events/<event_id>/relabel")
def relabel_event(event_id: str) -> ResponseReturnValue:
    """Keep the user's label for an event (an event type or ``not_an_event``) as ground truth."""
    body = json_body({"label"}, {"label"})
    label = body["label"]
    if not isinstance(label, str):
        raise BadBody("label", f"must be text, got {type(label).__name__}")
    conn = get_user_db()
    relabel(conn, event_id, label, source="web")
    return jsonify(event_id=event_id, label=label)


@bp.get("/tags")
def tags() -> ResponseReturnValue:
    """Every tag grouped by night date, and the tags one can choose from."""
    check_known(request.args, set())
    conn = get_db()
    return jsonify(tags=({} if conn is None else tags_by_date(conn)), choices=list(TAGS))


@bp.post("/tags")
def add_tag_route() -> ResponseReturnValue:
    """Tag a night date with an intervention; 201 with the tag's id (the same tag again: same id)."""
    body = json_body({"night_date", "tag", "detail", "at_local"}, {"night_date", "tag"})
    conn = get_user_db()
    tag_id = add_tag(
        conn,
        body["night_date"],
        body["tag"],
        detail=body.get("detail", ""),
        at_local=body.get("at_local") or None,
        source="web",
    )
    return jsonify(id=tag_id, night_date=body["night_date"], tag=body["tag"]), 201


@bp.delete('/tags/<id64(field="tag_id"):tag_id>')
def remove_tag_route(tag_id: int) -> ResponseReturnValue:
    """Remove a tag; 404 if there is no such tag."""
    if not remove_tag(get_user_db(), tag_id):
        raise NotFound(description=f"tag_id: no tag with id {tag_id}")
    return jsonify(id=tag_id, deleted=True)


@bp.get("/checkins")
def checkins() -> ResponseReturnValue:
    """Every morning check-in by night date."""
    check_known(request.args, set())
    conn = get_db()
    return jsonify(checkins=({} if conn is None else checkins_by_date(conn)))


@bp.put("/checkins/<night_date>")
def put_checkin(night_date: str) -> ResponseReturnValue:
    """Write or replace the check-in of a night date (scales 1..5 or null, and a note)."""
    body = json_body({"sleep_quality", "spasm_severity", "note"})
    conn = get_user_db()
    set_checkin(
        conn,
        night_date,
        sleep_quality=body.get("sleep_quality"),
        spasm_severity=body.get("spasm_severity"),
        note=body.get("note", ""),
    )
    return jsonify(night_date=night_date, checkin=checkins_by_date(conn).get(night_date))


@bp.get("/trends")
def trends() -> ResponseReturnValue:
    """Per-night metrics, weekly means, the change rule and with/without comparisons per tag."""
    check_known(request.args, {"limit"})
    limit = parse_limit(request.args, 90)
    conn = get_db()
    if conn is None:
        return jsonify(window=None, nights=[], metrics=[], weekly=[], change=None, comparisons=[])
    return jsonify(history.trends(conn, limit=limit))


@bp.get("/notices")
def notices() -> ResponseReturnValue:
    """Messages for the user that have not been dismissed, newest first."""
    check_known(request.args, set())
    conn = get_db()
    return jsonify(notices=[] if conn is None else queries.active_notices(conn))


@bp.post("/notices/<notice_id>/dismiss")
def dismiss(notice_id: str) -> ResponseReturnValue:
    """Dismiss a notice; 404 if there is no such notice."""
    if not dismiss_notice(get_user_db(), notice_id, iso_utc(utc_now())):
        raise NotFound(description=f"notice_id: no notice with id {notice_id!r}")
    return jsonify(id=notice_id, dismissed=True)


@bp.get("/status")
def status() -> ResponseReturnValue:
    """Sensor health and calibration age, MQTT, outbox, disk use, database size, version."""
    check_known(request.args, set())
    config = current_app.config
    return jsonify(status_info.status(get_db(), config["DATABASE"], config["UNIT_ID"]))


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3 description of this API."""
    from web.openapi import document

    return jsonify(document())


def init_app(app: Flask) -> None:
    """Register the error handler for refused user input (pages handle it themselves)."""
    app.register_error_handler(UserDataError, _user_error)
