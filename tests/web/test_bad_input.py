"""Odd input gets a 4xx naming the problem, never a 500: numbers beyond SQLite's range, digits
that are not ASCII, CR/LF in the page after login, lone surrogates in user text.

Over real HTTP to the real app (loopback: no login, the CSRF token still needed for writes).
"""

from __future__ import annotations

import json
import sqlite3
import urllib.parse

import pytest

from tests import webutil
from tests.webutil import Client, Week
from web.inputs import BadInput, clean_text, parse_int, safe_next
from web.serve import ServerHandle

week_template = webutil.week_template
week = webutil.week
open_app = webutil.open_app
open_server = webutil.open_server

HUGE = "99999999999999999999999"


def test_ids_beyond_int64_are_404_not_500(open_server: ServerHandle) -> None:
    client = Client(open_server.url)
    token = client.csrf()
    api = client.request(f"/api/tags/{HUGE}", "DELETE", headers={"X-CSRF-Token": token})
    assert api.status == 404 and f"no item with id {HUGE}" in api.json()["error"]
    page = client.request(f"/checkin/tags/{HUGE}/remove", "POST", form={"csrf_token": token})
    assert page.status == 404 and HUGE in page.text
    assert (
        client.request("/api/tags/9223372036854775807", "DELETE", headers={"X-CSRF-Token": token}).status
        == 404
    )


@pytest.mark.parametrize("text", ["²", "٣", "1_0", "+2", "0x1", HUGE])
def test_numbers_must_be_ascii_digits_in_range(week: Week, open_server: ServerHandle, text: str) -> None:
    client = Client(open_server.url)
    quoted = urllib.parse.quote(text)
    night = client.request(f"/night/{week.night_ids[0]}?page={quoted}")
    assert night.status == 400 and "page: must be a whole number" in night.text
    report = client.request(f"/export/report?last={quoted}")
    assert report.status == 400 and "last: must be a whole number" in report.text
    api = client.request(f"/api/events?limit={quoted}")
    assert api.status == 400 and api.json()["parameter"] == "limit"
    form = client.request(
        "/checkin",
        "POST",
        form={"csrf_token": client.csrf(), "night_date": "2026-11-20", "sleep_quality": text},
    )
    assert form.status == 400 and "sleep_quality must be a whole number from 1 to 5" in form.text


def test_cr_lf_in_the_page_after_login_is_not_a_500(open_server: ServerHandle) -> None:
    reply = Client(open_server.url).request("/login?next=/%0d%0aX:1")
    assert reply.status == 302 and reply.headers["Location"] == "/" and "X" not in reply.headers


def test_a_lone_surrogate_in_a_note_or_tag_is_stored_as_a_replacement_character(
    week: Week, open_server: ServerHandle
) -> None:
    client = Client(open_server.url)
    headers = {"X-CSRF-Token": client.csrf(), "Content-Type": "application/json"}
    # json.dumps writes the lone surrogate as the escape \ud800, as a hostile client would.
    note = json.dumps({"sleep_quality": 3, "note": "woke \ud800 twice\x00"}).encode()
    assert b"\\ud800" in note
    put = client.request("/api/checkins/2026-11-20", "PUT", headers=headers, body=note)
    assert put.status == 200, put.text
    assert put.json()["checkin"]["note"] == "woke \ufffd twice"
    tag = json.dumps({"night_date": "2026-11-20", "tag": "medication", "detail": "\udc00baclofen"}).encode()
    added = client.request("/api/tags", "POST", headers=headers, body=tag)
    assert added.status == 201, added.text
    conn = sqlite3.connect(week.path)
    try:
        stored = conn.execute("SELECT detail FROM tags WHERE rowid = ?", (added.json()["id"],)).fetchone()[0]
    finally:
        conn.close()
    assert stored == "\ufffdbaclofen"
    assert client.request("/checkin?date=2026-11-20").status == 200


def test_the_helpers_directly() -> None:
    assert parse_int("42", "n") == 42 and parse_int("-3", "n", -5, 5) == -3
    for bad in ("²", "٣", "", " 1", "1 ", "1e3", "9223372036854775808"):
        with pytest.raises(BadInput, match="n: must be a whole number"):
            parse_int(bad, "n")
    assert clean_text("a\ud800b\tc\nd\x1be") == "a\ufffdb\tc\nde"
    assert clean_text("héllo ✓") == "héllo ✓"
    assert safe_next("/nights?sort=heart") == "/nights?sort=heart"
    assert safe_next(None) is None
    for bad in ("/\t/evil.example", "//evil", "/\\evil", "http://evil", "/a b", "/\r\nX:1", ""):
        assert safe_next(bad) is None
