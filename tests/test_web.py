"""The web app over a real SQLite file, served by waitress on loopback and read with urllib."""

from __future__ import annotations

import hashlib
import html
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service.detect.types import EVENT_TYPES
from service.store.migrations import SCHEMA_VERSION
from tests.webutil import (
    add_event,
    add_night,
    create_database,
    dump_tables,
    http,
    set_live_state,
    write,
)
from web import create_app, display
from web.db import get_db
from web.serve import ServerHandle, start_in_thread

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def local_hms(utc_text: str) -> str:
    return datetime.fromisoformat(utc_text).astimezone().strftime("%H:%M:%S")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "bedside.sqlite3"
    create_database(path)
    return path


@pytest.fixture
def events_db(db_path: Path) -> dict[str, Any]:
    """Two nights; the second (current) has four events and a live state."""
    add_night(db_path, "n1", "2026-11-21T22:00:00.000Z", "2026-11-22T06:30:00.000Z")
    add_night(db_path, "n2", "2026-11-22T22:05:00.000Z", profile="wasm2016")
    old = add_event(db_path, "e0", "n1", "jerk", "2026-11-22T01:00:00.000Z", "2026-11-22T01:00:00.300Z", 0.3)
    current = [
        add_event(
            db_path,
            "e1",
            "n2",
            "jerk",
            "2026-11-23T01:00:00.120Z",
            "2026-11-23T01:00:00.420Z",
            0.3,
            intensity=6.25,
        ),
        add_event(
            db_path,
            "e2",
            "n2",
            "limb_movement",
            "2026-11-23T01:10:00.000Z",
            "2026-11-23T01:10:02.500Z",
            2.5,
            details={"peak": 4.0},
        ),
        add_event(
            db_path,
            "e3",
            "n2",
            "awakening",
            "2026-11-23T01:10:05.000Z",
            "2026-11-23T01:12:05.000Z",
            120.0,
            intensity=0.0,
            confidence=None,
            cause_id="e2",
        ),
        add_event(
            db_path,
            "e4",
            "n2",
            "plm_series",
            "2026-11-23T01:20:00.000Z",
            "2026-11-23T01:24:00.000Z",
            240.0,
            profile="wasm2016",
            details={"movements": 5, "mean_interval_s": 48.5},
        ),
    ]
    state = {
        "in_bed": True,
        "moving": False,
        "asleep": False,
        "sensor_ok": True,
        "night_id": "n2",
        "counts": {"jerk": 1, "limb_movement": 1},
        "heart_bpm": 58.4,
        "breath_bpm": 13.0,
        "mqtt_connected": False,
        "outbox_len": 7,
        "tracking": True,
        "profile": "wasm2016",
        "movements_per_hour": 12.345,
        "suppressed_events": 0,
        "updated_at": "2026-11-23T01:24:01.000Z",
        "some_new_key": 3,
    }
    set_live_state(db_path, state, "2026-11-23T01:24:01.000Z")
    return {"path": db_path, "old": old, "current": current, "state": state}


@pytest.fixture
def app(db_path: Path) -> Flask:
    return create_app({"DATABASE": str(db_path), "SECRET_KEY": "test", "LOGIN_REQUIRED": False})


@pytest.fixture
def server(app: Flask) -> Iterator[ServerHandle]:
    with start_in_thread(app) as handle:
        yield handle


def get_json(app: Flask, url: str) -> tuple[int, Any]:
    with app.test_client() as client:
        response = client.get(url)
        return response.status_code, response.get_json()


# --- Tonight page and the API over real HTTP -------------------------------------------


