"""The pages: Tonight, Nights, a Night, Trends, Check-in and tags, Status, Export.

Every page is complete as the server renders it (readable with JavaScript off). Tonight then
follows the live stream (static/tonight.js: server-sent events from ``/api/stream``, falling
back to polling the JSON API). Forms post with the session's CSRF token and redirect after a
successful write; refused input re-renders the form with the message and status 400.
"""

from __future__ import annotations

import io
import logging
import sqlite3
import tempfile
import zipfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from werkzeug.exceptions import BadRequest, NotFound

from service.detect.types import EVENT_TYPES
from service.history.load import checkins_by_date, in_progress, tags_by_date
from service.history.user_data import (
    LABELS,
    TAGS,
    UserDataError,
    add_tag,
    dismiss_notice,
    relabel,
    remove_tag,
    set_checkin,
)
from service.timefmt import iso_utc, parse_iso_utc, utc_now
from web import charts, display, history, queries, snippets, status_info
from web.db import get_db
from web.inputs import BadInput, clean_text, parse_int
from web.userdb import get_user_db

logger = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__)

TONIGHT_EVENTS = 50
"""How many of the latest events the Tonight page lists."""

NIGHTS_PAGE_LIMIT = 365

NIGHT_EVENTS_PAGE = 100
"""Rows per page of a night's event table (``/night/<id>?page=N``); the charts show every event."""

SORT_KEYS: dict[str, tuple[str, ...]] = {
    "date": ("night_date",),
    "time_in_bed": ("summary", "time_in_bed_min"),
    "total_sleep": ("summary", "total_sleep_min"),
    "efficiency": ("summary", "efficiency_pct"),
    "awakenings": ("summary", "awakenings"),
    "movement_index": ("summary", "movement_index_per_h"),
    "plm_series": ("summary", "plm_series"),
    "spasms": ("summary", "spasms", "count"),
    "heart": ("summary", "mean_heart_bpm"),
    "breath": ("summary", "mean_breath_bpm"),
}
"""Columns the Nights table sorts by (``?sort=KEY&order=asc|desc``) and where each value lives."""


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
        page="tonight",
        chart=_tonight_chart(conn, live["night_id"]),
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


@bp.app_template_filter("plot_figure")
def plot_figure(body: Markup, name: str, title: str, unit: str, note: str = "") -> Markup:
    """A drawn lane in its captioned figure (``charts.figure``)."""
    return charts.figure(name, title, unit, body, str(note))


LIVE_WINDOW_S = 3600
"""Tonight's chart shows the last hour of the night."""


def _tonight_chart(conn: sqlite3.Connection | None, night_id: str | None) -> dict[str, Any] | None:
    """Tonight's last hour (activity, event marks, heart rate) up to the night's latest epoch or
    its end; None before a night has begun."""
    view = None if conn is None or night_id is None else history.night_view(conn, night_id)
    if view is None:
        return None
    data = view.data
    whole = charts.night_axis(data.night, data.epochs, data.events, data.vitals)
    axis = charts.TimeAxis(max(whole.start, whole.end - timedelta(seconds=LIVE_WINDOW_S)), whole.end)
    types = _event_types(data.events)

    def draw() -> dict[str, Markup]:
        heart, heart_note = charts.heart(axis, data.vitals, height=72)
        return {
            "activity": charts.activity(axis, data.epochs, height=72),
            "markers": charts.event_markers(axis, data.events, types, display.EVENT_LABELS),
            "heart": heart,
            "heart_note": Markup(heart_note),
        }

    drawn = _drawing(("tonight", night_id, view.stamp, axis.start, axis.end), draw)
    return {
        **drawn,
        "night_id": night_id,
        "from": _clock(axis.start),
        "to": _clock(axis.end),
        "faults": sum(1 for e in data.events if e["event_type"] == "sensor_fault"),
        "simulated": data.night.get("source") == "simulated" or "demo" in str(data.night.get("source") or ""),
    }


@bp.get("/tonight/chart")
def tonight_chart() -> ResponseReturnValue:
    """Tonight's last-hour chart alone (static/charts.js swaps it in when the night changes)."""
    conn = get_db()
    night_id = None if conn is None else queries.latest_night_id(conn)
    return render_template("tonight_chart.html", chart=_tonight_chart(conn, night_id))


