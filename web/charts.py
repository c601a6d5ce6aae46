"""Server-side SVG charts: a night's timeline, an event's waveform, per-night trends.

Drawn here rather than in the browser so the pages need no chart library, render the same
on any phone, and work with JavaScript off. Each chart is an ``<svg>`` with a ``data-chart``
name (``activity``, ``sleep``, ``events``, ``vitals``, ``snippet``, ``trend-<metric>``) and a
``data-points`` count; event markers are links to the event (``data-event-id``). Every text
is escaped.

The data is drawn in an inner ``<svg>`` with a fixed ``viewBox`` stretched to the chart's box
(``preserveAspectRatio="none"``), so a night fills the width of any screen. Texts (hour labels,
a scale's top value) and the trend dots sit in the outer, unstretched ``<svg>`` at percentage
positions, so they keep their shape on a phone; the events chart's row names are HTML beside
its ``<svg>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from service.timefmt import parse_iso_utc

WIDTH = 1000
"""viewBox width of every chart."""

MAX_POINTS = 800
"""Lines are reduced to at most this many points (min/max per column for waveforms)."""

EVENT_COLORS: dict[str, str] = {
    "jerk": "#f5a623",
    "limb_movement": "#4a90e2",
    "spasm": "#e94e77",
    "large_movement": "#9b59b6",
    "plm_series": "#50e3c2",
    "restless": "#b8e986",
    "awakening": "#ff6f3c",
    "fell_asleep": "#7ed6df",
    "bed_entry": "#95a5a6",
    "bed_exit": "#95a5a6",
    "sensor_fault": "#ff0000",
}


def _f(x: float) -> str:
    return f"{x:.1f}"


def _svg(
    name: str, height: int, body: list[str], points: int, label: str, overlay: Sequence[str] = ()
) -> Markup:
    """The chart: ``body`` stretched to the box; ``overlay`` (texts, trend dots; x and y as
    percentages, sizes in px) drawn unstretched on top."""
    return Markup(
        f'<svg class="chart" data-chart="{escape(name)}" data-points="{points}" role="img"'
        f' aria-label="{escape(label)}"><svg class="plot" viewBox="0 0 {WIDTH} {height}"'
        f' preserveAspectRatio="none" width="100%" height="100%">'
        + "".join(body)
        + "</svg>"
        + "".join(overlay)
        + "</svg>"
    )


def _pct(x: float) -> str:
    """A viewBox x as a percentage of the chart's width."""
    return f"{x / WIDTH * 100:.2f}%"