def test_tonight_page_over_http_shows_the_current_nights_events_and_live_state(
    events_db: dict[str, Any], server: ServerHandle
) -> None:
    reply = http(server.url + "/")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    page = html.unescape(reply.text)
    assert 'name="viewport"' in page
    for event in events_db["current"]:
        assert f'data-id="{event["id"]}"' in page
        assert local_hms(event["start"]) in page
    assert 'data-id="e0"' not in page  # last night's event
    assert "Limb movement" in page and "PLM series" in page and "Awakening" in page
    assert "2 min 00 s" in page and "4 min 00 s" in page and "6.2" in page
    # live state, as far as it goes
    assert re.search(r"<dt>In bed</dt><dd>yes</dd>", page)
    assert re.search(r"<dt>Heart rate</dt><dd>58 /min</dd>", page)
    assert re.search(r"<dt>MQTT</dt><dd>offline</dd>", page)
    assert re.search(r"<dt>Unsent messages</dt><dd>7</dd>", page)
    # counts by type for tonight
    assert re.search(r'data-type="jerk"><th scope="row">Jerk</th><td>1</td>', page)
    assert re.search(r'data-type="spasm"><th scope="row">Spasm</th><td>0</td>', page)
    assert "WASM2016" in page
    # every live-state key under a human label, values formatted, internal ones hidden
    assert re.search(r"<dt>Recording</dt><dd>on</dd>", page)
    assert re.search(r"<dt>Rule profile</dt><dd>WASM2016</dd>", page)
    assert re.search(r"<dt>Movements per hour of sleep</dt><dd>12.3</dd>", page)
    assert re.search(rf"<dt>Last update</dt><dd>{local_hms('2026-11-23T01:24:01.000Z')}</dd>", page)
    assert re.search(r"<dt>Some new key</dt><dd>3</dd>", page)
    assert 'data-key="suppressed_events"' not in page, "shown only when some events were held back"
    for raw in ("tracking", "profile", "movements_per_hour", "updated_at", "night_id", "counts"):
        assert f"<dt>{raw}</dt>" not in page
    assert re.search(r'<p id="nodata"[^>]*hidden', page)
    # the refresher and its inputs
    assert 'src="/static/tonight.js"' in page
    assert 'data-state-url="/api/state"' in page and 'data-refresh-ms="2000"' in page
    labels = re.search(r'data-event-labels="([^"]*)"', reply.text)
    assert labels is not None and ["plm_series", "PLM series"] in json.loads(html.unescape(labels.group(1)))


def test_api_events_over_http_returns_exactly_the_current_nights_events_oldest_first(
    events_db: dict[str, Any], server: ServerHandle
) -> None:
    reply = http(server.url + "/api/events")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert body == {"night_id": "n2", "events": events_db["current"], "truncated": False}
    assert set(body["events"][0]) == {
        "id",
        "event_type",
        "start",
        "end",
        "duration_s",
        "intensity",
        "profile",
        "confidence",
        "cause_id",
        "night_id",
        "details",
    }


def test_api_state_over_http_gives_the_live_state_row_and_current_night(
    events_db: dict[str, Any], server: ServerHandle
) -> None:
    body = http(server.url + "/api/state").json()
    assert body["unit_id"] == "bedside"
    assert body["state"] == events_db["state"]
    assert body["updated_at"] == "2026-11-23T01:24:01.000Z"
    assert isinstance(body["age_s"], float)
    assert body["night_id"] == "n2"
    assert body["night"]["id"] == "n2" and body["night"]["ended_at"] is None
    assert body["night"]["counts"]["plm_series"] == 1 and body["night"]["total_events"] == 4


def test_api_nights_lists_nights_newest_first_with_counts_per_type(
    events_db: dict[str, Any], app: Flask
) -> None:
    status, body = get_json(app, "/api/nights")
    assert status == 200
    assert [night["id"] for night in body["nights"]] == ["n2", "n1"]
    n2, n1 = body["nights"]
    assert n2["started_at"] == "2026-11-22T22:05:00.000Z" and n2["ended_at"] is None
    assert n2["profile"] == "wasm2016"
    tonight = {"jerk": 1, "limb_movement": 1, "awakening": 1, "plm_series": 1}
    assert n2["counts"] == dict.fromkeys(EVENT_TYPES, 0) | tonight
    assert n1["counts"]["jerk"] == 1 and n1["total_events"] == 1
    assert n1["ended_at"] == "2026-11-22T06:30:00.000Z"
    assert [n["id"] for n in get_json(app, "/api/nights?limit=1")[1]["nights"]] == ["n2"]


def test_healthz_reports_present_database_and_its_schema_version(
    events_db: dict[str, Any], server: ServerHandle
) -> None:
    reply = http(server.url + "/healthz")
    assert reply.status == 200
    assert reply.json() == {"ok": True, "database": "present", "schema_version": SCHEMA_VERSION}


# --- /api/events filters -----------------------------------------------------------------


