"""The web app's read-write connection, used only to write the user's own tables.

Tags, check-ins, relabels and dismissed notices go through ``service.history.user_data`` on
this connection (opened on demand, one per request, closed on teardown, with the same busy
timeout as the daemon's readers). Detector tables are never written from the web process.
"""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, current_app, g
from werkzeug.exceptions import ServiceUnavailable

from service.history.load import DatabaseMissingError, connect

logger = logging.getLogger(__name__)


def get_user_db() -> sqlite3.Connection:
    """The request's read-write connection; 503 while the daemon has not created the database."""
    if "user_db" in g:
        conn: sqlite3.Connection = g.user_db
        return conn
    try:
        conn = connect(current_app.config["DATABASE"], readonly=False)
    except DatabaseMissingError:
        raise ServiceUnavailable(
            description="database: the monitor has not created its database yet; nothing can be saved"
        ) from None
    g.user_db = conn
    return conn


def close_user_db(exc: BaseException | None = None) -> None:
    """Close the request's read-write connection, if one was opened."""
    conn = g.pop("user_db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Register the teardown that closes the connection."""
    app.teardown_appcontext(close_user_db)
