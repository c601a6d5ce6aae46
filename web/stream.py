"""``/api/stream``: the Tonight page's live updates as server-sent events.

Each message is ``event: tonight`` with the same JSON as ``/api/state`` plus ``events`` (the
current night's latest events, oldest first). One is sent at once, then whenever the daemon's
``live_state`` row or the night's events change (looked at every ``STREAM_TICK_S``), and at
least every ``HEARTBEAT_S`` so the page's "updated N s ago" keeps counting while the daemon is
stopped. A stream ends after ``STREAM_MAX_S`` with a ``retry`` hint: the browser reconnects,
and a waitress thread is never held for ever. The generator opens its own read-only
connection per look, so no database handle outlives a tick.

Each open stream holds a waitress thread, so they are bounded: ``STREAM_MAX_PER_CLIENT`` (3) per
client address get 429, beyond ``STREAM_MAX_TOTAL`` (6) in all 503, both JSON with
``Retry-After``; ``web.serve`` runs more threads than that, so pages and ``/healthz`` always
have some. The Tonight page falls back to polling the JSON API when its stream is refused.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from web import queries
from web.db import connect_readonly

logger = logging.getLogger(__name__)

bp = Blueprint("stream", __name__, url_prefix="/api")

HEARTBEAT_S = 5.0
STREAM_EVENTS = 50
RETRY_MS = 1000
REFUSED_RETRY_AFTER_S = 30


class StreamSlots:
    """Open live streams per client address and in all; ``take`` and ``give_back`` are thread-safe."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> str | None:
        """None when a slot was taken for ``client``, else why not (``"client"`` or ``"total"``)."""
        with self._lock:
            if self._open.get(client, 0) >= self.per_client:
                return "client"
            if sum(self._open.values()) >= self.total:
                return "total"
            self._open[client] = self._open.get(client, 0) + 1
            return None

    def give_back(self, client: str) -> None:
        with self._lock:
            left = self._open.get(client, 0) - 1
            if left > 0:
                self._open[client] = left
            else:
                self._open.pop(client, None)

    def open_count(self) -> int:
        with self._lock:
            return sum(self._open.values())


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
    slots: StreamSlots = current_app.extensions["bedside_stream_slots"]
    client = request.remote_addr or "unknown"
    refused = slots.take(client)
    if refused is not None:
        if refused == "client":
            message = (
                f"too many live streams from {client} (at most {slots.per_client}): close a Tonight page"
            )
            status = 429
        else:
            message = f"the dashboard serves at most {slots.total} live streams at once; try again shortly"
            status = 503
        logger.warning("live stream for %s refused: %s", client, message)
        return jsonify(error=message), status, {"Retry-After": str(REFUSED_RETRY_AFTER_S)}
    released = threading.Event()

    def give_back() -> None:
        if not released.is_set():  # close() may be called more than once
            released.set()
            slots.give_back(client)

    body = messages(
        config["DATABASE"], config["UNIT_ID"], float(config["STREAM_TICK_S"]), float(config["STREAM_MAX_S"])
    )
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    response.call_on_close(give_back)  # waitress closes the body when the stream ends or the client goes
    return response


def init_app(app: Flask) -> None:
    """Set up the stream bounds (``STREAM_MAX_PER_CLIENT``, ``STREAM_MAX_TOTAL``)."""
    app.config.setdefault("STREAM_MAX_PER_CLIENT", 3)
    app.config.setdefault("STREAM_MAX_TOTAL", 6)
    app.extensions["bedside_stream_slots"] = StreamSlots(
        int(app.config["STREAM_MAX_PER_CLIENT"]), int(app.config["STREAM_MAX_TOTAL"])
    )
