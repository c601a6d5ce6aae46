"""Every page over real HTTP on a simulated week: content, charts, sorting, forms, no external URLs."""

from __future__ import annotations

import html
import json
import re
import sqlite3
from pathlib import Path

import pytest
from flask import Flask

from service.history.load import connect, load_night
from service.history.summary import summarize_night
from service.timefmt import parse_iso_utc
from tests import webutil
from tests.webutil import Client, Week, http
from web import create_app
from web.serve import ServerHandle

week_template = webutil.week_template
week = webutil.week
open_app = webutil.open_app
open_server = webutil.open_server

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
EXTERNAL_URL = re.compile(r"https?://", re.IGNORECASE)


def _event_with_snippet(path: Path, night_id: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(
            conn.execute("SELECT event_id FROM snippets WHERE night_id = ? LIMIT 1", (night_id,)).fetchone()[
                0
            ]
        )
    finally:
        conn.close()


def _pages(week: Week) -> list[str]:
    last = week.night_ids[-1]
    event_id = _event_with_snippet(week.path, last)
    return [
        "/",
        "/nights",
        "/nights?sort=spasms&order=asc",
        f"/night/{last}",
        f"/night/{last}?event={event_id}",
        "/trends",
        "/checkin",
        "/checkin?date=2026-11-15",
        "/status",
        "/export",
        "/login",
    ]


def test_every_page_renders_over_http_with_the_navigation(week: Week, open_server: ServerHandle) -> None:
    for path in _pages(week):
        reply = http(open_server.url + path)
        if path == "/login":  # nothing to log in to on loopback: back to Tonight
            assert reply.status == 302 or reply.status == 200
            continue
        assert reply.status == 200, (path, reply.text[:300])
        assert 'id="nav"' in reply.text and 'id="theme-toggle"' in reply.text, path
        assert reply.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_nights_table_lists_every_night_with_its_recomputed_summary(week: Week, open_app: Flask) -> None:
    page = open_app.test_client().get("/nights").get_data(as_text=True)
    rows = re.findall(r'<tr data-night-id="([^"]+)"', page)
    assert sorted(rows) == sorted(week.night_ids)
    assert rows == list(reversed(week.night_ids))  # newest first by default
    conn = connect(week.path)
    data = load_night(conn, week.night_ids[0])
    conn.close()
    assert data is not None
    summary = summarize_night(data)
    row = page.split(f'data-night-id="{week.night_ids[0]}"')[1].split("</tr>")[0]
    assert f"<td>{summary['plm_series']}</td>" in row
    assert f"<td>{summary['awakenings']}</td>" in row


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_nights_table_sorts_by_a_column(week: Week, open_app: Flask, order: str) -> None:
    page = open_app.test_client().get(f"/nights?sort=awakenings&order={order}").get_data(as_text=True)
    assert f'data-sort="awakenings" data-order="{order}"' in page
    body = page.split("<tbody>")[1]
    cells = re.findall(r"</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>(\d+)</td>", body)
    values = [int(v) for v in cells]
    assert len(values) == len(week.night_ids)
    assert values == sorted(values, reverse=order == "desc")


def test_nights_table_refuses_an_unknown_sort_column_naming_it(open_app: Flask) -> None:
    reply = open_app.test_client().get("/nights?sort=colour")
    assert reply.status_code == 400 and b"sort: unknown column" in reply.data
    assert open_app.test_client().get("/nights?order=up").status_code == 400


def test_night_page_draws_every_chart_and_one_marker_per_event(week: Week, open_app: Flask) -> None:
    night_id = week.night_ids[-1]
    page = open_app.test_client().get(f"/night/{night_id}").get_data(as_text=True)
    for chart in ("activity", "sleep", "events", "heart", "breath"):
        assert f'data-chart="{chart}"' in page, chart
    conn = connect(week.path)
    data = load_night(conn, night_id)
    conn.close()
    assert data is not None
    shown = [e for e in data.events if (e.get("label") or e["event_type"])]
    assert _marked(page) == len(shown)
    points = int(re.search(r'data-chart="activity" data-points="(\d+)"', page).group(1))  # type: ignore[union-attr]
    assert points == len(data.epochs) > 0
    assert 'class="band-asleep"' in page and "polyline" in page


def _marked(page: str) -> int:
    """How many events the events lane marks (each row lists its marks' starts)."""
    lane = page.split('data-chart="events"')[1].split("</svg></svg>")[0]
    return sum(len(s.split(",")) for s in re.findall(r'data-starts="([^"]+)"', lane))


def test_clicking_an_event_shows_its_waveform_and_the_relabel_form(week: Week, open_app: Flask) -> None:
    night_id = week.night_ids[-1]
    event_id = _event_with_snippet(week.path, night_id)
    page = open_app.test_client().get(f"/night/{night_id}?event={event_id}").get_data(as_text=True)
    assert f'id="event" data-event-id="{event_id}"' in page
    assert 'data-chart="snippet"' in page and 'id="relabel-form"' in page
    conn = sqlite3.connect(week.path)
    n = conn.execute("SELECT n FROM snippets WHERE event_id = ?", (event_id,)).fetchone()[0]
    conn.close()
    assert f'data-chart="snippet" data-points="{n}"' in page


def test_an_unknown_night_or_event_is_a_404_page(week: Week, open_app: Flask) -> None:
    client = open_app.test_client()
    assert client.get("/night/no-such-night").status_code == 404
    assert client.get(f"/night/{week.night_ids[-1]}?event=nope").status_code == 404


def test_relabel_form_keeps_the_label_and_the_night_counts_it(week: Week, open_server: ServerHandle) -> None:
    night_id = week.night_ids[-1]
    event_id = _event_with_snippet(week.path, night_id)
    client = Client(open_server.url)
    token = client.form_token(f"/night/{night_id}?event={event_id}")
    reply = client.request(
        f"/night/{night_id}/relabel",
        "POST",
        form={"csrf_token": token, "event_id": event_id, "label": "not_an_event"},
    )
    assert reply.status == 302 and f"event={event_id}" in reply.headers["Location"]
    conn = sqlite3.connect(week.path)
    stored = conn.execute("SELECT label, source FROM relabels WHERE event_id = ?", (event_id,)).fetchone()
    detector = conn.execute("SELECT event_type FROM events WHERE id = ?", (event_id,)).fetchone()[0]
    conn.close()
    assert stored == ("not_an_event", "web")
    assert detector != "not_an_event"  # the detector's own label is kept
    page = client.request(f"/night/{night_id}?event={event_id}").text
    assert 'id="current-label"' in page
    bad = client.request(
        f"/night/{night_id}/relabel",
        "POST",
        form={"csrf_token": token, "event_id": event_id, "label": "sneeze"},
    )
    assert bad.status == 400 and "label must be" in bad.text


def test_checkin_and_tag_forms_write_through_user_data(week: Week, open_server: ServerHandle) -> None:
    client = Client(open_server.url)
    token = client.form_token("/checkin?date=2026-11-20")
    saved = client.request(
        "/checkin",
        "POST",
        form={
            "csrf_token": token,
            "night_date": "2026-11-20",
            "sleep_quality": "2",
            "spasm_severity": "4",
            "note": "cramp",
        },
    )
    assert saved.status == 302
    tagged = client.request(
        "/checkin/tags",
        "POST",
        form={
            "csrf_token": token,
            "night_date": "2026-11-20",
            "tag": "medication",
            "detail": "gabapentin",
            "at_local": "21:15",
        },
    )
    assert tagged.status == 302
    conn = sqlite3.connect(week.path)
    checkin = conn.execute(
        "SELECT sleep_quality, spasm_severity, note FROM checkins WHERE night_date = '2026-11-20'"
    ).fetchone()
    tag = conn.execute(
        "SELECT rowid, at_local, source FROM tags WHERE night_date = '2026-11-20' AND detail = 'gabapentin'"
    ).fetchone()
    conn.close()
    assert checkin == (2, 4, "cramp")
    assert tag[1:] == ("21:15", "web")
    page = client.request("/checkin?date=2026-11-20").text
    assert f'data-tag-id="{tag[0]}"' in page and "gabapentin" in page
    removed = client.request(
        f"/checkin/tags/{tag[0]}/remove", "POST", form={"csrf_token": token, "night_date": "2026-11-20"}
    )
    assert removed.status == 302
    assert f'data-tag-id="{tag[0]}"' not in client.request("/checkin?date=2026-11-20").text


@pytest.mark.parametrize(
    ("path", "form", "named"),
    [
        ("/checkin", {"night_date": "2026-11-20", "sleep_quality": "7"}, "sleep_quality"),
        ("/checkin", {"night_date": "2026-11-20", "spasm_severity": "lots"}, "spasm_severity"),
        ("/checkin", {"night_date": "yesterday"}, "night_date"),
        ("/checkin/tags", {"night_date": "2026-11-20", "tag": "medication"}, "detail"),
        ("/checkin/tags", {"night_date": "2026-11-20", "tag": "yoga"}, "tag must be"),
        ("/checkin/tags", {"night_date": "2026-11-20", "tag": "heat", "at_local": "25:00"}, "at_local"),
    ],
)
def test_bad_form_input_is_a_400_page_naming_the_field(
    open_server: ServerHandle, path: str, form: dict[str, str], named: str
) -> None:
    client = Client(open_server.url)
    token = client.form_token("/checkin")
    reply = client.request(path, "POST", form={"csrf_token": token, **form})
    assert reply.status == 400
    assert 'id="form-error"' in reply.text and named in reply.text


def test_trends_page_marks_tagged_nights_and_compares_with_and_without(week: Week, open_app: Flask) -> None:
    page = open_app.test_client().get("/trends").get_data(as_text=True)
    assert 'data-chart="trend-movement_index_per_h"' in page and 'id="change-message"' in page
    conn = sqlite3.connect(week.path)
    tagged_dates = {r[0] for r in conn.execute("SELECT DISTINCT night_date FROM tags")}
    night_dates = {r[0] for r in conn.execute("SELECT night_date FROM nights")}
    conn.close()
    chart = page.split('data-chart="trend-spasms_per_night"')[1].split("</svg>")[0]
    marked = set(re.findall(r'class="tag-mark" data-date="([^"]+)"', chart))
    assert marked == tagged_dates & night_dates and marked
    assert 'class="comparison" data-tag="stretching"' in page
    comparison = page.split('class="comparison" data-tag="stretching"')[1].split("</table>")[0]
    row = comparison.split('data-metric="spasms_per_night"')[1].split("</tr>")[0]  # named in words
    assert "Spasms per night" in row and "spasms_per_night" not in row.split(">", 1)[1]


def test_status_page_shows_health_disk_and_version(week: Week, open_app: Flask) -> None:
    from service import __version__

    page = open_app.test_client().get("/status").get_data(as_text=True)
    assert 'id="status-page"' in page and __version__ in page
    assert 'data-key="calibration"' in page and 'data-key="outbox"' in page and "MiB free" in page
    # no daemon ran on the simulated week: the page must say so rather than claim health
    assert 'data-healthy="false"' in page and "no live state" in page


def test_export_page_links_report_csv_and_edf_where_the_raw_signal_is_kept(
    week: Week, open_app: Flask
) -> None:
    client = open_app.test_client()
    page = client.get("/export").get_data(as_text=True)
    assert 'id="report-link"' in page
    edf_links = re.findall(r'href="(/export/night/[^"]+\.edf)"', page)
    csv_links = re.findall(r'href="(/export/night/[^"]+\.csv\.zip)"', page)
    assert len(csv_links) == len(week.night_ids)
    assert len(edf_links) == 2  # raw signal kept for the last two nights only
    assert client.get(csv_links[0]).data[:2] == b"PK"
    edf = client.get(edf_links[0])
    assert edf.status_code == 200 and edf.data[:8] == b"0       "
    assert client.get("/export/report").status_code == 200
    pruned = week.night_ids[0]
    assert client.get(f"/export/night/{pruned}.edf").status_code == 404
    assert client.get("/export/report?last=0").status_code == 400


def test_no_page_or_static_file_refers_to_any_url_elsewhere(week: Week, open_app: Flask) -> None:
    client = open_app.test_client()
    bodies = {path: client.get(path).get_data(as_text=True) for path in _pages(week)}
    for static in sorted(p for p in (WEB_DIR / "static").rglob("*") if p.is_file()):
        rel = static.relative_to(WEB_DIR / "static").as_posix()
        response = client.get(f"/static/{rel}")
        assert response.status_code == 200
        bodies[rel] = response.get_data(as_text=True)
        response.close()
    for template in (WEB_DIR / "templates").iterdir():
        bodies[template.name] = template.read_text(encoding="utf-8")
    assert "theme.js" in bodies and "tonight.js" in bodies
    for name, body in bodies.items():
        assert not EXTERNAL_URL.search(body), name


def test_pages_with_no_database_yet_say_so_instead_of_failing(tmp_path: Path) -> None:
    app = create_app({"DATABASE": str(tmp_path / "none.sqlite3"), "LOGIN_REQUIRED": False})
    client = app.test_client()
    for path in ("/", "/nights", "/trends", "/checkin", "/status", "/export"):
        assert client.get(path).status_code == 200, path
    token = client.get("/api/session").get_json()["csrf_token"]
    reply = client.post("/checkin", data={"csrf_token": token, "night_date": "2026-11-20"})
    assert reply.status_code == 503


def test_a_stored_current_summary_is_used_until_the_night_is_relabelled(week: Week, open_app: Flask) -> None:
    from service.history.summary import SUMMARY_VERSION

    night_id = week.night_ids[0]
    conn = connect(week.path)
    data = load_night(conn, night_id)
    conn.close()
    assert data is not None
    stored = {**summarize_night(data), "plm_series": 777}
    raw = sqlite3.connect(week.path)
    with raw:
        raw.execute("UPDATE nights SET summary = ? WHERE id = ?", (json.dumps(stored), night_id))
    raw.close()
    client = open_app.test_client()
    row = (
        client.get("/nights").get_data(as_text=True).split(f'data-night-id="{night_id}"')[1].split("</tr>")[0]
    )
    assert "<td>777</td>" in row
    stale = {**stored, "summary_version": SUMMARY_VERSION - 1}
    raw = sqlite3.connect(week.path)
    with raw:
        raw.execute("UPDATE nights SET summary = ? WHERE id = ?", (json.dumps(stale), night_id))
    raw.close()
    open_app.extensions.pop("bedside_summaries", None)
    row = (
        client.get("/nights").get_data(as_text=True).split(f'data-night-id="{night_id}"')[1].split("</tr>")[0]
    )
    assert "<td>777</td>" not in row
    raw = sqlite3.connect(week.path)
    with raw:
        raw.execute("UPDATE nights SET summary = ? WHERE id = ?", (json.dumps(stored), night_id))
    raw.close()
    token = client.get("/api/session").get_json()["csrf_token"]
    event_id = data.events[0]["id"]
    relabelled = client.post(
        f"/api/events/{event_id}/relabel", json={"label": "jerk"}, headers={"X-CSRF-Token": token}
    )
    assert relabelled.status_code == 200
    row = (
        client.get("/nights").get_data(as_text=True).split(f'data-night-id="{night_id}"')[1].split("</tr>")[0]
    )
    assert "<td>777</td>" not in row


def _fill_night(path: Path, night_id: str, copies: int) -> list[str]:
    """Copies every event of the night ``copies`` times (new ids); the night's event ids, oldest first."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for k in range(1, copies + 1):
                conn.execute(
                    "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity,"
                    " profile, confidence, cause_id, details) SELECT id || ?, night_id, event_type, start_at,"
                    " end_at, duration_s, intensity, profile, confidence, NULL, details FROM events"
                    " WHERE night_id = ? AND id NOT LIKE '%-copy%'",
                    (f"-copy{k}", night_id),
                )
        return [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM events WHERE night_id = ? ORDER BY start_at, rowid", (night_id,)
            )
        ]
    finally:
        conn.close()


def test_night_event_table_is_paged_while_the_chart_marks_every_event(week: Week, open_app: Flask) -> None:
    from web.dashboard import NIGHT_EVENTS_PAGE

    night_id = week.night_ids[-1]
    ids = _fill_night(week.path, night_id, copies=4)
    assert len(ids) > 2 * NIGHT_EVENTS_PAGE, "the filled night needs at least three pages"
    pages = -(-len(ids) // NIGHT_EVENTS_PAGE)
    client = open_app.test_client()
    first = client.get(f"/night/{night_id}").get_data(as_text=True)
    table = first.split('id="night-events"')[1]
    assert re.findall(r'<tr data-id="([^"]+)"', table) == ids[:NIGHT_EVENTS_PAGE]
    assert f'data-page="1" data-pages="{pages}"' in first and 'rel="next"' in first
    assert _marked(first) == len(ids), "the events chart marks every event, not only this page's"
    last = client.get(f"/night/{night_id}?page={pages}").get_data(as_text=True)
    rows = re.findall(r'<tr data-id="([^"]+)"', last.split('id="night-events"')[1])
    assert rows == ids[(pages - 1) * NIGHT_EVENTS_PAGE :]
    assert 'rel="prev"' in last and 'rel="next"' not in last
    # a chosen event opens the table at its page
    chosen = ids[NIGHT_EVENTS_PAGE + 5]
    page = client.get(f"/night/{night_id}?event={chosen}").get_data(as_text=True)
    assert f'<tr data-id="{chosen}" data-type="' in page and 'data-page="2"' in page
    for bad in ("0", str(pages + 1), "two", "-1"):
        reply = client.get(f"/night/{night_id}?page={bad}")
        assert reply.status_code == 400 and b"page: must be a whole number" in reply.data, bad


def test_night_page_of_5000_events_stays_small(week: Week, open_app: Flask) -> None:
    """Thousands of events: the page stays far smaller than one table row and one big mark per event."""
    night_id = week.night_ids[-1]
    ids = _fill_night(week.path, night_id, copies=24)
    page = open_app.test_client().get(f"/night/{night_id}").get_data(as_text=True)
    assert _marked(page) == len(ids) > 2000
    assert len(page.encode()) / len(ids) < 40, f"{len(page.encode())} bytes for {len(ids)} events"


def test_chart_texts_are_outside_the_stretched_drawing(week: Week, open_app: Flask) -> None:
    """Hour labels and row names must not be stretched with the data (unreadable on a phone)."""
    night_id = week.night_ids[-1]
    page = open_app.test_client().get(f"/night/{night_id}").get_data(as_text=True)
    for chart in re.findall(r'<svg class="chart".*?</svg>(?:[^<]*<text.*?</text>)*</svg>', page, re.S):
        plot = re.search(r'<svg class="plot"[^>]*preserveAspectRatio="none"[^>]*>(.*?)</svg>', chart, re.S)
        assert plot is not None, chart[:200]
        assert "<text" not in plot.group(1), "a text inside the stretched part of a chart"
    lanes = page.split('data-lane="events"><ul class="lane-labels">')[1].split("</ul>")[0]
    assert "Limb movement" in lanes, "the events chart's rows are named in HTML beside it"


def test_every_event_type_has_a_colour_in_the_stylesheet() -> None:
    from service.detect.types import EVENT_TYPES
    from web.charts import EVENT_COLORS

    css = (WEB_DIR / "static" / "style.css").read_text(encoding="utf-8")
    for event_type in EVENT_TYPES:
        colour = EVENT_COLORS[event_type]
        rule = rf"svg \.t-{event_type},\s*\.key\.t-{event_type} \{{\s*fill: {colour};\s*stroke: {colour};"
        assert re.search(rule, css), event_type


def test_wide_pages_get_a_wide_main_and_the_others_do_not(week: Week, open_app: Flask) -> None:
    client = open_app.test_client()
    for path in ("/nights", f"/night/{week.night_ids[-1]}", "/trends"):
        assert re.search(r'<main id="[^"]+" class="wide"', client.get(path).get_data(as_text=True)), path
    for path in ("/", "/status", "/checkin"):
        assert 'class="wide"' not in client.get(path).get_data(as_text=True), path
    css = (WEB_DIR / "static" / "style.css").read_text(encoding="utf-8")
    assert re.search(r"main\.wide \{\s*max-width: \d+rem;", css)


def _lanes(page: str) -> dict[str, str]:
    """Each lane's markup by name (``data-lane``)."""
    parts = re.split(r'(?=<div class="lane[^"]*" data-lane=")', page)
    return {
        re.match(r'<div class="lane[^"]*" data-lane="([^"]+)"', p).group(1): p  # type: ignore[union-attr]
        for p in parts[1:]
    }


def test_night_lanes_have_value_and_time_axes_with_units_and_share_one_time_range(
    week: Week, open_app: Flask
) -> None:
    page = open_app.test_client().get(f"/night/{week.night_ids[-1]}").get_data(as_text=True)
    lanes = _lanes(page)
    assert {"activity", "sleep", "events", "heart", "breath"} <= set(lanes)
    ranges = set()
    for name in ("activity", "sleep", "events", "heart", "breath"):
        lane = lanes[name]
        chart = re.search(r'<svg class="chart" data-chart="[^"]+"[^>]*>', lane).group(0)  # type: ignore[union-attr]
        ranges.add(tuple(re.search(r'data-t0="(\d+)" data-t1="(\d+)"', chart).groups()))  # type: ignore[union-attr]
        x_axis = lane.split('<svg class="x-axis"')[1]
        hours = re.findall(r">(\d\d:\d\d)</text>", x_axis)
        assert len(hours) >= 4, f"{name}: time axis labels {hours}"
    assert len(ranges) == 1, f"the lanes cover different time ranges: {ranges}"
    for name, unit in (("activity", "movement count per 30-s epoch"), ("heart", "/min"), ("breath", "/min")):
        y_axis = lanes[name].split('<svg class="y-axis"')[1].split("</svg>")[0]
        values = [float(v) for v in re.findall(r">([\d.]+)</text>", y_axis)]
        assert len(values) >= 3, f"{name}: value axis {values}"
        assert (
            f'data-plot="{name}" data-unit="{unit}"' in page and f'<span class="unit">({unit})</span>' in page
        )
    heart_values = re.findall(
        r">([\d.]+)</text>", lanes["heart"].split('<svg class="y-axis"')[1].split("</svg>")[0]
    )
    assert heart_values == ["40", "60", "80", "100", "120"]


def test_a_heart_rate_beyond_the_scale_is_marked_and_named(week: Week, open_app: Flask) -> None:
    night_id = week.night_ids[-1]
    conn = sqlite3.connect(week.path)
    try:
        (t_at,) = conn.execute(
            "SELECT t_at FROM vitals WHERE night_id = ? AND heart_bpm IS NOT NULL"
            " ORDER BY t_at LIMIT 1 OFFSET 50",
            (night_id,),
        ).fetchone()
        with conn:
            conn.execute(
                "UPDATE vitals SET heart_bpm = 163 WHERE night_id = ? AND t_at = ?", (night_id, t_at)
            )
    finally:
        conn.close()
    page = open_app.test_client().get(f"/night/{night_id}").get_data(as_text=True)
    heart = _lanes(page)["heart"]
    assert re.search(r'class="out-of-range" data-side="above" data-value="163"', heart)
    assert "above 120 /min (highest 163 /min at " in page


def test_the_timeline_zooms_to_a_stretch_and_refuses_one_outside_the_night(
    week: Week, open_app: Flask
) -> None:
    from datetime import timedelta

    from service.timefmt import parse_iso_utc

    night_id = week.night_ids[-1]
    client = open_app.test_client()
    conn = connect(week.path)
    data = load_night(conn, night_id)
    conn.close()
    assert data is not None
    start = parse_iso_utc(data.night["started_at"]) + timedelta(hours=2)
    frm, to = (
        start.astimezone().strftime("%H:%M"),
        (start + timedelta(minutes=10)).astimezone().strftime("%H:%M"),
    )
    page = client.get(f"/night/{night_id}?from={frm}&to={to}").get_data(as_text=True)
    found = re.search(r'data-chart="activity"[^>]*data-t0="(\d+)" data-t1="(\d+)"', page)
    assert found is not None
    t0, t1 = (int(v) for v in found.groups())
    assert t1 - t0 == 10 * 60 * 1000
    assert abs(t0 / 1000 - start.replace(second=0, microsecond=0).timestamp()) < 1
    minutes = re.findall(r">(\d\d:\d\d)</text>", _lanes(page)["activity"].split('<svg class="x-axis"')[1])
    assert len(minutes) >= 5 and minutes[0] != minutes[1], "a zoomed axis is labelled in minutes"
    assert 'id="zoom-reset"' in page
    for query, field in (("from=25:00&to=03:00", "from"), (f"from={frm}&to={frm}", "to"), ("from=x", "from")):
        reply = client.get(f"/night/{night_id}?{query}")
        assert reply.status_code == 400 and f"{field}: ".encode() in reply.data, (query, reply.data[-300:])


def test_a_tap_on_an_event_mark_opens_the_nearest_event_of_its_type(week: Week, open_app: Flask) -> None:
    night_id = week.night_ids[-1]
    conn = connect(week.path)
    data = load_night(conn, night_id)
    conn.close()
    assert data is not None
    from service.timefmt import parse_iso_utc

    event = next(e for e in data.events if e["event_type"] == "limb_movement")
    at = parse_iso_utc(event["start_at"]).astimezone().strftime("%H:%M:%S")
    reply = open_app.test_client().get(f"/night/{night_id}?type=limb_movement&at={at}")
    assert reply.status_code == 302
    assert f"event={event['id']}" in reply.headers["Location"] and reply.headers["Location"].endswith(
        "#event"
    )
    assert open_app.test_client().get(f"/night/{night_id}?type=limb_movement").status_code == 400


def test_the_night_page_is_cached_until_the_night_changes(week: Week, open_app: Flask) -> None:
    night_id = week.night_ids[-1]
    client = open_app.test_client()
    before = _marked(client.get(f"/night/{night_id}").get_data(as_text=True))
    conn = sqlite3.connect(week.path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity,"
                " profile, confidence, cause_id, details) SELECT id || '-late', night_id, event_type,"
                " start_at, end_at, duration_s, intensity, profile, confidence, NULL, details FROM events"
                " WHERE night_id = ? AND event_type = 'jerk' LIMIT 1",
                (night_id,),
            )
    finally:
        conn.close()
    after = client.get(f"/night/{night_id}").get_data(as_text=True)
    assert _marked(after) == before + 1


def test_night_page_of_5000_events_is_at_most_200_kib(week: Week, open_app: Flask) -> None:
    night_id = week.night_ids[-1]
    ids = _fill_night(week.path, night_id, copies=34)
    page = open_app.test_client().get(f"/night/{night_id}").get_data()
    assert len(ids) >= 5000 and _marked(page.decode()) == len(ids)
    assert len(page) <= 200 * 1024, f"{len(page) / 1024:.0f} KiB for {len(ids)} events"


def test_tonight_shows_the_last_hour_a_link_to_the_timeline_and_what_intensity_means(
    week: Week, open_app: Flask
) -> None:
    client = open_app.test_client()
    page = client.get("/").get_data(as_text=True)
    chart = page.split('id="live-chart"')[1].split("</section>")[0]
    for lane in ("activity", "events", "heart"):
        assert f'data-lane="{lane}"' in chart, lane
    t0, t1 = (int(v) for v in re.search(r'data-t0="(\d+)" data-t1="(\d+)"', chart).groups())  # type: ignore[union-attr]
    assert t1 - t0 <= 3600 * 1000
    assert f'href="/night/{week.night_ids[-1]}#timeline"' in chart
    assert "× resting" in page and "resting level" in page
    alone = client.get("/tonight/chart").get_data(as_text=True)
    assert 'class="chart-body"' in alone and 'data-lane="heart"' in alone and "<html" not in alone


def test_tags_and_the_unknown_sleep_state_are_shown_in_words() -> None:
    from web.display import state_value, tag_label

    assert tag_label("late_exercise") == "Late exercise"
    assert tag_label("medication:baclofen") == "Medication: baclofen"
    assert tag_label("medication", "baclofen") == "Medication: baclofen"
    assert state_value("asleep", None).startswith("not known yet")


def test_the_nights_table_names_tags_in_words(week: Week, open_app: Flask) -> None:
    from web.display import tag_label

    page = open_app.test_client().get("/nights").get_data(as_text=True)
    shown = re.findall(r'<span class="tag">([^<]*)</span>', page)
    conn = connect(week.path)
    stored = conn.execute("SELECT tag, detail FROM tags").fetchall()
    conn.close()
    assert shown and stored
    assert {html.unescape(s) for s in shown} <= {tag_label(t, d) for t, d in stored}
    assert not [s for s in shown if "_" in s]  # raw keys such as late_exercise


def test_tonight_reaches_the_newest_event_and_reading_before_the_epochs_are_stored(week: Week) -> None:
    """Epochs reach the store in batches; a running night's chart ended at its last stored epoch,
    so Tonight's last hour showed nothing of the newest minutes (events and heart rate were there)."""
    night_id = week.night_ids[-1]
    conn = sqlite3.connect(week.path)
    (last_end,) = conn.execute("SELECT max(end_at) FROM events WHERE night_id = ?", (night_id,)).fetchone()
    conn.execute("UPDATE nights SET ended_at = NULL, summary = NULL WHERE id = ?", (night_id,))
    # as if the last 20 minutes of epochs were still batched in the daemon
    conn.execute(
        "DELETE FROM epochs WHERE night_id = ? "
        "AND start_at > strftime('%Y-%m-%dT%H:%M:%fZ', ?, '-20 minutes')",
        (night_id, last_end),
    )
    conn.commit()
    conn.close()
    app = create_app({"DATABASE": str(week.path), "LOGIN_REQUIRED": False})
    chart = app.test_client().get("/tonight/chart").get_data(as_text=True)
    t1 = int(re.search(r'data-t1="(\d+)"', chart).group(1))  # type: ignore[union-attr]
    assert t1 >= parse_iso_utc(last_end).timestamp() * 1000 - 1000