class TimeAxis:
    """Maps UTC times in ``[start, end]`` onto ``0..WIDTH``."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.span_s = max((end - start).total_seconds(), 1.0)

    def x(self, moment: datetime | str) -> float:
        t = parse_iso_utc(moment) if isinstance(moment, str) else moment
        return min(max((t - self.start).total_seconds() / self.span_s * WIDTH, 0.0), WIDTH)

    def xs(self, moments: Sequence[str]) -> np.ndarray:
        """``x`` of many store-format UTC times at once (numpy parses them; others one by one)."""
        if not all(m.endswith("Z") for m in moments):
            return np.array([self.x(m) for m in moments], dtype=float)
        try:
            times = np.array([m[:-1] for m in moments], dtype="datetime64[ms]")
        except ValueError:
            return np.array([self.x(m) for m in moments], dtype=float)
        origin = np.datetime64(self.start.astimezone(UTC).replace(tzinfo=None), "ms")
        seconds = (times - origin).astype(np.float64) / 1000.0
        return np.clip(seconds / self.span_s * WIDTH, 0.0, WIDTH)

    def hour_ticks(self, height: int) -> tuple[list[str], list[str]]:
        """A faint line at each full local hour (stretched part) and its hour label (unstretched)."""
        lines, labels = [], []
        local = self.start.astimezone()
        first = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        tick = first
        while (tick - local).total_seconds() <= self.span_s:
            x = self.x(tick)
            lines.append(f'<line class="tick" x1="{_f(x)}" x2="{_f(x)}" y1="0" y2="{height}"/>')
            if x < WIDTH - 20:
                labels.append(
                    f'<text class="tick-label" x="{_pct(x)}" dx="3" y="100%" dy="-3">{tick:%H}</text>'
                )
            tick += timedelta(hours=1)
        return lines, labels


def night_axis(night: dict[str, Any], epochs: Sequence[dict[str, Any]]) -> TimeAxis:
    """The night from its start to its end (or its last epoch, for a night still running)."""
    start = parse_iso_utc(night["started_at"])
    end = parse_iso_utc(night["ended_at"]) if night.get("ended_at") else None
    if end is None:
        end = start + timedelta(minutes=1)
        if epochs:
            last = epochs[-1]
            end = max(end, parse_iso_utc(last["start_at"]) + timedelta(seconds=float(last["duration_s"])))
    return TimeAxis(start, end)


def activity(axis: TimeAxis, epochs: Sequence[dict[str, Any]], height: int = 120) -> Markup:
    """Activity count per epoch as bars (square-root scale, so one big epoch does not flatten the rest)."""
    body, texts = axis.hour_ticks(height)
    counts = [max(float(e["count"]), 0.0) for e in epochs]
    top = math.sqrt(max(counts, default=0.0)) or 1.0
    for epoch, count in zip(epochs, counts, strict=True):
        start = parse_iso_utc(epoch["start_at"])
        x0 = axis.x(start)
        x1 = axis.x(start + timedelta(seconds=float(epoch["duration_s"])))
        h = math.sqrt(count) / top * (height - 14)
        if h > 0:
            body.append(
                f'<rect class="bar" x="{_f(x0)}" y="{_f(height - 14 - h)}" width="{_f(max(x1 - x0, 0.5))}"'
                f' height="{_f(h)}"/>'
            )
    return _svg("activity", height, body, len(epochs), "activity per 30 s epoch", texts)


def sleep_band(axis: TimeAxis, epochs: Sequence[dict[str, Any]], height: int = 24) -> Markup:
    """One band: asleep, awake in bed, out of bed; consecutive epochs of one state merged."""
    body: list[str] = []
    runs: list[tuple[str, float, float]] = []
    for epoch in epochs:
        state = "out" if not epoch["in_bed"] else ("asleep" if epoch["asleep"] else "awake")
        start = parse_iso_utc(epoch["start_at"])
        x0 = axis.x(start)
        x1 = axis.x(start + timedelta(seconds=float(epoch["duration_s"])))
        if runs and runs[-1][0] == state and abs(runs[-1][2] - x0) < 1.0:
            runs[-1] = (state, runs[-1][1], x1)
        else:
            runs.append((state, x0, x1))
    for state, x0, x1 in runs:
        body.append(
            f'<rect class="band-{state}" data-state="{state}" x="{_f(x0)}" y="0"'
            f' width="{_f(max(x1 - x0, 0.5))}" height="{height}"/>'
        )
    return _svg("sleep", height, body, len(runs), "asleep, awake in bed, out of bed")


ROW_H = 16
"""viewBox height of one row of the events chart (CSS gives each row the height of its label)."""


def event_markers(
    axis: TimeAxis,
    events: Sequence[dict[str, Any]],
    night_id: str,
    types: Sequence[str],
    labels: dict[str, str] | None = None,
) -> Markup:
    """One row per event type; each event a mark linking to its page section (waveform, relabel).

    The row names are an HTML list beside the chart (class ``lanes-N`` sizes both to N rows), so
    they are never squashed or drawn over the marks. Each mark is kept small (its colour comes from
    the stylesheet by its link's ``data-type``): a night can have thousands.
    """
    names = labels or {}
    rows = {t: i for i, t in enumerate(types)}
    n_rows = max(len(types), 1)
    body: list[str] = []
    starts = axis.xs([str(e["start_at"]) for e in events])
    ends = axis.xs([str(e["end_at"]) for e in events])
    for event, x0, x1 in zip(events, starts.tolist(), ends.tolist(), strict=True):
        kind = str(event.get("label") or event["event_type"])
        row = rows.get(kind)
        if row is None:
            continue
        eid = escape(event["id"])
        body.append(
            f'<a href="?event={eid}#event" data-event-id="{eid}" data-type="{kind}">'
            f'<rect x="{x0:.1f}" y="{row * ROW_H + 3}" width="{max(x1 - x0, 2.0):.1f}" height="10"/></a>'
        )
    items = "".join(
        f'<li class="row-label"><span class="key t-{escape(t)}"></span>{escape(names.get(t, t))}</li>'
        for t in types
    )
    chart = _svg("events", ROW_H * n_rows, body, len(events), "events by type")
    return Markup(
        f'<div class="lanes lanes-{min(n_rows, 12)}"><ul class="lane-labels">{items}</ul>{chart}</div>'
    )


def _reduce(xs: np.ndarray, ys: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` points: means over equal slices (NaN-aware)."""
    if xs.size <= n:
        return xs, ys
    starts = np.linspace(0, xs.size, n + 1).astype(int)[:-1]  # strictly increasing: xs.size > n
    sizes = np.diff(np.append(starts, xs.size))
    finite = np.isfinite(ys)
    mx = np.add.reduceat(xs, starts) / sizes
    counts = np.add.reduceat(finite.astype(np.int64), starts)
    sums = np.add.reduceat(np.where(finite, ys, 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        my = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return mx, my


def _polylines(xs: np.ndarray, ys: np.ndarray, y_of: Any, css: str) -> list[str]:
    """Polylines through finite points; a NaN breaks the line."""
    out, run = [], []
    for x, y in zip(xs, ys, strict=True):
        if np.isfinite(y):
            run.append(f"{_f(float(x))},{_f(y_of(float(y)))}")
        elif run:
            out.append(run)
            run = []
    if run:
        out.append(run)
    return [f'<polyline class="{css}" points="{" ".join(r)}"/>' for r in out if r]


def vitals(axis: TimeAxis, rows: Sequence[dict[str, Any]], height: int = 120) -> Markup:
    """Heart rate (top scale 40..120 /min) and breathing rate (5..30 /min) over the night."""
    body, texts = axis.hour_ticks(height)
    if rows:
        xs = axis.xs([str(r["t_at"]) for r in rows])
        for key, lo, hi, css in (("heart_bpm", 40.0, 120.0, "heart"), ("breath_bpm", 5.0, 30.0, "breath")):
            ys = np.array([np.nan if r[key] is None else float(r[key]) for r in rows])
            rx, ry = _reduce(xs, ys)

            def y_of(v: float, lo: float = lo, hi: float = hi) -> float:
                return (height - 14) * (1 - (min(max(v, lo), hi) - lo) / (hi - lo)) + 2

            body += _polylines(rx, ry, y_of, css)
    return _svg("vitals", height, body, len(rows), "heart and breathing rate", texts)


def waveform(
    samples: np.ndarray, rate_hz: float, mark_from_s: float, mark_to_s: float, height: int = 160
) -> Markup:
    """The raw signal around an event, min/max per column; the event's span shaded."""
    n = int(samples.size)
    body: list[str] = []
    if n:
        span_s = max(n / rate_hz, 1e-9)
        x0 = min(max(mark_from_s / span_s * WIDTH, 0.0), WIDTH)
        x1 = min(max(mark_to_s / span_s * WIDTH, 0.0), WIDTH)
        body.append(
            f'<rect class="span" x="{_f(x0)}" y="0" width="{_f(max(x1 - x0, 1.0))}" height="{height}"/>'
        )
        lo, hi = float(np.nanmin(samples)), float(np.nanmax(samples))
        scale = (hi - lo) or 1.0

        def y_of(v: float) -> float:
            return (height - 4) * (1 - (v - lo) / scale) + 2

        cols = min(n, MAX_POINTS)
        edges = np.linspace(0, n, cols + 1).astype(int)
        pts = []
        for i, (a, b) in enumerate(pairwise(edges)):
            if b <= a:
                continue
            x = (a + b) / 2 / n * WIDTH
            seg = samples[a:b]
            if i % 2:
                pts += [(x, float(seg.max())), (x, float(seg.min()))]
            else:
                pts += [(x, float(seg.min())), (x, float(seg.max()))]
        body.append(
            '<polyline class="wave" points="' + " ".join(f"{_f(x)},{_f(y_of(y))}" for x, y in pts) + '"/>'
        )
    return _svg("snippet", height, body, n, "raw signal around the event")


def trend(name: str, nights: Sequence[dict[str, Any]], height: int = 140) -> Markup:
    """One value per night (a dot and a line), nights with a tag marked by a tick at the bottom."""
    values = [n.get(name) for n in nights]
    finite = [float(v) for v in values if v is not None]
    body: list[str] = []
    texts: list[str] = []
    if nights:
        top = max(finite, default=0.0)
        top = top * 1.1 if top > 0 else 1.0
        step = WIDTH / max(len(nights), 1)

        def y_of(v: float) -> float:
            return (height - 22) * (1 - v / top) + 4

        radius = 4 if len(nights) <= 120 else 2  # a year of dots must not merge into one band
        xs = np.array([(i + 0.5) * step for i in range(len(nights))])
        ys = np.array([np.nan if v is None else float(v) for v in values])
        body += _polylines(xs, ys, y_of, "trend-line")
        for night, x, v in zip(nights, xs, values, strict=True):
            date = escape(night["night_date"])
            if v is not None:  # unstretched, so a dot stays round: percentage position, radius in px
                texts.append(
                    f'<a href="/night/{escape(night["night_id"])}"><circle class="dot" cx="{_pct(float(x))}"'
                    f' cy="{y_of(float(v)) / height * 100:.2f}%" r="{radius}" data-date="{date}">'
                    f"<title>{date}: {v}</title></circle></a>"
                )
            if night.get("tags"):
                tags = escape(", ".join(night["tags"]))
                body.append(
                    f'<rect class="tag-mark" data-date="{date}" data-tags="{tags}" x="{_f(float(x) - 3)}"'
                    f' y="{height - 14}" width="6" height="10"><title>{date}: {tags}</title></rect>'
                )
        texts.append(f'<text class="tick-label" x="4" y="14">{top / 1.1:.3g}</text>')
    return _svg(f"trend-{name}", height, body, len(finite), f"{name} per night", texts)
