"""``/api/stream``: the Tonight page's live updates as server-sent events.

Each message is ``event: tonight`` with the same JSON as ``/api/state`` plus ``events`` (the
current night's latest events, oldest first). One is sent at once, then whenever the daemon's
``live_state`` row or the night's events change (looked at every ``STREAM_TICK_S``), and at
least every ``HEARTBEAT_S`` so the page's "updated N s ago" keeps counting while the daemon is
stopped. A stream ends after ``STREAM_MAX_S`` with a ``retry`` hint: the browser reconnects,
and a waitress thread is never held for ever. The generator opens its own read-only
connection per look, so no database handle outlives a tick.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue

from web import queries
from web.db import connect_readonly

logger = logging.getLogger(__name__)

bp = Blueprint("stream", __name__, url_prefix="/api")

HEARTBEAT_S = 5.0
STREAM_EVENTS = 50
RETRY_MS = 1000


def snapshot(database: str, unit_id: str) -> dict[str, Any]:
    """The live state and the latest events, as one message's data (empty while no database)."""
    path = Path(database)
    if not path.exists():
        return {**queries.empty_state(unit_id), "events": []}
    conn = connect_readonly(path)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) == 0:
            return {**queries.empty_state(unit_id), "events": []}
        live = queries.live_state(conn, unit_id)
        events: list[dict[str, Any]] = []
        if live["night_id"] is not None:
            events, _ = queries.events(conn, live["night_id"], limit=STREAM_EVENTS)
        return {**live, "events": events}
    finally:
        conn.close()


def _fingerprint(snap: dict[str, Any]) -> tuple[Any, ...]:
    night = snap.get("night") or {}
    return (snap.get("updated_at"), snap.get("night_id"), night.get("total_events"), night.get("ended_at"))


def messages(database: str, unit_id: str, tick_s: float, max_s: float) -> Iterator[str]:
    """The stream's text, message by message (see the module docstring)."""
    yield f"retry: {RETRY_MS}\n\n"
    started = time.monotonic()
    last_print: tuple[Any, ...] | None = None
    last_sent = 0.0
    seq = 0
    while True:
        now = time.monotonic()
        try:
            snap = snapshot(database, unit_id)
        except sqlite3.Error as exc:
            logger.warning("live stream: database unavailable: %s", exc)
            yield f"event: problem\ndata: {json.dumps({'error': f'database unavailable: {exc}'})}\n\n"
            snap = None
        if snap is not None:
            fingerprint = _fingerprint(snap)
            if fingerprint != last_print or now - last_sent >= HEARTBEAT_S:
                seq += 1
                yield f"id: {seq}\nevent: tonight\ndata: {json.dumps(snap, separators=(',', ':'))}\n\n"
                last_print, last_sent = fingerprint, now
        if now - started + tick_s > max_s:
            return
        time.sleep(tick_s)


@bp.get("/stream")
def stream() -> ResponseReturnValue:
    """Server-sent events for the Tonight page (``text/event-stream``); see the module docstring."""
    from web.api import check_known

    check_known(request.args, set())
    config = current_app.config
    body = messages(
        config["DATABASE"], config["UNIT_ID"], float(config["STREAM_TICK_S"]), float(config["STREAM_MAX_S"])
    )
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
