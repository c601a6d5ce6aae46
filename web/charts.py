"""Server-side SVG charts: a night's timeline, Tonight's last hour, an event's waveform, per-night trends.

Drawn here rather than in the browser (see docs/dashboard.md, "Charts"): the pages need no chart
library, read the same on any phone, work with JavaScript off, and a Pi renders a night once
(``web.dashboard`` caches the drawing per night and window). ``static/charts.js`` only adds
what needs a pointer: the values under the finger or mouse, a cursor across all lanes, drag to
zoom, and a tap on an event mark opening that event.

Each chart is a *lane*: a grid of a value axis (``svg.y-axis``: ticks with values, or the events
lane's row names), the plot (``svg.chart`` with a ``data-chart`` name: ``activity``, ``sleep``,
``events``, ``heart``, ``breath``, ``snippet``, ``trend-<metric>``, and a ``data-points`` count)
and a time axis under it (``svg.x-axis``: local hours, or minutes when zoomed in; dates on a
trend). Every lane of one timeline has the same value-axis width (CSS ``--gutter``) and the same
``data-t0``/``data-t1`` (UTC, ms), so their x ranges line up. A lane sits in a ``figure.plot``
whose caption names the chart and its unit (``data-unit``).

The data is drawn in a ``viewBox`` stretched to the chart's box (``preserveAspectRatio="none"``),
so a night fills the width of any screen; texts and trend dots are unstretched at percentage
positions. For the pointer script each chart carries its values: ``data-xs`` (seconds from
``data-t0``, or night indices on a trend) and ``data-ys``; each event row ``data-starts``.
Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from service.timefmt import parse_iso_utc
from web.display import tag_label

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
"""Each event type's colour (the stylesheet's ``.t-<type>`` rules say the same; a test checks)."""

HEART_RANGE_BPM = (40.0, 120.0)
"""The heart-rate lane's fixed scale: readings outside it are drawn at its edge and marked."""

BREATH_RANGE_BPM = (5.0, 30.0)
"""The breathing-rate lane's fixed scale, likewise."""

TICK_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200)
"""Time-axis tick spacings to choose from: the smallest giving at most ``MAX_TIME_TICKS`` ticks."""

MAX_TIME_TICKS = 10

RATE_POINTS = 600
"""A rate's line is reduced to at most this many points (means: 48 s each over 8 hours)."""

READOUT_POINTS = 400
"""Values a rate lane carries for the pointer readout (the marks for out-of-range use every reading)."""

MAX_OUT_OF_RANGE_MARKS = 60
"""Out-of-range runs marked one by one; the note under the lane counts them all."""


def _f(x: float) -> str:
    return f"{x:.1f}"


def _pct(x: float) -> str:
    """A viewBox x as a percentage of the chart's width."""
    return f"{x / WIDTH * 100:.2f}%"


def _attrs(data: dict[str, Any]) -> str:
    return "".join(f' data-{k}="{escape(str(v))}"' for k, v in data.items())


def _svg(
    name: str,
    height: int,
    body: Sequence[str],
    points: int,
    label: str,
    overlay: Sequence[str] = (),
    data: dict[str, Any] | None = None,
) -> Markup:
    """The plot: ``body`` stretched to the box; ``overlay`` (marks that keep their shape; x and y
    as percentages, sizes in px) drawn unstretched on top; ``data`` as ``data-*`` attributes."""
    return Markup(
        f'<svg class="chart" data-chart="{escape(name)}" data-points="{points}"{_attrs(data or {})}'
        f' role="img" aria-label="{escape(label)}"><svg class="plot" viewBox="0 0 {WIDTH} {height}"'
        f' preserveAspectRatio="none" width="100%" height="100%">'
        + "".join(body)
        + "</svg>"
        + "".join(overlay)
        + "</svg>"
    )


