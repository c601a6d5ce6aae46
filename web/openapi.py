"""The OpenAPI 3 document of ``/api/``, written by hand from one route table.

A test compares the table with the app's routes (every ``/api/`` route is described, nothing
else is) and runs schemathesis against the document, so it stays truthful.
"""

from __future__ import annotations

from typing import Any

from service import __version__
from service.detect.types import EVENT_TYPES
from service.history.user_data import LABELS, MAX_DETAIL_CHARS, MAX_NOTE_CHARS, TAGS

ERROR = {"$ref": "#/components/schemas/Error"}
OBJECT: dict[str, Any] = {"type": "object"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, **_json(ERROR)}


LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}}
DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "example": "2026-11-21"}
SCALE = {"type": "integer", "nullable": True, "minimum": 1, "maximum": 5}
CSRF = {"name": "X-CSRF-Token", "in": "header", "required": True, "schema": {"type": "string"}}

COMMON_READ = {
    "400": _error("a bad or unknown query parameter (named in `parameter`)"),
    "401": _error("login required"),
}
COMMON_WRITE = {
    "400": _error("bad body or missing CSRF token; the message names the problem"),
    "401": _error("login required"),
    "403": _error("CSRF token does not match the session's"),
    "503": _error("the monitor has not created its database yet"),
}


def _get(summary: str, params: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    responses = {"200": {"description": "OK", **_json(OBJECT)}, **COMMON_READ, **extra}
    return {"get": {"summary": summary, "parameters": params or [], "responses": responses}}


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _write(
    method: str,
    summary: str,
    params: list[dict[str, Any]],
    body: dict[str, Any] | None,
    ok: str = "200",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [CSRF, *params],
        "responses": {ok: {"description": "done", **_json(OBJECT)}, **COMMON_WRITE, **(extra or {})},
    }
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return {method: op}


def paths() -> dict[str, dict[str, Any]]:
    """The route table: OpenAPI path -> operations."""
    night = _path_param("night_id")
    event = _path_param("event_id")
    return {
        "/api/session": _get("Whether a login is needed and present; the CSRF token for writes"),
        "/api/state": _get("The daemon's live state and the current night with its counts"),
        "/api/events": _get(
            "Events of one night (default the current one), oldest first",
            [
                {"name": "night", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "type",
                    "in": "query",
                    "schema": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
                    "style": "form",
                    "explode": True,
                },
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                LIMIT,
            ],
            **{"404": _error("no such night")},
        ),
        "/api/nights": _get("Nights newest first with event counts per type", [LIMIT]),
        "/api/nights/{night_id}": _get(
            "One night: row, summary, epochs, vitals, events with labels, tags, check-in",
            [night],
            **{"404": _error("no such night")},
        ),
        "/api/events/{event_id}/snippet": _get(
            "The raw signal kept around one event",
            [event],
            **{"404": _error("no waveform kept for this event")},
        ),
        "/api/events/{event_id}/relabel": _write(
            "post",
            "Keep the user's label for an event (ground truth; the detector's label is kept)",
            [event],
            {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": list(LABELS)}},
                "required": ["label"],
                "additionalProperties": False,
            },
        ),
        "/api/tags": {
            **_get("Every tag by night date, and the tags to choose from"),
            **_write(
                "post",
                "Tag a night date with an intervention (the same tag again returns the same id)",
                [],
                {
                    "type": "object",
                    "properties": {
                        "night_date": DATE,
                        "tag": {"type": "string", "enum": list(TAGS)},
                        "detail": {"type": "string", "maxLength": MAX_DETAIL_CHARS},
                        "at_local": {
                            "type": ["string", "null"],
                            "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
                        },
                    },
                    "required": ["night_date", "tag"],
                    "additionalProperties": False,
                },
                ok="201",
            ),
        },
        "/api/tags/{tag_id}": _write(
            "delete",
            "Remove a tag",
            [_path_param("tag_id", {"type": "integer", "minimum": 0})],
            None,
            extra={"404": _error("no such tag")},
        ),
        "/api/checkins": _get("Every morning check-in by night date"),
        "/api/checkins/{night_date}": _write(
            "put",
            "Write or replace the check-in of a night date",
            [_path_param("night_date", DATE)],
            {
                "type": "object",
                "properties": {
                    "sleep_quality": SCALE,
                    "spasm_severity": SCALE,
                    "note": {"type": "string", "maxLength": MAX_NOTE_CHARS},
                },
                "additionalProperties": False,
            },
        ),
        "/api/trends": _get(
            "Per-night metrics, weekly means, the change rule, with/without per tag", [LIMIT]
        ),
        "/api/notices": _get("Notices not dismissed yet"),
        "/api/notices/{notice_id}/dismiss": _write(
            "post",
            "Dismiss a notice",
            [_path_param("notice_id")],
            None,
            extra={"404": _error("no such notice")},
        ),
        "/api/status": _get("Sensor health, calibration age, MQTT, outbox, disk, version"),
        "/api/stream": {
            "get": {
                "summary": "Server-sent events for the Tonight page (`event: tonight`, JSON data)",
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "an event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **COMMON_READ,
                },
            }
        },
        "/api/openapi.json": _get("This document"),
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.0 document."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Bedside dashboard API",
            "version": __version__,
            "description": (
                "Read the monitor's nights and events; write the user's own tags, check-ins and"
                " relabels. Times are ISO 8601 UTC. Writes need the X-CSRF-Token header (from"
                " /api/session) and, when the dashboard is reachable from the network, a logged-in"
                ' session cookie (log in at /login). Errors are JSON: {"error": message}.'
            ),
        },
        "paths": paths(),
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
                    "required": ["error"],
                }
            }
        },
    }
