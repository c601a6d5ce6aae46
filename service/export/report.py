"""The doctor's report: one self-contained, printable HTML page over the last nights.

Everything is inside the page (inline CSS, SVG charts drawn here on the server, no script,
no font or image fetched from anywhere), so it opens offline and prints to PDF from any
browser. Sections, in reading order (docs/exports.md): headline (nights covered, averages,
notable changes), charts, per-night table, with/without comparison per tag, definitions and
rule profile, disclaimer. Summaries are recomputed from the stored rows (relabels count).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from html import escape
from pathlib import Path
from statistics import fmean
from typing import Any, Final

import jinja2
from markupsafe import Markup

from service import __version__
from service.history.compare import compare_tags
from service.history.load import checkins_by_date, in_progress, list_nights, load_night, tags_by_date
from service.history.summary import summarize_night
from service.history.trends import METRIC_PHRASES, change_rule, usable_nights
from service.timefmt import iso_utc, utc_now

DISCLAIMER: Final = (
    "Bedside counts and reports movements from a bed sensor; it does not diagnose. "
    "Figures are not polysomnography."
)

PROFILE_DESCRIPTIONS: Final = {
    "aasm": "AASM: a PLM series is 4 or more limb movements 0.5-10 s long, onset to onset 5 to 90 s apart.",
    "wasm2016": "WASM 2016: as AASM, but onset to onset 10 to 90 s apart (shorter intervals break a series).",
}

TAG_CODES: Final = {
    "stretching": "S",
    "heat": "H",
    "medication": "M",
    "caffeine": "C",
    "alcohol": "A",
    "late_exercise": "E",
    "custom": "*",
}
"""One-letter marks of tags under the charts (legend printed below each chart)."""

TREND_NIGHTS: Final = 35
"""Nights read for the trend rule (7 recent + 28 baseline) and the with/without comparison."""

COMPARE_METRIC_NAMES: Final = {
    "spasms_per_night": "spasms per night",
    "movement_index_per_h": "movement index (/h of sleep)",
    "awakenings": "awakenings per night",
}

_TEMPLATES = Path(__file__).with_name("templates")

ProgressFn = Callable[[int, int], None]


def render_report(
    conn: sqlite3.Connection,
    *,
    last: int = 14,
    tz: tzinfo | None = None,
    now: datetime | None = None,
    progress: ProgressFn | None = None,
) -> str:
    """The report over the ``last`` nights (kind ``night``) as one HTML document.

    ``tz`` is the local time zone for the clock times shown (default: the system's).
    ValueError when ``last`` is below 1. A database without nights gives a page saying so.
    """
    ctx = report_context(conn, last=last, tz=tz, now=now, progress=progress)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["hm"] = _hours_minutes
    env.filters["num"] = _num
    return env.get_template("report.html").render(**ctx)


def report_context(
    conn: sqlite3.Connection,
    *,
    last: int = 14,
    tz: tzinfo | None = None,
    now: datetime | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Everything the template shows, as plain data (tests read it too)."""
    if last < 1:
        raise ValueError(f"last must be at least 1 night, got {last}")
    now = now or utc_now()
    rows = list_nights(conn, kind="night", limit=max(last, TREND_NIGHTS))
    for i, row in enumerate(rows):
        data = load_night(conn, row["id"])
        if data is not None:
            row["summary"] = summarize_night(data, tz=tz)
        if progress is not None:
            progress(i + 1, len(rows))
    window = list(reversed(rows[:last]))  # oldest first
    tags = tags_by_date(conn)
    checkins = checkins_by_date(conn)
    trend = change_rule(rows)
    comparisons = [c for c in compare_tags(rows, tags) if c.n_with > 0]
    nights = [_night_view(n, tags.get(str(n.get("night_date")), []), checkins, tz) for n in window]
    profiles = sorted({str(n.get("profile")) for n in window if n.get("profile")})
    return {
        "title": "Bedside movement report",
        "version": __version__,
        "generated_local": now.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"),
        "generated_utc": iso_utc(now),
        "disclaimer": DISCLAIMER,
        "requested": last,
        "nights": nights,
        "first_date": nights[0]["date"] if nights else None,
        "last_date": nights[-1]["date"] if nights else None,
        "averages": _averages([n["summary"] for n in nights if not n["in_progress"]]),
        "finished": sum(1 for n in nights if not n["in_progress"]),
        "in_progress": [n["date"] for n in nights if n["in_progress"]],
        "trend": trend.as_dict(),
        "trend_phrases": METRIC_PHRASES,
        "notable": _notable(comparisons),
        "comparisons": [_comparison_view(c.as_dict()) for c in comparisons],
        "compare_nights": len(usable_nights(rows)),
        "profiles": [(p, PROFILE_DESCRIPTIONS.get(p, "unknown profile")) for p in profiles],
        "all_profiles": PROFILE_DESCRIPTIONS,
        "tag_codes": TAG_CODES,
        "charts": _charts(nights),
    }


# --- per-night rows ----------------------------------------------------------------------------


def _night_view(
    night: dict[str, Any], tags: list[dict[str, Any]], checkins: dict[str, dict[str, Any]], tz: tzinfo | None
) -> dict[str, Any]:
    s = night.get("summary") or {}
    date = str(night.get("night_date") or "")
    started = datetime.fromisoformat(str(night["started_at"]).replace("Z", "+00:00")).astimezone(tz)
    spasms = s.get("spasms") or {}
    return {
        "id": night["id"],
        "date": date,
        "in_progress": in_progress(night),
        "weekday": started.strftime("%a") if not date else datetime.fromisoformat(date).strftime("%a"),
        "bedtime": started.strftime("%H:%M"),
        "summary": s,
        "spasm_count": spasms.get("count", 0),
        "spasm_mean": spasms.get("mean_intensity"),
        "spasm_max": spasms.get("max_intensity"),
        "tags": [_tag_text(t) for t in tags],
        "tag_codes": "".join(TAG_CODES.get(str(t["tag"]), "?") for t in tags),
        "checkin": checkins.get(date),
    }


def _tag_text(t: dict[str, Any]) -> str:
    text = str(t["tag"]).replace("_", " ")
    if t.get("detail"):
        text += f" ({t['detail']})"
    if t.get("at_local"):
        text += f" {t['at_local']}"
    return text


def _averages(summaries: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    def mean(get: Callable[[dict[str, Any]], Any]) -> float | None:
        xs = [float(v) for v in (get(s) for s in summaries) if v is not None]
        return fmean(xs) if xs else None

    return {
        "time_in_bed_min": mean(lambda s: s.get("time_in_bed_min")),
        "total_sleep_min": mean(lambda s: s.get("total_sleep_min")),
        "efficiency_pct": mean(lambda s: s.get("efficiency_pct")),
        "sleep_onset_latency_min": mean(lambda s: s.get("sleep_onset_latency_min")),
        "waso_min": mean(lambda s: s.get("waso_min")),
        "awakenings": mean(lambda s: s.get("awakenings")),
        "awakenings_after_movement": mean(lambda s: s.get("awakenings_after_movement")),
        "movement_index_per_h": mean(lambda s: s.get("movement_index_per_h")),
        "plm_series": mean(lambda s: s.get("plm_series")),
        "spasms": mean(lambda s: (s.get("spasms") or {}).get("count")),
        "mean_heart_bpm": mean(lambda s: s.get("mean_heart_bpm")),
        "mean_breath_bpm": mean(lambda s: s.get("mean_breath_bpm")),
    }


# --- with / without ----------------------------------------------------------------------------


def _comparison_view(c: dict[str, Any]) -> dict[str, Any]:
    label = c["tag"].replace("_", " ") + (f" ({c['detail']})" if c.get("detail") else "")
    return {**c, "label": label, "metrics": [{**m, "title": _metric_title(m["name"])} for m in c["metrics"]]}


def _metric_title(name: str) -> str:
    return COMPARE_METRIC_NAMES.get(name, name.replace("_", " "))


def _notable(comparisons: Sequence[Any]) -> list[str]:
    """Sentences for the headline: tag differences whose 95 % interval excludes no difference."""
    out = []
    for c in comparisons:
        label = c.tag.replace("_", " ") + (f" ({c.detail})" if c.detail else "")
        for m in c.metrics:
            if m.difference is None or m.ci_low is None or m.ci_high is None:
                continue
            if m.ci_low > 0 or m.ci_high < 0:
                direction = "more" if m.difference > 0 else "fewer"
                if m.name == "movement_index_per_h":
                    direction = "higher" if m.difference > 0 else "lower"
                out.append(
                    f"Nights with {label}: {_metric_title(m.name)} {abs(m.difference):.1f} {direction} "
                    f"({m.mean_with:.1f} vs {m.mean_without:.1f}; 95 % interval of the difference "
                    f"{m.ci_low:.1f} to {m.ci_high:.1f}; {m.n_with} vs {m.n_without} nights)."
                )
    return out


# --- charts ------------------------------------------------------------------------------------

_W, _H = 720, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 44, 22, 48


def _charts(nights: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if not nights:
        return []
    labels = [n["date"][5:] for n in nights]
    codes = [n["tag_codes"] for n in nights]

    def per_night(get: Callable[[dict[str, Any]], float | None]) -> list[float | None]:
        """One value a night; None (a dash, no bar) for a night still in progress."""
        return [None if n["in_progress"] else get(n) for n in nights]

    index = per_night(lambda n: n["summary"].get("movement_index_per_h"))
    spasms = per_night(lambda n: float(n["spasm_count"] or 0))
    spasm_i = per_night(lambda n: n["spasm_mean"])
    awake = per_night(lambda n: float(n["summary"].get("awakenings") or 0))
    after = per_night(lambda n: float(n["summary"].get("awakenings_after_movement") or 0))
    other = [None if a is None or b is None else a - b for a, b in zip(awake, after, strict=True)]
    return [
        {
            "title": "Movement index per night (movements per hour of sleep)",
            "svg": bar_chart(labels, [index], codes=codes, colors=["#3b6ea5"], unit="/h"),
            "legend": [("#3b6ea5", "movement index")],
        },
        {
            "title": "Spasms per night, with their mean intensity",
            "svg": bar_chart(
                labels, [spasms], codes=codes, colors=["#b5562d"], unit="", dots=spasm_i, dots_unit="x"
            ),
            "legend": [("#b5562d", "spasms (left scale)"), ("#222222", "mean intensity, x baseline (right)")],
        },
        {
            "title": "Awakenings per night",
            "svg": bar_chart(
                labels,
                [after, other],
                codes=codes,
                colors=["#6b4fa0", "#b9a8d8"],
                unit="",
            ),
            "legend": [("#6b4fa0", "after a movement"), ("#b9a8d8", "other")],
        },
    ]


def bar_chart(
    labels: Sequence[str],
    stacks: Sequence[Sequence[float | None]],
    *,
    codes: Sequence[str],
    colors: Sequence[str],
    unit: str,
    dots: Sequence[float | None] | None = None,
    dots_unit: str = "",
) -> Markup:
    """An inline SVG bar chart: one (stacked) bar per night, tag codes under the dates, and
    optional dots on a right-hand scale. None draws no bar (not measured) and a dash label."""
    n = len(labels)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    totals = [sum(float(s[i] or 0) for s in stacks) for i in range(n)]
    top = _nice_max(max(totals, default=0.0))
    slot = plot_w / max(n, 1)
    bar_w = max(2.0, slot * 0.7)
    base_y = _TOP + plot_h
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="100%" role="img" '
        f'preserveAspectRatio="xMidYMid meet">'
    ]
    for k in range(5):
        v = top * k / 4
        y = base_y - plot_h * k / 4
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" class="ax" text-anchor="end">{_tick(v)}{unit}</text>'
        )
    every = max(1, round(n / 16))
    for i in range(n):
        x = _LEFT + slot * i + (slot - bar_w) / 2
        y = base_y
        if all(s[i] is None for s in stacks):
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base_y - 3}" class="ax" text-anchor="middle">-</text>'
            )
        for series, color in zip(stacks, colors, strict=True):
            v = float(series[i] or 0)
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(labels[i])}: {_tick(v)}</title></rect>"
            )
        cx = x + bar_w / 2
        if i % every == 0 or i == n - 1:
            parts.append(_text(cx, base_y + 14, "ax", labels[i], "middle"))
        if codes[i]:
            parts.append(_text(cx, base_y + 30, "tag", codes[i], "middle"))
    if dots is not None:
        dmax = _nice_max(max((float(d) for d in dots if d is not None), default=0.0))
        for k in range(5):
            y = base_y - plot_h * k / 4
            parts.append(_text(_W - _RIGHT + 4, y + 4, "ax", f"{_tick(dmax * k / 4)}{dots_unit}", "start"))
        for i, d in enumerate(dots):
            if d is None:
                continue
            cx = _LEFT + slot * i + slot / 2
            cy = base_y - plot_h * float(d) / dmax
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" class="dot">'
                f"<title>{escape(labels[i])}: {float(d):.1f}{dots_unit}</title></circle>"
            )
    parts.append(f'<line x1="{_LEFT}" y1="{base_y}" x2="{_W - _RIGHT}" y2="{base_y}" class="axis"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _text(x: float, y: float, cls: str, content: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}">{escape(content)}</text>'


def _nice_max(value: float) -> float:
    """A chart top of 4 grid steps, each 1, 2, 2.5 or 5 x 10^k, at or above ``value`` (4 for nothing)."""
    if value <= 0:
        return 4.0
    step = value / 4
    k = 1.0
    while k * 10 < step:
        k *= 10
    while k > step:
        k /= 10
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * k >= step - 1e-12:
            return 4 * m * k
    return 40.0 * k


def _tick(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


# --- filters -----------------------------------------------------------------------------------


def _hours_minutes(minutes: Any) -> str:
    """``452.5`` minutes -> ``7:33``; None -> an en dash."""
    if minutes is None:
        return "–"
    total = round(float(minutes))
    return f"{total // 60}:{total % 60:02d}"


def _num(value: Any, digits: int = 1) -> str:
    """A figure with ``digits`` decimals; None -> an en dash."""
    if value is None:
        return "–"
    return f"{float(value):.{digits}f}"