def y_axis(ticks: Sequence[tuple[float, str]]) -> str:
    """The value axis: each ``(fraction from the top, text)`` right-aligned beside the plot."""
    texts = "".join(
        f'<text class="tick-label" x="100%" dx="-4" y="{min(max(frac, 0.0), 1.0) * 100:.1f}%"'
        f' dy="{_dy(frac)}">{escape(text)}</text>'
        for frac, text in ticks
    )
    return f'<svg class="y-axis" aria-hidden="true">{texts}</svg>'


def _dy(frac: float) -> str:
    """Keep a tick's text inside the axis at the very top and bottom."""
    if frac <= 0.02:
        return "0.8em"
    if frac >= 0.98:
        return "-0.2em"
    return "0.35em"


def _grid_lines(fracs: Sequence[float], height: int) -> list[str]:
    """Faint horizontal lines at the value ticks (stretched part)."""
    return [
        f'<line class="grid" x1="0" x2="{WIDTH}" y1="{_f(f * height)}" y2="{_f(f * height)}"/>' for f in fracs
    ]


def lane(name: str, chart: Markup, axis_html: str, x_axis_html: str) -> Markup:
    """One lane: the value axis (or row names), the chart, and the time axis under the chart."""
    return Markup(f'<div class="lane" data-lane="{escape(name)}">{axis_html}{chart}{x_axis_html}</div>')


def figure(name: str, title: str, unit: str, body: Markup, note: str = "") -> Markup:
    """A lane with its caption naming the chart and its unit, and an optional note under it."""
    unit_html = f' <span class="unit">({escape(unit)})</span>' if unit else ""
    note_html = f'<p class="plot-note" data-note="{escape(name)}">{escape(note)}</p>' if note else ""
    return Markup(
        f'<figure class="plot" data-plot="{escape(name)}" data-unit="{escape(unit)}">'
        f"<figcaption>{escape(title)}{unit_html}</figcaption>{body}{note_html}</figure>"
    )


@dataclass(frozen=True)
class Tick:
    """A time-axis tick: its viewBox x and its label."""

    x: float
    label: str


class TimeAxis:
    """Maps UTC times in ``[start, end]`` onto ``0..WIDTH``; its ticks are local clock times."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.end = max(end, start + timedelta(seconds=1))
        self.span_s = (self.end - start).total_seconds()

    @property
    def data(self) -> dict[str, int]:
        """``data-t0``/``data-t1`` (UTC ms) and the server's UTC offset at the start (minutes)."""
        offset = self.start.astimezone().utcoffset() or timedelta(0)
        return {
            "t0": round(self.start.timestamp() * 1000),
            "t1": round(self.end.timestamp() * 1000),
            "utc-offset-min": round(offset.total_seconds() / 60),
        }

    def x(self, moment: datetime | str) -> float:
        t = parse_iso_utc(moment) if isinstance(moment, str) else moment
        return min(max((t - self.start).total_seconds() / self.span_s * WIDTH, 0.0), WIDTH)

    def seconds(self, moments: Sequence[str]) -> np.ndarray:
        """Seconds from the start of many store-format UTC times (numpy parses them; others one by one)."""
        if moments and all(m.endswith("Z") for m in moments):
            try:
                times = np.array([m[:-1] for m in moments], dtype="datetime64[ms]")
            except ValueError:
                pass
            else:
                origin = np.datetime64(self.start.astimezone(UTC).replace(tzinfo=None), "ms")
                return (times - origin).astype(np.float64) / 1000.0
        return np.array([(parse_iso_utc(m) - self.start).total_seconds() for m in moments], dtype=float)

    def xs(self, moments: Sequence[str]) -> np.ndarray:
        """``x`` of many store-format UTC times at once."""
        return np.clip(self.seconds(moments) / self.span_s * WIDTH, 0.0, WIDTH)

    def step_s(self) -> int:
        """The tick spacing: the smallest of ``TICK_STEPS_S`` giving at most ``MAX_TIME_TICKS`` ticks."""
        return next((s for s in TICK_STEPS_S if self.span_s / s <= MAX_TIME_TICKS), TICK_STEPS_S[-1])

    def ticks(self) -> list[Tick]:
        """Ticks at whole local hours (or minutes, when the span is short), labelled ``HH:MM``."""
        step = self.step_s()
        local = self.start.astimezone()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        since = (local - midnight).total_seconds()
        tick = midnight + timedelta(seconds=math.ceil(since / step) * step)
        out = []
        while tick <= self.end:
            out.append(Tick(self.x(tick), f"{tick:%H:%M}"))
            tick += timedelta(seconds=step)
        return out

    def tick_lines(self, height: int) -> list[str]:
        """A faint vertical line at each tick (stretched part)."""
        return [
            f'<line class="tick" x1="{_f(t.x)}" x2="{_f(t.x)}" y1="0" y2="{height}"/>' for t in self.ticks()
        ]

    def x_axis(self) -> str:
        """The labelled time axis under a chart (local clock time)."""
        texts = "".join(
            f'<text class="tick-label" x="{_pct(t.x)}" y="12" text-anchor="{_anchor(t.x)}">{t.label}</text>'
            for t in self.ticks()
        )
        return f'<svg class="x-axis" aria-label="local time">{texts}</svg>'


