"""The JSON API on a simulated week: every route, writes through user_data, bad input as 4xx JSON."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.store.signal_codec import decode
from tests import webutil
from tests.webutil import Client, Week
from web.openapi import document
from web.serve import ServerHandle

week_template = webutil.week_template
week = webutil.week
open_app = webutil.open_app
open_server = webutil.open_server


@pytest.fixture
def client(open_app: Flask) -> FlaskClient:
    return open_app.test_client()


def _token(client: FlaskClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.get("/api/session").get_json()["csrf_token"]}


def _one(week: Week, sql: str, params: tuple[Any, ...] = ()) -> Any:
    conn = sqlite3.connect(week.path)
    try:
        return conn.execute(sql, params).fetchone()
    finally:
        conn.close()


def test_every_api_route_is_in_the_openapi_document_and_nothing_else(open_app: Flask) -> None:
    described = set()
    for path, ops in document()["paths"].items():
        for method in ops:
            described.add((method.upper(), path))
    served = set()
    for rule in open_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule)  # <id64(...):tag_id> -> {tag_id}
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                served.add((method, path))
    assert served == described


def test_every_get_route_answers_json_over_http(week: Week, open_server: ServerHandle) -> None:
    night_id = week.night_ids[-1]
    event_id = _one(week, "SELECT event_id FROM snippets WHERE night_id = ?", (night_id,))[0]
    client = Client(open_server.url)
    for path in [
        "/api/session",
        "/api/state",
        "/api/events",
        "/api/nights",
        f"/api/nights/{night_id}",
        f"/api/events/{event_id}/snippet",
        "/api/tags",
        "/api/checkins",
        "/api/trends",
        "/api/notices",
        "/api/status",
        "/api/openapi.json",
    ]:
        reply = client.request(path)
        assert reply.status == 200, (path, reply.text[:200])
        assert reply.headers["Content-Type"].startswith("application/json"), path
        assert isinstance(reply.json(), dict)


def test_night_detail_has_rows_summary_tags_and_checkin(week: Week, client: FlaskClient) -> None:
    night_id = week.night_ids[0]
    body = client.get(f"/api/nights/{night_id}").get_json()
    assert body["night"]["id"] == night_id
    assert len(body["epochs"]) == _one(week, "SELECT COUNT(*) FROM epochs WHERE night_id = ?", (night_id,))[0]
    assert len(body["events"]) == _one(week, "SELECT COUNT(*) FROM events WHERE night_id = ?", (night_id,))[0]
    assert body["summary"]["night_id"] == night_id and "movement_index_per_h" in body["summary"]
    tags = _one(week, "SELECT COUNT(*) FROM tags WHERE night_date = ?", (body["night"]["night_date"],))[0]
    assert len(body["tags"]) == tags


def test_snippet_is_the_stored_signal_decoded(week: Week, client: FlaskClient) -> None:
    event_id, encoding, blob, rate_hz = _one(
        week, "SELECT event_id, encoding, data, rate_hz FROM snippets LIMIT 1"
    )
    body = client.get(f"/api/events/{event_id}/snippet").get_json()
    expected = decode(encoding, blob)
    assert body["n"] == expected.size and body["rate_hz"] == rate_hz
    assert np.allclose(body["samples"], expected, atol=1e-3)
    missing = client.get("/api/events/nope/snippet")
    assert missing.status_code == 404 and "event_id" in missing.get_json()["error"]


def test_relabel_is_kept_and_the_summary_counts_it(week: Week, client: FlaskClient) -> None:
    night_id = week.night_ids[-1]
    event_id, event_type = _one(
        week,
        "SELECT id, event_type FROM events WHERE night_id = ? AND event_type = 'jerk' LIMIT 1",
        (night_id,),
    )
    before = client.get(f"/api/nights/{night_id}").get_json()["summary"]["counts"]["jerk"]
    reply = client.post(f"/api/events/{event_id}/relabel", json={"label": "spasm"}, headers=_token(client))
    assert reply.status_code == 200 and reply.get_json() == {"event_id": event_id, "label": "spasm"}
    assert _one(week, "SELECT label FROM relabels WHERE event_id = ?", (event_id,))[0] == "spasm"
    assert _one(week, "SELECT event_type FROM events WHERE id = ?", (event_id,))[0] == event_type
    after = client.get(f"/api/nights/{night_id}").get_json()["summary"]["counts"]["jerk"]
    assert after == before - 1
    # the Nights page's cached summary follows the relabel too
    nights_page = client.get("/api/trends").get_json()
    assert nights_page["nights"]


def test_tags_add_list_and_remove(week: Week, client: FlaskClient) -> None:
    headers = _token(client)
    made = client.post(
        "/api/tags",
        json={"night_date": "2026-11-30", "tag": "caffeine", "at_local": "15:30"},
        headers=headers,
    )
    assert made.status_code == 201
    tag_id = made.get_json()["id"]
    again = client.post("/api/tags", json={"night_date": "2026-11-30", "tag": "caffeine"}, headers=headers)
    assert again.get_json()["id"] == tag_id
    listed = client.get("/api/tags").get_json()["tags"]["2026-11-30"]
    assert listed == [{"id": tag_id, "tag": "caffeine", "detail": "", "at_local": "15:30"}]
    assert client.delete(f"/api/tags/{tag_id}", headers=headers).get_json() == {"id": tag_id, "deleted": True}
    assert "2026-11-30" not in client.get("/api/tags").get_json()["tags"]
    gone = client.delete(f"/api/tags/{tag_id}", headers=headers)
    assert gone.status_code == 404 and "tag_id" in gone.get_json()["error"]


def test_checkin_put_writes_and_replaces(week: Week, client: FlaskClient) -> None:
    headers = _token(client)
    first = client.put("/api/checkins/2026-11-30", json={"sleep_quality": 2, "note": "bad"}, headers=headers)
    assert first.status_code == 200
    second = client.put(
        "/api/checkins/2026-11-30", json={"sleep_quality": 5, "spasm_severity": 1}, headers=headers
    )
    checkin = second.get_json()["checkin"]
    assert (checkin["sleep_quality"], checkin["spasm_severity"], checkin["note"]) == (5, 1, "")
    assert _one(week, "SELECT sleep_quality FROM checkins WHERE night_date = '2026-11-30'")[0] == 5


def test_notices_are_listed_and_dismissed(week: Week, client: FlaskClient) -> None:
    conn = sqlite3.connect(week.path)
    with conn:
        conn.execute(
            "INSERT INTO notices (id, created_at, kind, message) VALUES ('n1', '2026-11-22T07:00:00.000Z',"
            " 'trend_rise', 'Spasms per night rose')"
        )
    conn.close()
    assert [n["id"] for n in client.get("/api/notices").get_json()["notices"]] == ["n1"]
    assert "Spasms per night rose" in client.get("/trends").get_data(as_text=True)
    assert client.post("/api/notices/n1/dismiss", headers=_token(client)).status_code == 200
    assert client.get("/api/notices").get_json()["notices"] == []
    assert _one(week, "SELECT dismissed_at FROM notices WHERE id = 'n1'")[0] is not None
    assert client.post("/api/notices/zz/dismiss", headers=_token(client)).status_code == 404


def test_trends_and_status_documents(week: Week, client: FlaskClient) -> None:
    trends = client.get("/api/trends").get_json()
    assert [n["night_id"] for n in trends["nights"]] == week.night_ids
    assert trends["change"]["enough_nights"] is False and trends["change"]["message"]
    assert {c["key"] for c in trends["comparisons"]} >= {"stretching"}
    status = client.get("/api/status").get_json()
    assert status["health"]["healthy"] is False and status["outbox_rows"] == 0
    assert status["disk"]["free_mb"] > 0 and status["database_bytes"] > 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "named"),
    [
        ("post", "/api/tags", {"night_date": "2026-11-31", "tag": "heat"}, 400, "night_date"),
        ("post", "/api/tags", {"night_date": "2026-11-20", "tag": "yoga"}, 400, "tag"),
        ("post", "/api/tags", {"night_date": "2026-11-20", "tag": "custom"}, 400, "detail"),
        (
            "post",
            "/api/tags",
            {"night_date": "2026-11-20", "tag": "heat", "at_local": "9pm"},
            400,
            "at_local",
        ),
        ("post", "/api/tags", {"night_date": "2026-11-20"}, 400, "tag"),
        ("post", "/api/tags", {"night_date": "2026-11-20", "tag": "heat", "colour": "red"}, 400, "colour"),
        ("post", "/api/tags", ["not", "an", "object"], 400, "body"),
        ("post", "/api/tags", {"night_date": 20261120, "tag": "heat"}, 400, "night_date"),
        ("put", "/api/checkins/2026-11-20", {"sleep_quality": 6}, 400, "sleep_quality"),
        ("put", "/api/checkins/2026-11-20", {"sleep_quality": True}, 400, "sleep_quality"),
        ("put", "/api/checkins/2026-11-20", {"spasm_severity": "3"}, 400, "spasm_severity"),
        ("put", "/api/checkins/2026-11-20", {"note": 5}, 400, "note"),
        ("put", "/api/checkins/someday", {}, 400, "night_date"),
        ("post", "/api/events/nope/relabel", {"label": "jerk"}, 400, "event_id"),
        ("post", "/api/events/nope/relabel", {"label": 3}, 400, "label"),
        ("post", "/api/events/nope/relabel", {}, 400, "label"),
        ("delete", "/api/tags/99999", None, 404, "tag_id"),
    ],
)
def test_bad_input_to_each_write_is_4xx_json_naming_the_problem(
    client: FlaskClient, method: str, path: str, body: Any, status: int, named: str
) -> None:
    reply = getattr(client, method)(path, json=body, headers=_token(client))
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert named in reply.get_json()["error"]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/api/trends?limit=0", "limit"),
        ("/api/trends?limit=x", "limit"),
        ("/api/nights?limit=99999", "limit"),
        ("/api/status?verbose=1", "verbose"),
        ("/api/tags?date=1", "date"),
        ("/api/stream?x=1", "x"),
        ("/api/nights/no-such-night", "night"),
        ("/api/events?type=sneeze", "type"),
    ],
)
def test_bad_query_parameters_are_4xx_json_naming_them(client: FlaskClient, path: str, named: str) -> None:
    reply = client.get(path)
    assert 400 <= reply.status_code < 500
    assert named in reply.get_json()["error"]


def test_writes_without_a_database_are_503_json(tmp_path: Any) -> None:
    from web import create_app

    app = create_app({"DATABASE": str(tmp_path / "none.sqlite3"), "LOGIN_REQUIRED": False})
    client = app.test_client()
    reply = client.post("/api/tags", json={"night_date": "2026-11-20", "tag": "heat"}, headers=_token(client))
    assert reply.status_code == 503 and "database" in reply.get_json()["error"]
    assert not (tmp_path / "none.sqlite3").exists()
