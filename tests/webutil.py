"""Helpers for the web tests: a real SQLite file with the current schema, daemon-style rows, HTTP GETs."""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from service.store.migrations import MIGRATIONS

logger = logging.getLogger(__name__)

# No proxy from the environment may stand between the tests and the loopback server.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def create_database(path: Path) -> None:
    """Create ``path`` the way the daemon does: every migration, user_version, WAL mode."""
    conn = sqlite3.connect(path)
    try:
        for migration in MIGRATIONS:
            conn.executescript(migration)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.commit()
    finally:
        conn.close()


def write(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement in its own connection and commit it."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def add_night(
    path: Path,
    night_id: str,
    started_at: str,
    ended_at: str | None = None,
    profile: str = "aasm",
    unit_id: str = "bedside",
) -> None:
    """Insert one row into ``nights``."""
    write(
        path,
        "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source)"
        " VALUES (?, ?, ?, ?, ?, 'simulated')",
        (night_id, unit_id, started_at, ended_at, profile),
    )


def add_event(
    path: Path,
    event_id: str,
    night_id: str,
    event_type: str,
    start_at: str,
    end_at: str,
    duration_s: float,
    intensity: float = 3.5,
    profile: str = "aasm",
    confidence: float | None = 0.9,
    cause_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Insert one row into ``events``; return it as /api/events should give it."""
    write(
        path,
        "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity,"
        " profile, confidence, cause_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            night_id,
            event_type,
            start_at,
            end_at,
            duration_s,
            intensity,
            profile,
            confidence,
            cause_id,
            json.dumps(details or {}),
        ),
    )
    return {
        "id": event_id,
        "event_type": event_type,
        "start": start_at,
        "end": end_at,
        "duration_s": duration_s,
        "intensity": intensity,
        "profile": profile,
        "confidence": confidence,
        "cause_id": cause_id,
        "night_id": night_id,
        "details": details or {},
    }


def set_live_state(path: Path, state: dict[str, Any], updated_at: str, unit_id: str = "bedside") -> None:
    """Upsert the daemon's ``live_state`` row."""
    write(
        path,
        "INSERT INTO live_state (unit_id, updated_at, state) VALUES (?, ?, ?)"
        " ON CONFLICT(unit_id) DO UPDATE SET updated_at = excluded.updated_at, state = excluded.state",
        (unit_id, updated_at, json.dumps(state)),
    )


def dump_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every user table's rows, sorted, plus the schema text: to show nothing changed."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        dump = {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr) for name in names}
        dump["__schema__"] = conn.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
        dump["__user_version__"] = conn.execute("PRAGMA user_version").fetchall()
        return dump
    finally:
        conn.close()


@dataclass
class Reply:
    """An HTTP answer, read in full (the connection is closed)."""

    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def http(url: str, method: str = "GET", timeout_s: float = 5.0) -> Reply:
    """Send one request and return the answer, 4xx and 5xx included (no exception)."""
    request = urllib.request.Request(url, method=method)
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, error.headers, error.read())