def _dig(night: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = night
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


@bp.get("/nights")
def nights() -> ResponseReturnValue:
    """Every night and nap with its summary figures; sortable by any column."""
    sort = request.args.get("sort", "date")
    order = request.args.get("order", "desc")
    if sort not in SORT_KEYS:
        raise BadRequest(description=f"sort: unknown column {sort!r}; expected one of {', '.join(SORT_KEYS)}")
    if order not in ("asc", "desc"):
        raise BadRequest(description=f"order: must be asc or desc, got {order!r}")
    conn = get_db()
    rows = [] if conn is None else history.nights_with_summaries(conn, kind=None, limit=NIGHTS_PAGE_LIMIT)
    path = SORT_KEYS[sort]

    # A night in progress has no figures to sort by yet: it goes with the missing ones.
    def sortable(n: dict[str, Any]) -> bool:
        return _dig(n, path) is not None and (sort == "date" or not in_progress(n))

    present = [n for n in rows if sortable(n)]
    missing = [n for n in rows if not sortable(n)]
    present.sort(key=lambda n: (_dig(n, path), str(n["started_at"])), reverse=order == "desc")
    tags = {} if conn is None else tags_by_date(conn)
    checkins = {} if conn is None else checkins_by_date(conn)
    return render_template(
        "nights.html",
        page="nights",
        nights=present + missing,
        sort=sort,
        order=order,
        sort_keys=list(SORT_KEYS),
        tags=tags,
        checkins=checkins,
    )


@bp.get("/night/<night_id>")
def night(night_id: str) -> ResponseReturnValue:
    """One night: timeline charts, the events, and a chosen event's waveform with its relabel form.

    ``?from=HH:MM[:SS]&to=HH:MM[:SS]`` (local clock times within the night) zooms the timeline to
    that stretch; ``?type=<event type>&at=HH:MM:SS`` (what a tap on an event mark sends) opens the
    event of that type starting nearest that time; ``?event=<id>`` opens an event; ``?page=N``
    pages the event table.
    """
    conn = get_db()
    view = None if conn is None else history.night_view(conn, night_id)
    if conn is None or view is None:
        raise NotFound(description=f"no night with id {night_id!r}")
    if request.args.get("type") is not None or request.args.get("at") is not None:
        found = _event_at(view.data, request.args.get("type"), request.args.get("at"))
        keep: dict[str, Any] = {k: v for k in ("from", "to") if (v := request.args.get(k))}
        return redirect(url_for("dashboard.night", night_id=night_id, event=found, **keep) + "#event")
    return _render_night(conn, view, request.args.get("event"), error=None)


def _clock_in_night(text: str, field: str, axis: charts.TimeAxis) -> datetime:
    """The moment of local clock time ``text`` (``HH:MM`` or ``HH:MM:SS``) within the night of
    ``axis``: the first such moment at or after the night's start minute. BadRequest naming
    ``field`` when unreadable or outside the night."""
    try:
        clock = time.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            description=f"{field}: must be a local time as HH:MM or HH:MM:SS, got {text!r}"
        ) from None
    start = axis.start.astimezone()
    first = start.replace(second=0, microsecond=0)
    moment = datetime.combine(start.date(), clock).astimezone()
    if moment < first:
        moment = datetime.combine(start.date() + timedelta(days=1), clock).astimezone()
    if moment > axis.end + timedelta(seconds=60):
        raise BadRequest(
            description=f"{field}: {text} is not within this night "
            f"({start:%H:%M} to {axis.end.astimezone():%H:%M})"
        )
    return max(moment, axis.start)


MIN_ZOOM_S = 60
"""The shortest stretch the timeline zooms to."""

AROUND_EVENT_S = 300
"""An event's "zoom to it" link shows this much before its start and after its end."""


def _zoom(axis: charts.TimeAxis) -> tuple[datetime, datetime] | None:
    """The stretch ``?from=&to=`` asks for, checked against the night (None: the whole night)."""
    first, last = request.args.get("from"), request.args.get("to")
    if not first and not last:
        return None
    start = _clock_in_night(first, "from", axis) if first else axis.start
    end = min(_clock_in_night(last, "to", axis), axis.end) if last else axis.end
    if (end - start).total_seconds() < MIN_ZOOM_S:
        raise BadRequest(description=f"to: must be at least {MIN_ZOOM_S} s after from ({first} to {last})")
    return start, end