def _anchor(x: float) -> str:
    """Labels at the very ends stay inside the axis."""
    if x < 20:
        return "start"
    if x > WIDTH - 20:
        return "end"
    return "middle"


def night_axis(
    night: dict[str, Any],
    epochs: Sequence[dict[str, Any]],
    events: Sequence[dict[str, Any]] = (),
    vitals: Sequence[dict[str, Any]] = (),
) -> TimeAxis:
    """The night from its start to its end; for a night still running, to its newest data: the end
    of its last epoch, event or vitals reading (epochs reach the store in batches, events and vitals
    at once, so the newest minute is in the latter)."""
    start = parse_iso_utc(night["started_at"])
    end = parse_iso_utc(night["ended_at"]) if night.get("ended_at") else None
    if end is None:
        end = start + timedelta(minutes=1)
        if epochs:
            last = epochs[-1]
            end = max(end, parse_iso_utc(last["start_at"]) + timedelta(seconds=float(last["duration_s"])))
        # stored times share one ISO format (service.timefmt.iso_utc), so the text's maximum is the
        # latest: one parse, not one per row
        if events:
            end = max(end, parse_iso_utc(max(str(e["end_at"]) for e in events)))
        if vitals:
            end = max(end, parse_iso_utc(max(str(v["t_at"]) for v in vitals)))
    return TimeAxis(start, end)


def _in_window(
    axis: TimeAxis, rows: Sequence[dict[str, Any]], key: str, pad_s: float = 0.0
) -> list[dict[str, Any]]:
    """The rows whose ``key`` time is inside the axis (``pad_s`` either side)."""
    if not rows:
        return []
    secs = axis.seconds([str(r[key]) for r in rows])
    keep = (secs >= -pad_s) & (secs <= axis.span_s + pad_s)
    return [r for r, k in zip(rows, keep.tolist(), strict=True) if k]