def ids(app: Flask, query: str) -> list[str]:
    status, body = get_json(app, "/api/events" + query)
    assert status == 200, body
    return [event["id"] for event in body["events"]]


def test_api_events_filters_by_night(events_db: dict[str, Any], app: Flask) -> None:
    status, body = get_json(app, "/api/events?night=n1")
    assert status == 200
    assert body == {"night_id": "n1", "events": [events_db["old"]], "truncated": False}


def test_api_events_filters_by_type_and_types_may_repeat(events_db: dict[str, Any], app: Flask) -> None:
    assert ids(app, "?type=jerk") == ["e1"]
    assert ids(app, "?type=jerk&type=plm_series") == ["e1", "e4"]
    assert ids(app, "?type=spasm") == []


def test_api_events_since_keeps_events_starting_at_or_after_it_in_any_zone(
    events_db: dict[str, Any], app: Flask
) -> None:
    assert ids(app, "?since=2026-11-23T01:10:00Z") == ["e2", "e3", "e4"]
    assert ids(app, "?since=2026-11-23T01:10:00.001Z") == ["e3", "e4"]
    assert ids(app, "?since=2026-11-23T02:10:00%2B01:00") == ["e2", "e3", "e4"]
    assert ids(app, "?since=2026-11-23T01:10:00Z&type=awakening") == ["e3"]


def test_api_events_limit_keeps_the_newest_and_says_it_truncated(
    events_db: dict[str, Any], app: Flask
) -> None:
    status, body = get_json(app, "/api/events?limit=2")
    assert status == 200
    assert [event["id"] for event in body["events"]] == ["e3", "e4"]
    assert body["truncated"] is True
    assert get_json(app, "/api/events?limit=4")[1]["truncated"] is False
    assert ids(app, "?limit=5000") == ["e1", "e2", "e3", "e4"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=5001", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "limit"),
        ("type=sneeze", "type"),
        ("since=yesterday", "since"),
        ("since=2026-11-23T01:10:00", "since"),
        ("night=", "night"),
        ("nigth=n2", "nigth"),
    ],
)
def test_api_events_bad_parameter_gives_400_json_naming_it(
    events_db: dict[str, Any], app: Flask, query: str, parameter: str
) -> None:
    status, body = get_json(app, "/api/events?" + query)
    assert status == 400
    assert body["parameter"] == parameter
    assert body["error"].startswith(parameter + ": ")


def test_api_bad_parameter_over_http_is_json(events_db: dict[str, Any], server: ServerHandle) -> None:
    reply = http(server.url + "/api/events?limit=0")
    assert reply.status == 400
    assert reply.headers["Content-Type"] == "application/json"
    expected = "limit: must be a whole number from 1 to 5000, got '0'"
    assert reply.json() == {"error": expected, "parameter": "limit"}


def test_api_events_for_an_unknown_night_is_404_naming_night(events_db: dict[str, Any], app: Flask) -> None:
    status, body = get_json(app, "/api/events?night=n9")
    assert status == 404
    assert body == {"error": "night: no night with id 'n9'", "parameter": "night"}


def test_unknown_api_path_is_404_json_and_wrong_method_is_405_json(
    events_db: dict[str, Any], server: ServerHandle
) -> None:
    missing = http(server.url + "/api/sleepwalks")
    assert missing.status == 404
    assert missing.json() == {"error": "no such endpoint: /api/sleepwalks"}
    wrong = http(server.url + "/api/events", method="POST")
    assert wrong.status == 405
    assert "POST" in wrong.json()["error"]
    assert "GET" in wrong.headers["Allow"]
    page = http(server.url + "/no-such-page")
    assert page.status == 404 and page.headers["Content-Type"].startswith("text/html")


def test_event_details_that_are_not_json_become_an_empty_object(db_path: Path, app: Flask) -> None:
    add_night(db_path, "n1", "2026-11-22T22:00:00.000Z")
    add_event(db_path, "e1", "n1", "spasm", "2026-11-23T01:00:00.000Z", "2026-11-23T01:00:03.000Z", 3.0)
    write(db_path, "UPDATE events SET details = 'not json' WHERE id = 'e1'")
    status, body = get_json(app, "/api/events")
    assert status == 200
    assert body["events"][0]["details"] == {}


# --- No data yet, broken data ------------------------------------------------------------


