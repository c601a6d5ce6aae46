"""The Trends page: its range of nights (``?range=``), the window the comparison covers, and the
change notice with its Dismiss form, through Flask's test client on real SQLite files."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask

from service.history.summary import SUMMARY_VERSION
from tests import webutil
from tests.webutil import Week
from web import create_app

week_template = webutil.week_template
week = webutil.week
open_app = webutil.open_app

NIGHTS = 200
FIRST = date(2026, 1, 1)
OLD_TAGGED = 10
"""Nights tagged ``heat`` among the oldest 100 (outside the last 90)."""
NEW_TAGGED = 6
"""Nights tagged ``heat`` among the newest 90."""


def _dates() -> list[str]:
    return [(FIRST + timedelta(days=i)).isoformat() for i in range(NIGHTS)]


@pytest.fixture(scope="module")
def long_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 ended nights, one a day, each with a stored current summary (movement index = its
    day number, so every dot is distinct); ``heat`` tags on 10 old and 6 recent nights."""
    path = tmp_path_factory.mktemp("trends") / "bedside.sqlite3"
    webutil.create_database(path)
    conn = sqlite3.connect(path)
    with conn:
        for i, d in enumerate(_dates()):
            summary = {
                "summary_version": SUMMARY_VERSION,
                "movement_index_per_h": float(i + 1),
                "spasms": {"count": i % 4, "mean_intensity": 50.0 if i % 4 else None},
                "awakenings": 2,
                "efficiency_pct": 85.0,
            }
            conn.execute(
                "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source, kind, night_date,"
                " summary) VALUES (?, 'bedside', ?, ?, 'aasm', 'simulated', 'night', ?, ?)",
                (f"n{i:03d}", f"{d}T22:00:00.000Z", f"{d}T23:59:00.000Z", d, json.dumps(summary)),
            )
        tagged = _dates()[:OLD_TAGGED] + _dates()[-NEW_TAGGED:]
        for d in tagged:
            conn.execute(
                "INSERT INTO tags (night_date, tag, detail, created_at, source) VALUES (?, 'heat', '',"
                " '2026-01-01T00:00:00.000Z', 'test')",
                (d,),
            )
    conn.close()
    return path


@pytest.fixture
def long_app(long_history: Path) -> Flask:
    return create_app({"DATABASE": str(long_history), "LOGIN_REQUIRED": False})


def _dot_dates(page: str) -> list[str]:
    chart = page.split('data-chart="trend-movement_index_per_h"')[1].split("</figure>")[0]
    return re.findall(r'<circle class="dot"[^>]* data-date="([^"]+)"', chart)


def _window(page: str) -> dict[str, str]:
    found = re.search(r'<p class="muted" id="trend-window"([^>]*)>', page)
    assert found, "no #trend-window"
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', found.group(1)))


@pytest.mark.parametrize(
    ("query", "shown"),
    [("", 90), ("?range=90", 90), ("?range=180", 180), ("?range=365", NIGHTS), ("?range=all", NIGHTS)],
)
def test_trends_shows_the_chosen_range_of_newest_nights(long_app: Flask, query: str, shown: int) -> None:
    reply = long_app.test_client().get(f"/trends{query}")
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    newest = _dates()[-shown:]
    assert _dot_dates(page) == newest  # one dot per night of the range, oldest first
    assert _window(page) == {
        "nights": str(shown),
        "recorded": str(NIGHTS),
        "first": newest[0],
        "last": newest[-1],
    }
    assert f"Showing {shown} of {NIGHTS} recorded nights, {newest[0]} to {newest[-1]}." in page
    chosen = query.removeprefix("?range=") or "90"
    assert f'id="trend-range" data-range="{chosen}"' in page
    links = re.findall(r'<a href="(/trends\?range=[^"]+)" data-range="([^"]+)"( aria-current="page")?', page)
    assert [(href, r) for href, r, _ in links] == [
        (f"/trends?range={r}", r) for r in ("90", "180", "365", "all")
    ]
    assert [r for _, r, current in links if current] == [chosen]


@pytest.mark.parametrize(("query", "with_n"), [("", NEW_TAGGED), ("?range=all", NEW_TAGGED + OLD_TAGGED)])
def test_with_and_without_covers_the_nights_shown_and_says_so(
    long_app: Flask, query: str, with_n: int
) -> None:
    page = long_app.test_client().get(f"/trends{query}").get_data(as_text=True)
    shown = 90 if not query else NIGHTS
    newest = _dates()[-shown:]
    comparison = page.split('class="comparison" data-tag="heat"')[1].split("</h3>")[0]
    assert f"({with_n} with, {shown - with_n} without)" in comparison
    window = page.split('id="comparison-window"')[1].split("</p>")[0]
    assert f"Over the {shown} nights shown ({newest[0]} to {newest[-1]};" in window