def _event_at(data: Any, kind: str | None, at: str | None) -> str:
    """The id of the event of ``kind`` (its label if relabelled) starting nearest local time ``at``."""
    if kind is None or at is None:
        raise BadRequest(description="type and at: give both (an event type and a local time HH:MM:SS)")
    axis = charts.night_axis(data.night, data.epochs, data.events, data.vitals)
    moment = _clock_in_night(at, "at", axis)
    candidates = [e for e in data.events if (e.get("label") or e["event_type"]) == kind]
    if not candidates:
        raise NotFound(description=f"type: this night has no event of type {kind!r}")
    secs = axis.seconds([str(e["start_at"]) for e in candidates])
    target = (moment - axis.start).total_seconds()
    return str(candidates[int(abs(secs - target).argmin())]["id"])


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def _event_types(events: list[dict[str, Any]]) -> list[str]:
    present = {e.get("label") or e["event_type"] for e in events}
    return [t for t in EVENT_TYPES if t in present]


def _draw_timeline(axis: charts.TimeAxis, data: Any, types: list[str]) -> dict[str, Markup]:
    """The timeline's lanes over ``axis``: activity, sleep, events, heart, breathing."""
    heart, heart_note = charts.heart(axis, data.vitals)
    breath, breath_note = charts.breath(axis, data.vitals)
    return {
        "activity": charts.activity(axis, data.epochs),
        "sleep": charts.sleep_band(axis, data.epochs),
        "markers": charts.event_markers(axis, data.events, types, display.EVENT_LABELS),
        "heart": heart,
        "heart_note": Markup(heart_note),
        "breath": breath,
        "breath_note": Markup(breath_note),
    }


def _drawing(key: tuple[Any, ...], draw: Any) -> dict[str, Markup]:
    drawn = history.drawing_cache().get(key)
    if drawn is None:
        drawn = draw()
        history.drawing_cache().put(key, drawn)
    result: dict[str, Markup] = drawn
    return result


