"""The pages: "Tonight" (current night, live state, counts, latest events).

The page is rendered complete on the server (readable without JavaScript), then
static/tonight.js refreshes it from the JSON API every ``REFRESH_MS``.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue

from web import display, queries
from web.db import get_db

logger = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__)

TONIGHT_EVENTS = 50
"""How many of the latest events the Tonight page lists."""


@bp.get("/")
def tonight() -> ResponseReturnValue:
    """Tonight: the night that started last, the live state and the latest events."""
    unit_id = current_app.config["UNIT_ID"]
    conn = get_db()
    if conn is None:
        live = queries.empty_state(unit_id)
        latest: list[dict[str, object]] = []
    else:
        live = queries.live_state(conn, unit_id)
        latest = []
        if live["night_id"] is not None:
            latest, _ = queries.events(conn, live["night_id"], limit=TONIGHT_EVENTS)
    return render_template(
        "tonight.html",
        has_data=conn is not None,
        live=live,
        night=live["night"],
        state_rows=display.state_rows(live["state"]),
        events=list(reversed(latest)),  # newest at the top of the page
        events_limit=TONIGHT_EVENTS,
        stale_after_s=current_app.config["STALE_AFTER_S"],
        refresh_ms=current_app.config["REFRESH_MS"],
        event_labels=display.EVENT_LABELS,
        state_labels=display.STATE_LABELS,
        now_local=display.now_local(),
    )