def test_trends_refuses_an_unknown_range_naming_the_parameter(long_app: Flask) -> None:
    for bad in ("30", "year", ""):
        reply = long_app.test_client().get(f"/trends?range={bad}")
        assert reply.status_code == 400, bad
        assert b"range: must be one of 90, 180, 365, all" in reply.data


def test_api_trends_reports_its_window(long_app: Flask) -> None:
    doc = long_app.test_client().get("/api/trends?limit=30").get_json()
    assert doc["window"] == {
        "nights": 30,
        "first_date": _dates()[-30],
        "last_date": _dates()[-1],
        "limit": 30,
        "recorded": NIGHTS,
    }
    assert [n["night_date"] for n in doc["nights"]] == _dates()[-30:]


def test_the_cached_analysis_follows_a_new_tag_and_equals_a_fresh_one(
    long_history: Path, tmp_path: Path
) -> None:
    path = webutil.copy_database(long_history, tmp_path / "copy.sqlite3")
    app = create_app({"DATABASE": str(path), "LOGIN_REQUIRED": False})
    client = app.test_client()
    first = client.get("/api/trends?limit=90").get_json()
    assert client.get("/api/trends?limit=90").get_json() == first  # served from the cache
    heat = next(c for c in first["comparisons"] if c["key"] == "heat")
    assert (heat["n_with"], heat["n_without"]) == (NEW_TAGGED, 90 - NEW_TAGGED)

    token = client.get("/api/session").get_json()["csrf_token"]
    reply = client.post(
        "/api/tags", json={"night_date": _dates()[-30], "tag": "heat"}, headers={"X-CSRF-Token": token}
    )
    assert reply.status_code in (200, 201), reply.get_data(as_text=True)
    again = client.get("/api/trends?limit=90").get_json()
    heat = next(c for c in again["comparisons"] if c["key"] == "heat")
    assert (heat["n_with"], heat["n_without"]) == (NEW_TAGGED + 1, 90 - NEW_TAGGED - 1)
    fresh = create_app({"DATABASE": str(path), "LOGIN_REQUIRED": False}).test_client()
    assert fresh.get("/api/trends?limit=90").get_json() == again


# --- the change notice on the dashboard -------------------------------------------------------


def _add_notice(path: Path, notice_id: str, message: str, created_at: str) -> None:
    webutil.write(
        path,
        "INSERT INTO notices (id, created_at, kind, message, details) VALUES (?, ?, 'trend_rise', ?, '{}')",
        (notice_id, created_at, message),
    )


def _notice_ids(page: str) -> list[str]:
    return re.findall(r'<section class="card notice" data-notice-id="([^"]+)">', page)


def test_an_active_notice_shows_on_trends_and_its_dismiss_form_clears_it(week: Week, open_app: Flask) -> None:
    rise = "Spasms per night rose over the last 7 nights: consider talking to your doctor."
    _add_notice(week.path, "rise-1", rise, "2026-11-21T07:00:00.000Z")
    _add_notice(week.path, "older", "An older notice.", "2026-11-20T07:00:00.000Z")
    client = open_app.test_client()
    page = client.get("/trends").get_data(as_text=True)
    assert _notice_ids(page) == ["rise-1", "older"]  # newest first
    card = page.split('data-notice-id="rise-1">')[1].split("</section>")[0]
    assert f"<p>{rise}</p>" in card
    form = re.search(r'<form method="post" action="([^"]+)">\s*<input type="hidden" name="csrf_token"'
                     r' value="([^"]+)">\s*<button type="submit">Dismiss</button>', card)  # fmt: skip
    assert form, card
    action, token = form.groups()
    assert action == "/notices/rise-1/dismiss"

    # without the token nothing changes
    assert client.post(action, data={}).status_code == 400
    assert client.post(action, data={"csrf_token": "x" + token}).status_code == 403
    assert _notice_ids(client.get("/trends").get_data(as_text=True)) == ["rise-1", "older"]

    reply = client.post(action, data={"csrf_token": token})
    assert reply.status_code == 302 and reply.headers["Location"].endswith("/trends")
    assert _notice_ids(client.get("/trends").get_data(as_text=True)) == ["older"]
    conn = sqlite3.connect(week.path)
    try:
        rows = dict(conn.execute("SELECT id, dismissed_at FROM notices").fetchall())
    finally:
        conn.close()
    assert rows["rise-1"] is not None and rows["older"] is None
    assert client.post("/notices/nope/dismiss", data={"csrf_token": token}).status_code == 404
