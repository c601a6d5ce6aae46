"""The web app's read-only SQLite connection: one per request, kept in ``g``, closed on teardown.

The daemon owns the database file and writes it in WAL mode; this process only reads detector
data, so it opens the file with ``mode=ro`` (a write through this connection fails) and a busy
timeout, so a checkpoint or WAL recovery in the daemon makes a request wait rather than fail.
A file that does not exist yet, or exists with no schema (``PRAGMA user_version`` 0), means the
daemon has not started: ``get_db()`` returns None and the views say "no data yet".
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, g

from service.store.migrations import SCHEMA_VERSION

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
"""How long a query waits for a lock held by the daemon before giving up (sqlite3 ``timeout``)."""


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """What /healthz reports: whether the file exists and which schema version it holds.

    ``schema_version`` is None when the file is missing or unreadable, 0 when it exists but
    the daemon has not applied the schema yet.
    """

    present: bool
    schema_version: int | None
    error: str | None = None


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """Open ``path`` read-only (SQLite URI ``mode=ro``) with the busy timeout.

    Raises ``sqlite3.OperationalError`` if the file does not exist (read-only mode never
    creates it). The path is turned into a ``file:`` URI with percent-escapes, so names with
    spaces, ``?`` or ``#`` work.
    """
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    return conn


def get_db() -> sqlite3.Connection | None:
    """The request's read-only connection, or None while there is no data yet.

    None means the file is missing or has no schema. A file that exists but is not a usable
    SQLite database raises ``sqlite3.DatabaseError``; the app turns that into a 503.
    """
    if "db" in g:
        conn: sqlite3.Connection | None = g.db
        return conn
    path = Path(current_app.config["DATABASE"])
    conn = None
    if path.exists():
        try:
            conn = connect_readonly(path)
        except sqlite3.OperationalError:
            # Removed between the check and the open: the same as never created.
            if path.exists():
                raise
            conn = None
    if conn is not None:
        try:
            version = _user_version(conn)
        except BaseException:
            conn.close()
            raise
        if version == 0:
            conn.close()
            conn = None
        elif version > SCHEMA_VERSION:
            logger.warning(
                "database %s has schema version %d; this web app knows up to %d",
                path,
                version,
                SCHEMA_VERSION,
            )
    g.db = conn
    return conn


def database_status() -> DatabaseStatus:
    """Probe the configured file for /healthz without raising on a broken database."""
    path = Path(current_app.config["DATABASE"])
    if not path.exists():
        return DatabaseStatus(present=False, schema_version=None)
    try:
        conn = connect_readonly(path)
        try:
            version = _user_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if not path.exists():
            return DatabaseStatus(present=False, schema_version=None)
        return DatabaseStatus(present=True, schema_version=None, error=str(exc))
    return DatabaseStatus(present=True, schema_version=version)


def close_db(exc: BaseException | None = None) -> None:
    """Close the request's connection, if one was opened (``teardown_appcontext`` hook)."""
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Register the teardown that closes the connection."""
    app.teardown_appcontext(close_db)


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    # A non-database file passes connect() and fails here with DatabaseError.
    return int(row[0])