def test_missing_database_gives_no_data_page_and_empty_api_not_500(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet.sqlite3"
    app = create_app({"DATABASE": str(missing), "SECRET_KEY": "test", "LOGIN_REQUIRED": False})
    with start_in_thread(app) as handle:
        page = http(handle.url + "/")
        assert page.status == 200
        assert "No data yet" in page.text
        assert re.search(r'<p id="nodata"[^>]*>', page.text) and not re.search(
            r'<p id="nodata"[^>]*hidden', page.text
        )
        health = http(handle.url + "/healthz")
        assert health.status == 200
        assert health.json() == {"ok": True, "database": "missing", "schema_version": None}
        assert http(handle.url + "/api/events").json() == {"night_id": None, "events": [], "truncated": False}
        assert http(handle.url + "/api/nights").json() == {"nights": []}
        state = http(handle.url + "/api/state").json()
        assert state["state"] is None and state["night_id"] is None
        assert http(handle.url + "/api/events?night=n1").status == 404
    assert not missing.exists()  # reading never creates it


def test_database_without_schema_yet_counts_as_no_data(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    app = create_app({"DATABASE": str(empty), "SECRET_KEY": "test", "LOGIN_REQUIRED": False})
    with app.test_client() as client:
        page = client.get("/")
        assert page.status_code == 200 and b"No data yet" in page.data
        assert client.get("/healthz").get_json() == {"ok": True, "database": "present", "schema_version": 0}
        assert client.get("/api/events").get_json()["events"] == []


def test_a_file_that_is_not_a_database_gives_503_json_not_500(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not an SQLite file at all, just some text " * 100)
    app = create_app({"DATABASE": str(junk), "SECRET_KEY": "test", "LOGIN_REQUIRED": False})
    with app.test_client() as client:
        api = client.get("/api/events")
        assert api.status_code == 503 and api.get_json()["error"].startswith("database unavailable")
        assert client.get("/").status_code == 503
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.get_json()["ok"] is False and health.get_json()["database"] == "present"


# --- Read-only --------------------------------------------------------------------------


def test_the_web_app_leaves_the_database_unchanged(events_db: dict[str, Any], server: ServerHandle) -> None:
    path: Path = events_db["path"]
    before = dump_tables(path)
    main_file = hashlib.sha256(path.read_bytes()).hexdigest()
    for url in ["/", "/api/events", "/api/state", "/api/nights", "/healthz", "/api/events?night=n1"]:
        assert http(server.url + url).status == 200
    assert dump_tables(path) == before
    assert hashlib.sha256(path.read_bytes()).hexdigest() == main_file


def test_the_apps_connection_refuses_writes(events_db: dict[str, Any], app: Flask) -> None:
    with app.app_context():
        conn = get_db()
        assert conn is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM events")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO live_state VALUES ('x', '2026-11-23T00:00:00.000Z', '{}')")
    assert len(dump_tables(events_db["path"])["events"]) == 5


def test_a_writer_holding_a_write_transaction_does_not_block_api_events(
    events_db: dict[str, Any], server: ServerHandle
) -> None:
    writer = sqlite3.connect(events_db["path"], isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity,"
            " profile) VALUES ('uncommitted', 'n2', 'spasm', '2026-11-23T02:00:00.000Z',"
            " '2026-11-23T02:00:03.000Z', 3.0, 9.0, 'aasm')"
        )
        started = time.monotonic()
        reply = http(server.url + "/api/events", timeout_s=4.0)
        elapsed_s = time.monotonic() - started
        assert reply.status == 200
        assert [event["id"] for event in reply.json()["events"]] == ["e1", "e2", "e3", "e4"]
        assert elapsed_s < 2.0  # not waiting out the busy timeout
        assert http(server.url + "/").status == 200
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert [e["id"] for e in http(server.url + "/api/events").json()["events"]][-1] == "uncommitted"


# --- Nothing from the internet ----------------------------------------------------------

EXTERNAL_URL = re.compile(r"https?://(?!(?:localhost|127\.0\.0\.1|\[::1\])(?:[:/]|$))", re.IGNORECASE)


def test_no_page_or_static_file_refers_to_an_external_host(events_db: dict[str, Any], app: Flask) -> None:
    static_files = sorted(p for p in (WEB_DIR / "static").iterdir() if p.is_file())
    assert {p.name for p in static_files} >= {"tonight.js", "style.css"}
    missing_app = create_app(
        {
            "DATABASE": str(events_db["path"].parent / "none.sqlite3"),
            "SECRET_KEY": "t",
            "LOGIN_REQUIRED": False,
        }
    )
    bodies = {
        "/": app.test_client().get("/").data,
        "/ (no data)": missing_app.test_client().get("/").data,
        "/missing": app.test_client().get("/missing").data,
    }
    for path in static_files:
        response = app.test_client().get(f"/static/{path.name}")
        assert response.status_code == 200
        bodies[path.name] = response.data
        response.close()
    assert EXTERNAL_URL.search("see https://example.org/x") and not EXTERNAL_URL.search(
        "http://localhost:8080/"
    )
    for name, body in bodies.items():
        assert not EXTERNAL_URL.search(body.decode("utf-8")), name
    for template in (WEB_DIR / "templates").iterdir():
        assert not EXTERNAL_URL.search(template.read_text(encoding="utf-8")), template.name


def test_pages_forbid_loading_anything_from_elsewhere(events_db: dict[str, Any], app: Flask) -> None:
    with app.test_client() as client:
        policy = client.get("/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy


def test_web_imports_no_hardware_mqtt_or_gpio_modules() -> None:
    code = (
        "import sys, web, web.serve, web.api, web.dashboard, web.db, web.display, web.queries, web.stream\n"
        "shared = {'hardware', 'hardware.block', 'hardware.errors'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('paho', 'gpiozero', 'hardware')"
        " and m not in shared)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == ""


# --- App factory and the thread server ---------------------------------------------------


def test_without_a_secret_key_one_is_kept_private_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BEDSIDE_SECRET_KEY", raising=False)
    first = create_app({"DATABASE": str(tmp_path / "x.sqlite3")})
    second = create_app({"DATABASE": str(tmp_path / "x.sqlite3")})
    key_file = tmp_path / "web-secret-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == key_file.read_text().strip()
    assert len(first.config["SECRET_KEY"]) >= 32 and first.config["SECRET_KEY"] != "dev"
    other = tmp_path / "other"
    other.mkdir()
    assert (
        create_app({"DATABASE": str(other / "x.sqlite3")}).config["SECRET_KEY"] != first.config["SECRET_KEY"]
    )
    assert create_app({"DATABASE": "x", "SECRET_KEY": "given"}).config["SECRET_KEY"] == "given"
    monkeypatch.setenv("BEDSIDE_SECRET_KEY", "from-the-environment")
    assert (
        create_app({"DATABASE": str(tmp_path / "x.sqlite3")}).config["SECRET_KEY"] == "from-the-environment"
    )


def test_database_defaults_to_bedside_db_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEDSIDE_STORAGE__DB_PATH", str(tmp_path / "env.sqlite3"))
    assert create_app().config["DATABASE"] == str(tmp_path / "env.sqlite3")
    monkeypatch.delenv("BEDSIDE_STORAGE__DB_PATH")
    assert create_app().config["DATABASE"].endswith("/var/bedside.sqlite3")


def test_thread_server_picks_a_free_port_and_stop_closes_it(app: Flask) -> None:
    handle = start_in_thread(app, port=0)
    try:
        assert handle.port > 0
        assert http(handle.url + "/healthz").status == 200
        other = start_in_thread(app, port=0)
        with other:
            assert other.port != handle.port
    finally:
        handle.stop()
    handle.stop()  # idempotent
    with pytest.raises(OSError):
        http(handle.url + "/healthz", timeout_s=2.0)
    assert not any(t.name == f"bedside-web-{handle.port}" for t in threading.enumerate())


def test_thread_server_stops_while_a_client_keeps_a_connection_open(app: Flask) -> None:
    import socket

    handle = start_in_thread(app)
    client = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    try:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b'"ok":true' not in received:
            chunk = client.recv(4096)
            assert chunk, "connection closed before the answer was complete"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        handle.stop(timeout_s=3.0)
        assert client.recv(4096) == b""  # the server closed the keep-alive connection
    finally:
        client.close()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.3, "0.3 s"), (9.94, "9.9 s"), (42.4, "42 s"), (125.0, "2 min 05 s"), (3725.0, "1 h 02 min")],
)
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert display.duration(seconds) == text