def _event_page(events: list[dict[str, Any]], chosen: dict[str, Any] | None) -> tuple[int, int]:
    """(page, pages) of the event table: ``?page=N`` (1-based), else the chosen event's page, else 1."""
    pages = max(1, -(-len(events) // NIGHT_EVENTS_PAGE))
    text = request.args.get("page")
    if text is None:
        if chosen is None:
            return 1, pages
        return events.index(chosen) // NIGHT_EVENTS_PAGE + 1, pages
    return parse_int(text, "page", 1, pages), pages


def _render_night(
    conn: sqlite3.Connection, view: history.NightView, event_id: str | None, error: str | None
) -> ResponseReturnValue:
    data = view.data
    whole = charts.night_axis(data.night, data.epochs, data.events, data.vitals)
    zoom = _zoom(whole)
    axis = charts.TimeAxis(*zoom) if zoom else whole
    types = _event_types(data.events)
    drawn = _drawing(
        ("night", str(data.night["id"]), view.stamp, axis.start, axis.end),
        lambda: _draw_timeline(axis, data, types),
    )
    chosen = None
    wave = None
    around = None
    if event_id:
        chosen = next((e for e in data.events if e["id"] == event_id), None)
        if chosen is None:
            raise NotFound(description=f"event: night {data.night['id']!r} has no event {event_id!r}")
        found = snippets.load_snippet(conn, event_id)
        t_start, t_end = parse_iso_utc(chosen["start_at"]), parse_iso_utc(chosen["end_at"])
        if found is not None:
            t0 = parse_iso_utc(found.start_at)
            wave = charts.waveform(
                found.samples, found.rate_hz, (t_start - t0).total_seconds(), (t_end - t0).total_seconds()
            )
        around = {
            "from": _clock(max(t_start - timedelta(seconds=AROUND_EVENT_S), whole.start)),
            "to": _clock(min(t_end + timedelta(seconds=AROUND_EVENT_S), whole.end)),
        }
    pan = None
    if zoom:
        span = axis.end - axis.start
        pan = {
            "earlier": {
                "from": _clock(max(axis.start - span, whole.start)),
                "to": _clock(max(axis.start, whole.start + span)),
            }
            if axis.start > whole.start
            else None,
            "later": {
                "from": _clock(min(axis.end, whole.end - span)),
                "to": _clock(min(axis.end + span, whole.end)),
            }
            if axis.end < whole.end
            else None,
        }
    night_date = str(data.night.get("night_date"))
    table_page, pages = _event_page(data.events, chosen)
    first = (table_page - 1) * NIGHT_EVENTS_PAGE
    page = render_template(
        "night.html",
        page="nights",
        night=data.night,
        summary=view.summary,
        events=data.events[first : first + NIGHT_EVENTS_PAGE],
        event_count=len(data.events),
        first_row=first + 1,
        table_page=table_page,
        pages=pages,
        zoom={"from": _clock(axis.start), "to": _clock(axis.end)} if zoom else None,
        whole={"from": _clock(whole.start)[:5], "to": _clock(whole.end)[:5]},
        pan=pan,
        around=around,
        chosen=chosen,
        wave=wave,
        labels=LABELS,
        tags=tags_by_date(conn).get(night_date, []),
        checkin=checkins_by_date(conn).get(night_date),
        error=error,
        **drawn,
    )
    return page, (400 if error else 200)


@bp.post("/night/<night_id>/relabel")
def relabel_form(night_id: str) -> ResponseReturnValue:
    """The relabel form: keep the user's label for one event of this night."""
    conn = get_db()
    view = None if conn is None else history.night_view(conn, night_id)
    if conn is None or view is None:
        raise NotFound(description=f"no night with id {night_id!r}")
    event_id = _form_text("event_id")
    if not any(e["id"] == event_id for e in view.data.events):
        raise BadRequest(description=f"event_id: night {night_id!r} has no event {event_id!r}")
    try:
        relabel(get_user_db(), event_id, _form_text("label"), source="web")
    except UserDataError as exc:
        return _render_night(conn, view, event_id, error=str(exc))
    return redirect(url_for("dashboard.night", night_id=night_id, event=event_id, saved=1) + "#event")


@bp.get("/trends")
def trends() -> ResponseReturnValue:
    """Rates per night over the last weeks with tags marked, weekly means, with/without, notices.

    ``?range=90|180|365|all``: how many of the newest nights to show (default 90); the weekly
    means and the with/without comparison are over the same nights.
    """
    chosen = request.args.get("range", history.DEFAULT_TREND_RANGE)
    if chosen not in history.TREND_RANGES:
        raise BadRequest(
            description=f"range: must be one of {', '.join(history.TREND_RANGES)} (nights), got {chosen!r}"
        )
    conn = get_db()
    data = None if conn is None else history.trends(conn, limit=history.TREND_RANGES[chosen])
    trend_charts = []
    if data is not None:
        trend_charts = [
            (
                m["name"],
                m["title"],
                charts.TREND_UNITS.get(m["name"], ""),
                charts.trend(m["name"], data["nights"]),
            )
            for m in data["metrics"]
        ]
    notices = [] if conn is None else queries.active_notices(conn)
    return render_template(
        "trends.html",
        page="trends",
        data=data,
        charts=trend_charts,
        notices=notices,
        ranges=list(history.TREND_RANGES),
        chosen_range=chosen,
    )


@bp.post("/notices/<notice_id>/dismiss")
def dismiss_notice_form(notice_id: str) -> ResponseReturnValue:
    """Dismiss a notice from the Trends page."""
    if not dismiss_notice(get_user_db(), notice_id, iso_utc(utc_now())):
        raise NotFound(description=f"no notice with id {notice_id!r}")
    return redirect(url_for("dashboard.trends"))


def _default_date() -> str:
    """Last night's date: the evening before today (local), as check-ins are written in the morning."""
    return (date.today() - timedelta(days=1)).isoformat()


def _form_text(field: str) -> str:
    """A form field's text, cleaned (``web.inputs.clean_text``); empty when absent."""
    return clean_text(request.form.get(field, ""))


def _scale(field: str) -> int | None:
    text = _form_text(field).strip()
    if not text:
        return None
    try:
        return parse_int(text, field, 1, 5)
    except BadInput:
        raise UserDataError(f"{field} must be a whole number from 1 to 5, got {text!r}") from None


def _render_checkin(night_date: str, error: str | None = None, status: int = 200) -> ResponseReturnValue:
    conn = get_db()
    checkin = None if conn is None else checkins_by_date(conn).get(night_date)
    tags = [] if conn is None else tags_by_date(conn).get(night_date, [])
    page = render_template(
        "checkin.html",
        page="checkin",
        night_date=night_date,
        checkin=checkin,
        tags=tags,
        tag_choices=TAGS,
        error=error,
        saved=request.args.get("saved") == "1",
    )
    return page, status


@bp.get("/checkin")
def checkin() -> ResponseReturnValue:
    """The morning check-in and the night's tags, for ``?date=YYYY-MM-DD`` (default: last night)."""
    night_date = request.args.get("date") or _default_date()
    try:
        date.fromisoformat(night_date)
    except ValueError:
        raise BadRequest(description=f"date: must be a date as YYYY-MM-DD, got {night_date!r}") from None
    return _render_checkin(night_date)


@bp.post("/checkin")
def checkin_post() -> ResponseReturnValue:
    """Save the check-in form."""
    night_date = _form_text("night_date")
    try:
        set_checkin(
            get_user_db(),
            night_date,
            sleep_quality=_scale("sleep_quality"),
            spasm_severity=_scale("spasm_severity"),
            note=_form_text("note"),
        )
    except UserDataError as exc:
        return _render_checkin(night_date if _is_date(night_date) else _default_date(), str(exc), 400)
    return redirect(url_for("dashboard.checkin", date=night_date, saved=1))


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


@bp.post("/checkin/tags")
def add_tag_form() -> ResponseReturnValue:
    """Add a tag to a night date."""
    night_date = _form_text("night_date")
    try:
        add_tag(
            get_user_db(),
            night_date,
            _form_text("tag"),
            detail=_form_text("detail"),
            at_local=_form_text("at_local") or None,
            source="web",
        )
    except UserDataError as exc:
        return _render_checkin(night_date if _is_date(night_date) else _default_date(), str(exc), 400)
    return redirect(url_for("dashboard.checkin", date=night_date, saved=1))


@bp.post('/checkin/tags/<id64(field="tag_id"):tag_id>/remove')
def remove_tag_form(tag_id: int) -> ResponseReturnValue:
    """Remove a tag; back to the check-in page of its date."""
    night_date = _form_text("night_date")
    if not remove_tag(get_user_db(), tag_id):
        raise NotFound(description=f"no tag with id {tag_id}")
    return redirect(url_for("dashboard.checkin", date=night_date if _is_date(night_date) else None))


@bp.get("/status")
def status() -> ResponseReturnValue:
    """Sensor health and calibration age, MQTT connection, outbox, disk, version."""
    config = current_app.config
    doc = status_info.status(get_db(), config["DATABASE"], config["UNIT_ID"])
    return render_template("status.html", page="status", doc=doc)


@bp.get("/export")
def export() -> ResponseReturnValue:
    """Links to the report and to each night's CSV and EDF+ files."""
    conn = get_db()
    rows = [] if conn is None else queries.export_rows(conn)
    return render_template(
        "export.html", page="export", nights=rows, report_ready=_report_module() is not None
    )


def _report_module() -> Any:
    try:
        from service.export import report
    except ImportError:
        return None
    return report


@bp.get("/export/report")
def export_report() -> ResponseReturnValue:
    """The clinician report over the last ``last`` nights (default 14), from ``service.export.report``."""
    report = _report_module()
    if report is None:
        abort(404, description="the report is not available in this version")
    last = parse_int(request.args.get("last", "14"), "last", 1, 366)
    conn = get_db()
    if conn is None:
        raise NotFound(description="no data yet: the monitor has not recorded a night")
    body = report.render_report(conn, last=last)
    mimetype = "text/html" if body.lstrip().startswith("<") else "text/plain"
    return Response(body, mimetype=mimetype)


def _night_or_404(night_id: str) -> sqlite3.Connection:
    conn = get_db()
    if conn is None or not queries.night_exists(conn, night_id):
        raise NotFound(description=f"no night with id {night_id!r}")
    return conn


@bp.get("/export/night/<night_id>.csv.zip")
def export_csv(night_id: str) -> ResponseReturnValue:
    """A zip of the night's CSV tables (nights, events, epochs, vitals, tags, check-ins)."""
    from service.export.csv_export import TABLES, collect_tables, to_csv

    conn = _night_or_404(night_id)
    tables = collect_tables(conn, [night_id])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, columns in TABLES.items():
            zf.writestr(f"{name}.csv", to_csv(columns, tables.get(name, [])))
    return Response(
        buffer.getvalue(),
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="bedside-{_safe(night_id)}.csv.zip"'},
    )


@bp.get("/export/night/<night_id>.edf")
def export_edf(night_id: str) -> ResponseReturnValue:
    """The night's raw signal as EDF+ with its events as annotations; 404 once the raw signal is pruned."""
    from service.export import RawSignalMissingError
    from service.export.edf import write_edf

    conn = _night_or_404(night_id)
    with tempfile.TemporaryDirectory(prefix="bedside-edf-") as folder:
        out = Path(folder) / "night.edf"
        try:
            write_edf(conn, night_id, out)
        except RawSignalMissingError as exc:
            raise NotFound(description=str(exc)) from None
        data = out.read_bytes()
    return Response(
        data,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="bedside-{_safe(night_id)}.edf"'},
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80]