def _nice(value: float) -> float:
    """The nearest of 1, 2, 5 x 10^k at or below ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return max(m * power for m in (1, 2, 5) if m * power <= value * 1.0000001)


def _num(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def activity(axis: TimeAxis, epochs: Sequence[dict[str, Any]], height: int = 120) -> Markup:
    """Activity count per epoch as bars (square-root scale, so one big epoch does not flatten the rest)."""
    epochs = _in_window(axis, epochs, "start_at", pad_s=60.0)
    body = axis.tick_lines(height)
    counts = [max(float(e["count"]), 0.0) for e in epochs]
    peak = max(counts, default=0.0)
    top = _nice(peak) * (2 if peak > _nice(peak) else 1) if peak > 0 else 10.0
    root = math.sqrt(top)
    values = [v for v in (top / 16, top / 4, top) if v >= 1]
    fracs = [(1 - math.sqrt(v) / root) for v in values]
    body += _grid_lines(fracs, height)
    starts = axis.seconds([str(e["start_at"]) for e in epochs])
    for epoch, count, s in zip(epochs, counts, starts.tolist(), strict=True):
        x0 = min(max(s / axis.span_s * WIDTH, 0.0), WIDTH)
        x1 = min(max((s + float(epoch["duration_s"])) / axis.span_s * WIDTH, 0.0), WIDTH)
        h = math.sqrt(min(count, top)) / root * height
        if h > 0 and x1 > x0:
            body.append(
                f'<rect class="bar" x="{_f(x0)}" y="{_f(height - h)}" width="{_f(max(x1 - x0, 0.5))}"'
                f' height="{_f(h)}"/>'
            )
    data = {
        **axis.data,
        "xs": ",".join(str(round(s)) for s in starts.tolist()),
        "ys": ",".join(_num(c) for c in counts),
        "unit": "count",
    }
    chart = _svg("activity", height, body, len(epochs), "activity per 30-s epoch", data=data)
    ticks = [(1.0, "0"), *((f, _num(v)) for f, v in zip(fracs, values, strict=True))]
    return lane("activity", chart, y_axis(ticks), axis.x_axis())


SLEEP_STATES = {"asleep": "a", "awake": "w", "out": "o"}


def sleep_band(axis: TimeAxis, epochs: Sequence[dict[str, Any]], height: int = 24) -> Markup:
    """One band: asleep, awake in bed, out of bed; consecutive epochs of one state merged."""
    epochs = _in_window(axis, epochs, "start_at", pad_s=60.0)
    body = axis.tick_lines(height)
    runs: list[tuple[str, float, float, float]] = []
    starts = axis.seconds([str(e["start_at"]) for e in epochs])
    for epoch, s in zip(epochs, starts.tolist(), strict=True):
        state = "out" if not epoch["in_bed"] else ("asleep" if epoch["asleep"] else "awake")
        x0 = min(max(s / axis.span_s * WIDTH, 0.0), WIDTH)
        x1 = min(max((s + float(epoch["duration_s"])) / axis.span_s * WIDTH, 0.0), WIDTH)
        if runs and runs[-1][0] == state and abs(runs[-1][2] - x0) < 1.0:
            runs[-1] = (state, runs[-1][1], x1, runs[-1][3])
        else:
            runs.append((state, x0, x1, s))
    for state, x0, x1, _ in runs:
        body.append(
            f'<rect class="band-{state}" data-state="{state}" x="{_f(x0)}" y="0"'
            f' width="{_f(max(x1 - x0, 0.5))}" height="{height}"/>'
        )
    data = {
        **axis.data,
        "xs": ",".join(str(round(s)) for *_, s in runs),
        "ys": ",".join(SLEEP_STATES[r[0]] for r in runs),
    }
    chart = _svg("sleep", height, body, len(runs), "asleep, awake in bed, out of bed", data=data)
    return lane("sleep", chart, y_axis([]), axis.x_axis())


ROW_H = 16
"""viewBox height of one row of the events chart (CSS gives each row the height of its label)."""


def event_markers(
    axis: TimeAxis,
    events: Sequence[dict[str, Any]],
    types: Sequence[str],
    labels: dict[str, str] | None = None,
) -> Markup:
    """One row per event type, each event a mark; the row names in the value axis's place.

    A night can have thousands of events, so each row is two paths (short events as 2-px strokes,
    longer ones as filled spans) rather than an element per event, and the row's ``<g>`` carries
    ``data-starts`` (seconds from ``data-t0``): static/charts.js shows the event under the pointer
    and opens it on a tap (``?type=<type>&at=<HH:MM:SS>``, see ``web.dashboard.night``). The
    colour comes from the stylesheet by the row's ``t-<type>`` class.
    """
    names = labels or {}
    rows: dict[str, tuple[list[str], list[str], list[str]]] = {t: ([], [], []) for t in types}
    events = _in_window(axis, events, "start_at") if events else []
    starts = axis.seconds([str(e["start_at"]) for e in events])
    ends = axis.seconds([str(e["end_at"]) for e in events])
    scale = WIDTH / axis.span_s
    shown = 0
    for event, s, e in zip(events, starts.tolist(), ends.tolist(), strict=True):
        kind = str(event.get("label") or event["event_type"])
        row = rows.get(kind)
        if row is None:
            continue
        shown += 1
        x0 = min(max(s * scale, 0.0), WIDTH)
        w = min(max(e * scale, 0.0), WIDTH) - x0
        if w < 2.0:
            row[0].append(f"M{x0:.1f} 0v10")
        else:
            row[1].append(f"M{x0:.1f} 0h{w:.1f}v10h-{w:.1f}z")
        row[2].append(str(math.floor(s)))
    body = axis.tick_lines(ROW_H * max(len(types), 1))
    for i, t in enumerate(types):
        strokes, spans, row_starts = rows[t]
        cls = f"t-{escape(t)}"
        body.append(
            f'<g class="row {cls}" data-type="{escape(t)}" data-row="{i}"'
            f' data-starts="{",".join(row_starts)}"'
            f' transform="translate(0 {i * ROW_H + 3})">'
            + (f'<path class="marks" d="{"".join(strokes)}"/>' if strokes else "")
            + (f'<path class="spans" d="{"".join(spans)}"/>' if spans else "")
            + "</g>"
        )
    items = "".join(
        f'<li class="row-label" data-type="{escape(t)}"><span class="key t-{escape(t)}"></span>'
        f"{escape(names.get(t, t))}</li>"
        for t in types
    )
    n_rows = max(len(types), 1)
    chart = _svg("events", ROW_H * n_rows, body, shown, "events by type", data=axis.data)
    return Markup(
        f'<div class="lane lanes-{min(n_rows, 12)}" data-lane="events"><ul class="lane-labels">{items}</ul>'
        f"{chart}{axis.x_axis()}</div>"
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


def _out_of_range_runs(
    secs: np.ndarray, ys: np.ndarray, lo: float, hi: float
) -> list[tuple[float, float, str]]:
    """Runs of consecutive readings outside ``[lo, hi]``: (start s, extreme value, "above"/"below")."""
    runs: list[tuple[float, float, str]] = []
    side_prev = ""
    for s, y in zip(secs.tolist(), ys.tolist(), strict=True):
        side = "above" if y > hi else ("below" if y < lo else "")
        if side and side == side_prev:
            t0, v, _ = runs[-1]
            runs[-1] = (t0, max(v, y) if side == "above" else min(v, y), side)
        elif side:
            runs.append((s, y, side))
        side_prev = side if math.isfinite(y) else side_prev
    return runs


def rate(
    axis: TimeAxis,
    rows: Sequence[dict[str, Any]],
    key: str,
    name: str,
    scale: tuple[float, float],
    ticks: Sequence[float],
    height: int = 96,
) -> tuple[Markup, str]:
    """A rate in /min over time on a fixed scale (``heart`` or ``breath``), and a note on the
    readings outside the scale (empty when there are none).

    Readings outside the scale are drawn at its edge and marked with a triangle there (its
    tooltip gives the value); the note counts them and names the most extreme. The pointer
    readout shows the value itself."""
    lo, hi = scale
    rows = _in_window(axis, rows, "t_at")
    body = axis.tick_lines(height)
    fracs = [1 - (v - lo) / (hi - lo) for v in ticks]
    body += _grid_lines(fracs, height)
    overlay: list[str] = []
    note = ""
    data: dict[str, Any] = {**axis.data, "unit": "/min"}
    if rows:
        secs = axis.seconds([str(r["t_at"]) for r in rows])
        ys = np.array([np.nan if r[key] is None else float(r[key]) for r in rows])
        finite = np.isfinite(ys)
        secs, ys = secs[finite], ys[finite]
        xs = np.clip(secs / axis.span_s * WIDTH, 0.0, WIDTH)
        rx, ry = _reduce(xs, ys, RATE_POINTS)

        def y_of(v: float) -> float:
            return height * (1 - (min(max(v, lo), hi) - lo) / (hi - lo))

        body += _polylines(rx, ry, y_of, name)
        rsecs, rys = _reduce(secs, ys, READOUT_POINTS)
        data["xs"] = ",".join(str(round(s)) for s in rsecs.tolist())
        data["ys"] = ",".join("" if not math.isfinite(v) else f"{v:.0f}" for v in rys.tolist())
        runs = _out_of_range_runs(secs, ys, lo, hi)
        for start_s, value, side in runs[:MAX_OUT_OF_RANGE_MARKS]:
            x = _pct(min(max(start_s / axis.span_s * WIDTH, 0.0), WIDTH))
            at = (axis.start + timedelta(seconds=start_s)).astimezone()
            tip = f"{value:.0f} /min at {at:%H:%M:%S}: {side} the {lo:.0f}–{hi:.0f} scale"
            y = "0%" if side == "above" else "100%"
            overlay.append(
                f'<text class="out-of-range" data-side="{side}" data-value="{value:.0f}" x="{x}" y="{y}"'
                f' dy="{"0.9em" if side == "above" else "-0.1em"}" text-anchor="middle">'
                f"{'▲' if side == 'above' else '▼'}<title>{escape(tip)}</title></text>"
            )
        if runs:
            above = [r for r in runs if r[2] == "above"]
            below = [r for r in runs if r[2] == "below"]
            parts = []
            if above:
                top = max(above, key=lambda r: r[1])
                at = (axis.start + timedelta(seconds=top[0])).astimezone()
                parts.append(
                    f"{len(above)} time{'s' if len(above) > 1 else ''} above {hi:.0f} /min"
                    f" (highest {top[1]:.0f} /min at {at:%H:%M})"
                )
            if below:
                low = min(below, key=lambda r: r[1])
                at = (axis.start + timedelta(seconds=low[0])).astimezone()
                parts.append(
                    f"{len(below)} time{'s' if len(below) > 1 else ''} below {lo:.0f} /min"
                    f" (lowest {low[1]:.0f} /min at {at:%H:%M})"
                )
            note = "Outside the scale (▲ ▼ at the edge): " + "; ".join(parts) + "."
    label = "heart rate" if name == "heart" else "breathing rate"
    chart = _svg(name, height, body, len(rows), label, overlay, data=data)
    axis_ticks = [(f, _num(v)) for f, v in zip(fracs, ticks, strict=True)]
    return lane(name, chart, y_axis(axis_ticks), axis.x_axis()), note


def heart(axis: TimeAxis, rows: Sequence[dict[str, Any]], height: int = 96) -> tuple[Markup, str]:
    """Heart rate on the 40–120 /min scale (see ``rate``)."""
    return rate(axis, rows, "heart_bpm", "heart", HEART_RANGE_BPM, (40, 60, 80, 100, 120), height)


def breath(axis: TimeAxis, rows: Sequence[dict[str, Any]], height: int = 72) -> tuple[Markup, str]:
    """Breathing rate on the 5–30 /min scale (see ``rate``)."""
    return rate(axis, rows, "breath_bpm", "breath", BREATH_RANGE_BPM, (5, 10, 20, 30), height)


def waveform(
    samples: np.ndarray, rate_hz: float, mark_from_s: float, mark_to_s: float, height: int = 160
) -> Markup:
    """The raw signal around an event, min/max per column; the event's span shaded. Its time axis
    is seconds from the snippet's start; the signal has no calibrated unit, so its value axis
    says "raw" with the lowest and highest sample."""
    n = int(samples.size)
    body: list[str] = []
    ticks: list[tuple[float, str]] = []
    x_labels = ""
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
        ticks = [(0.0, f"{hi:.3g}"), (1.0, f"{lo:.3g}")]
        step = max(1, math.ceil(span_s / 8))
        x_labels = "".join(
            f'<text class="tick-label" x="{_pct(s / span_s * WIDTH)}" y="12"'
            f' text-anchor="{_anchor(s / span_s * WIDTH)}">{s} s</text>'
            for s in range(0, int(span_s) + 1, step)
        )
    chart = _svg("snippet", height, body, n, "raw signal around the event")
    return lane("snippet", chart, y_axis(ticks), f'<svg class="x-axis" aria-label="seconds">{x_labels}</svg>')


TREND_UNITS: dict[str, str] = {
    "movement_index_per_h": "per hour of sleep",
    "spasms_per_night": "per night",
    "awakenings_per_night": "per night",
    "efficiency_pct": "%",
}
"""The unit of each trend metric, for its caption."""


def _date_label(night_date: str) -> str:
    try:
        return datetime.strptime(night_date, "%Y-%m-%d").strftime("%d %b").lstrip("0")
    except ValueError:
        return night_date


def trend(name: str, nights: Sequence[dict[str, Any]], height: int = 120) -> Markup:
    """One value per night (a dot and a line), nights with a tag marked by a tick at the bottom;
    dates under it, values beside it."""
    values = [n.get(name) for n in nights]
    finite = [float(v) for v in values if v is not None]
    body: list[str] = []
    overlay: list[str] = []
    ticks: list[tuple[float, str]] = []
    x_labels = ""
    data: dict[str, Any] = {}
    if nights:
        peak = max(finite, default=0.0)
        top = (
            100.0
            if name == "efficiency_pct"
            else (_nice(peak) * (2 if peak > _nice(peak) else 1) if peak > 0 else 1.0)
        )
        if peak > top:
            top = peak
        plot_h = height - 14  # the bottom 14 units hold the tag marks

        def y_of(v: float) -> float:
            return plot_h * (1 - v / top) + 2

        values_ticks = [0.0, top / 2, top]
        ticks = [(y_of(v) / height, _num(v)) for v in values_ticks]
        body += _grid_lines([y_of(v) / height for v in values_ticks], height)
        step = WIDTH / max(len(nights), 1)
        radius = 4 if len(nights) <= 120 else 2  # a year of dots must not merge into one band
        xs = np.array([(i + 0.5) * step for i in range(len(nights))])
        ys = np.array([np.nan if v is None else float(v) for v in values])
        body += _polylines(xs, ys, y_of, "trend-line")
        for night, x, v in zip(nights, xs, values, strict=True):
            date = escape(night["night_date"])
            if v is not None:  # unstretched, so a dot stays round: percentage position, radius in px
                overlay.append(
                    f'<a href="/night/{escape(night["night_id"])}"><circle class="dot" cx="{_pct(float(x))}"'
                    f' cy="{y_of(float(v)) / height * 100:.2f}%" r="{radius}" data-date="{date}">'
                    f"<title>{date}: {_num(float(v))}</title></circle></a>"
                )
            if night.get("tags"):
                tags = escape(", ".join(tag_label(t) for t in night["tags"]))
                body.append(
                    f'<rect class="tag-mark" data-date="{date}" data-tags="{tags}" x="{_f(float(x) - 3)}"'
                    f' y="{height - 10}" width="6" height="10"><title>{date}: {tags}</title></rect>'
                )
        every = max(1, math.ceil(len(nights) / 8))
        x_labels = "".join(
            f'<text class="tick-label" x="{_pct(float(xs[i]))}" y="12" text-anchor="{_anchor(float(xs[i]))}">'
            f"{escape(_date_label(str(nights[i]['night_date'])))}</text>"
            for i in range(len(nights) - 1, -1, -every)
        )
        data = {
            "xs": ",".join(str(i) for i in range(len(nights))),
            "ys": ",".join("" if v is None else _num(float(v)) for v in values),
            "dates": ",".join(str(n["night_date"]) for n in nights),
            "unit": TREND_UNITS.get(name, ""),
        }
    chart = _svg(f"trend-{name}", height, body, len(finite), f"{name} per night", overlay, data=data)
    return lane(
        f"trend-{name}", chart, y_axis(ticks), f'<svg class="x-axis" aria-label="night of">{x_labels}</svg>'
    )
