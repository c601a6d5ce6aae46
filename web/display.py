"""Display helpers for the pages (Jinja filters): local times, durations, labels, live-state rows.

The browser script (static/tonight.js) formats the same way when it refreshes the page; the
labels reach it as JSON from here, so they are written once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Flask

from web.queries import parse_utc

logger = logging.getLogger(__name__)

EVENT_LABELS: dict[str, str] = {
    "jerk": "Jerk",
    "limb_movement": "Limb movement",
    "spasm": "Spasm",
    "large_movement": "Large movement",
    "plm_series": "PLM series",
    "restless": "Restless period",
    "awakening": "Awakening",
    "fell_asleep": "Fell asleep",
    "bed_entry": "Got into bed",
    "bed_exit": "Got out of bed",
    "sensor_fault": "Sensor fault",
}

STATE_LABELS: dict[str, str] = {
    "in_bed": "In bed",
    "asleep": "Asleep",
    "moving": "Moving",
    "heart_bpm": "Heart rate",
    "breath_bpm": "Breathing rate",
    "movements_per_hour": "Movements per hour of sleep",
    "tracking": "Recording",
    "profile": "Rule profile",
    "sensor_ok": "Sensor",
    "mqtt_connected": "MQTT",
    "outbox_len": "Unsent messages",
    "suppressed_events": "Events held back",
    "storage_ok": "Database",
    "storage_problem": "Database problem",
    "updated_at": "Last update",
}
"""Live-state keys shown on Tonight, in this order; other scalar keys follow with their name
made readable (``some_key`` as "Some key"). static/tonight.js gets these pairs from the page.

``counts`` and ``night_id`` are left out: the page shows the night's counts from the events.
``suppressed_events`` (events the rate limiter held back) and ``storage_problem`` (why the database
refuses writes) are shown only when set.
"""

TAG_LABELS: dict[str, str] = {
    "stretching": "Stretching",
    "heat": "Heat",
    "medication": "Medication",
    "caffeine": "Caffeine",
    "alcohol": "Alcohol",
    "late_exercise": "Late exercise",
    "custom": "Custom",
}
"""Human names of the tags (``service.history.user_data.TAGS``); a tag with a detail is shown as
"Medication: baclofen"."""

ASLEEP_UNKNOWN = "not known yet (needs about 5 min in bed)"
"""Tonight's "Asleep" before the sleep rule's first call: it looks 3 min ahead and needs 1 min of
calls (service/detect/sleep.py), so it has no answer for the first minutes of a night."""

HIDDEN_STATE_KEYS = frozenset({"counts", "night_id"})
"""Live-state keys never shown as a row (static/tonight.js has the same list)."""

SHOWN_WHEN_NONZERO = frozenset({"suppressed_events", "storage_problem"})
"""Live-state keys shown only when their value is not 0 (static/tonight.js has the same list)."""


def event_label(event_type: str) -> str:
    """Human name of an event type; unknown types are shown as they are stored."""
    return EVENT_LABELS.get(event_type, event_type)


def tag_label(tag: Any, detail: Any = None) -> str:
    """``Medication: baclofen`` for ``medication`` with detail ``baclofen``, or for the joined key
    ``medication:baclofen``; unknown tags in words."""
    text = str(tag)
    if detail is None and ":" in text:
        text, detail = text.split(":", 1)
    name = TAG_LABELS.get(text, text.replace("_", " ").capitalize())
    return f"{name}: {detail}" if detail else name


def local_time(utc_text: str | None) -> str:
    """``HH:MM:SS`` in this machine's time zone, from store-format UTC text ("" if unreadable)."""
    moment = parse_utc(utc_text) if utc_text else None
    return "" if moment is None else moment.astimezone().strftime("%H:%M:%S")


def local_datetime(utc_text: str | None) -> str:
    """``Sat 22 Nov 01:30`` in this machine's time zone ("" if unreadable)."""
    moment = parse_utc(utc_text) if utc_text else None
    return "" if moment is None else moment.astimezone().strftime("%a %d %b %H:%M")


