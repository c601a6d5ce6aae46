"""Helpers for the web tests: a real SQLite file, daemon-style rows, HTTP clients, a simulated week."""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service.demo_history import build_history
from service.store.migrations import MIGRATIONS
from web import create_app
from web.serve import ServerHandle, start_in_thread

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand redirects back as answers (status 302 and its Location), so tests can check them."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _FromAddress(urllib.request.HTTPHandler):
    """Connect from a chosen local address (another loopback address is another client)."""

    def __init__(self, source_ip: str) -> None:
        super().__init__()
        self.source_ip = source_ip

    def http_open(self, req: urllib.request.Request) -> Any:
        import functools
        import http.client

        connection = functools.partial(http.client.HTTPConnection, source_address=(self.source_ip, 0))
        return self.do_open(connection, req)


class Client:
    """A browser-like HTTP client for the real server: keeps cookies, never follows redirects.

    ``source_ip`` (e.g. ``127.0.0.7``) makes the server see another client address.
    """

    def __init__(self, base_url: str, source_ip: str | None = None) -> None:
        import http.cookiejar

        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[Any] = [
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirect(),
        ]
        if source_ip is not None:
            handlers.append(_FromAddress(source_ip))
        self._opener = urllib.request.build_opener(*handlers)

    def session_cookie(self) -> str:
        """The ``Cookie`` header value this client would send (to replay it from elsewhere)."""
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)

    def request(
        self,
        path: str,
        method: str = "GET",
        *,
        form: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        body: bytes | None = None,
    ) -> Reply:
        """Send one request (a form, a JSON body, raw ``body`` bytes or nothing); 3xx, 4xx and 5xx
        are returned too."""
        import urllib.parse

        data = body
        all_headers = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)
        try:
            with self._opener.open(req, timeout=timeout_s) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, error.headers, error.read())

    def csrf(self) -> str:
        """This session's CSRF token (from /api/session; works whenever the session may see the API)."""
        reply = self.request("/api/session")
        assert reply.status == 200, reply.text
        token = reply.json()["csrf_token"]
        assert isinstance(token, str) and token
        return token

    def form_token(self, path: str) -> str:
        """The CSRF token in the first form of the page at ``path`` (for the login page)."""
        import re

        page = self.request(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, f"no CSRF field in {path}"
        return found.group(1)


def copy_database(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite database (the backup API, so a WAL is included)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


# --- Fixtures for tests/web/ (import them into a test module by name) ---------------------

WEEK_NIGHTS = 7


@dataclass(frozen=True)
class Week:
    """A copy of the simulated week for one test: its path and night ids (oldest first)."""

    path: Path
    night_ids: list[str]


@pytest.fixture(scope="session")
def week_template(tmp_path_factory: pytest.TempPathFactory) -> Week:
    """Seven simulated nights (events, epochs, vitals, snippets, raw signal for 2, tags, check-ins)."""
    # Built once per test run, even though each module registers this fixture anew.
    folder = tmp_path_factory.getbasetemp() / "simulated-week"
    path = folder / "week.sqlite3"
    ids_file = folder / "night-ids.txt"
    if not ids_file.exists():
        folder.mkdir(exist_ok=True)
        ids = build_history(path, nights=WEEK_NIGHTS, first_date=date(2026, 11, 14), seed=3, raw_days=2)
        ids_file.write_text("\n".join(ids), encoding="utf-8")
    return Week(path, ids_file.read_text(encoding="utf-8").split("\n"))


@pytest.fixture
def week(week_template: Week, tmp_path: Path) -> Week:
    """This test's own copy of the week (tests write tags, check-ins, relabels)."""
    return Week(
        copy_database(week_template.path, tmp_path / "bedside.sqlite3"), list(week_template.night_ids)
    )


@pytest.fixture
def open_app(week: Week) -> Flask:
    """The app as served on loopback: no login."""
    return create_app({"DATABASE": str(week.path), "LOGIN_REQUIRED": False, "STREAM_MAX_S": 3.0})


@pytest.fixture
def open_server(open_app: Flask) -> Iterator[ServerHandle]:
    with start_in_thread(open_app) as handle:
        yield handle