def duration(seconds: float | None) -> str:
    """``0.4 s`` under 10 s, ``42 s`` under a minute, then ``3 min 05 s`` and ``1 h 02 min``."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


INTENSITY_UNIT = "× resting"
"""Intensity is the movement's peak energy over the sleeper's resting level (the detector's
adaptive baseline): 8.3 means 8.3 times the resting level."""


def intensity(value: float | None) -> str:
    """``8.3 × resting`` (one decimal); a dash where intensity does not apply (0 or missing)."""
    return "–" if not value else f"{value:.1f} {INTENSITY_UNIT}"


def state_label(key: str) -> str:
    """Human name of a live-state key: from STATE_LABELS, else ``some_key`` as "Some key"."""
    return STATE_LABELS.get(key) or key.replace("_", " ").capitalize()


def state_value(key: str, value: Any) -> str:
    """A live-state value as Tonight shows it (static/tonight.js ``stateValue`` matches this)."""
    if key == "movements_per_hour":
        return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.1f}"
    if value is None:
        return ASLEEP_UNKNOWN if key == "asleep" else "unknown"
    if key in ("sensor_ok", "storage_ok") and isinstance(value, bool):
        return "OK" if value else "FAULT"
    if key == "mqtt_connected" and isinstance(value, bool):
        return "connected" if value else "offline"
    if key == "tracking" and isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in ("heart_bpm", "breath_bpm") and isinstance(value, int | float):
        return f"{value:.0f} /min"
    if key == "profile" and isinstance(value, str):
        return value.upper()
    if key == "updated_at" and isinstance(value, str):
        return local_time(value) or value
    return str(value)


def state_rows(state: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(key, label, text) for each live-state key present, known keys first.

    Nested values other than the hidden ones are skipped: the page shows scalars only.
    """
    if not state:
        return []
    keys = [key for key in STATE_LABELS if key in state]
    keys += [key for key in state if key not in STATE_LABELS and key not in HIDDEN_STATE_KEYS]
    rows = []
    for key in keys:
        value = state[key]
        if isinstance(value, dict | list) or (key in SHOWN_WHEN_NONZERO and not value):
            continue
        rows.append((key, state_label(key), state_value(key, value)))
    return rows


def age(seconds: float | None) -> str:
    """``updated 3 s ago`` style text for the live state's age."""
    if seconds is None:
        return "never updated"
    if seconds < 0:
        return "updated just now"
    return f"updated {duration(seconds)} ago"


def now_local() -> str:
    """This machine's local time with its zone name, for the page footer."""
    return datetime.now().astimezone().strftime("%H:%M %Z")


def number(value: Any, suffix: str = "") -> str:
    """A figure for a table: whole numbers as they are, others to 0.1; ``–`` when not known."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "\u2013"
    text = str(value) if isinstance(value, int) or float(value).is_integer() else f"{value:.1f}"
    return text + suffix


def minutes(value: Any) -> str:
    """``7 h 05 min`` or ``42 min`` from minutes; ``–`` when not known."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "\u2013"
    whole = round(value)
    if whole < 60:
        return f"{whole} min"
    return f"{whole // 60} h {whole % 60:02d} min"


METRIC_LABELS = {
    "spasms_per_night": "Spasms per night",
    "movement_index_per_h": "Movements per hour of sleep",
    "awakenings": "Awakenings per night",
    "awakenings_per_night": "Awakenings per night",
    "mean_spasm_intensity": "Mean spasm intensity",
    "efficiency_pct": "Sleep efficiency (%)",
    "total_sleep_min": "Sleep (min)",
    "waso_min": "Awake after sleep onset (min)",
}
"""Plain names of the figures the trends and comparisons use."""


def metric_label(name: Any) -> str:
    """``Spasms per night`` for ``spasms_per_night``; an unknown name in words."""
    text = str(name)
    return METRIC_LABELS.get(text, text.replace("_", " ").capitalize())


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.jinja_env.filters.update(
        number=number,
        minutes=minutes,
        event_label=event_label,
        local_time=local_time,
        local_datetime=local_datetime,
        duration=duration,
        intensity=intensity,
        age=age,
        metric_label=metric_label,
        tag_label=tag_label,
    )
