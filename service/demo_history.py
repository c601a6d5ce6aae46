"""A real database of simulated nights: for the demo, the dashboard's tests and the benches.

Each night is a ``SimulatedNight`` run through the real detector in one pass; its outputs are
stored as the daemon stores them (the same event rows, epochs, vitals, snippets and raw
chunks), with tags and check-ins a user might have entered and each night's summary. On
nights tagged ``stretching`` the simulated sleeper has no PLM series and fewer awakenings, so
the with/without comparison has something real to find.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np

from hardware.simulated import SimulatedNight
from service.detect import analyze_array
from service.detect.params import DetectorParams
from service.detect.types import Epoch, Event, Vitals
from service.payloads import event_row
from service.rawsignal import CHUNK_S, snippet_span
from service.sessions import SessionRules
from service.store.signal_codec import encode
from service.store.store import make_private, migrate
from service.timefmt import iso_utc

BEDTIME_LOCAL = time(22, 0)
"""The earliest simulated bedtime; each night draws up to BEDTIME_SPREAD_MIN more."""

BEDTIME_SPREAD_MIN = 75.0


def _local_tz(tz: tzinfo | None) -> tzinfo:
    if tz is not None:
        return tz
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def build_history(
    db_path: str | Path,
    *,
    nights: int = 30,
    first_date: date | None = None,
    seed: int = 0,
    rate_hz: float = 50.0,
    raw_days: int = 7,
    tags: bool = True,
    unit_id: str = "bedside",
    duration_h: float = 8.0,
    tz: tzinfo | None = None,
    snippet_pad_s: float = 5.0,
    snippet_max_s: float = 60.0,
    now: datetime | None = None,
    rules: SessionRules | None = None,
) -> list[str]:
    """Fill ``db_path`` (created or extended) with ``nights`` simulated nights; their ids, oldest first.

    ``first_date`` is the evening of the first night; by default (:func:`last_demo_date`) the
    nights are placed so that the last one has ended before ``now`` (default: the wall clock) and
    is not on the date a session started now would get under ``rules`` (the ``[sessions]``
    settings; default rules in ``tz``), so the live night never shares a date with a simulated
    one. Whole-night raw signal is kept for the last ``raw_days`` nights, snippets for every event.
    """
    tz = _local_tz(tz)
    if first_date is None:
        last = last_demo_date(now or datetime.now(tz), duration_h, rules or SessionRules(tz=tz), tz)
        first_date = last - timedelta(days=nights - 1)
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_private(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        migrate(conn, path)
        rng = np.random.default_rng([seed, 7])
        params = DetectorParams(adc_full_scale_counts=4095.0)
        ids = []
        for i in range(nights):
            night_date = first_date + timedelta(days=i)
            night_tags = _draw_tags(rng) if tags else []
            stretched = any(t[0] == "stretching" for t in night_tags)
            sim = SimulatedNight(
                seed=seed * 1000 + i,
                rate_hz=rate_hz,
                duration_s=duration_h * 3600.0,
                plm_series=not stretched and bool(rng.random() < 0.8),
                awakenings=int(rng.integers(0, 2) if stretched else rng.integers(2, 5)),
            )
            start_local = datetime.combine(night_date, BEDTIME_LOCAL, tz) + timedelta(
                minutes=float(rng.uniform(0, BEDTIME_SPREAD_MIN))
            )
            samples = sim.render_all()
            outputs = analyze_array(samples, rate_hz, params)
            night_id = _store_night(
                conn,
                unit_id=unit_id,
                night_date=night_date,
                stream_start=start_local,
                rate_hz=rate_hz,
                samples=samples,
                outputs=outputs,
                keep_raw=i >= nights - raw_days,
                snippet_pad_s=snippet_pad_s,
                snippet_max_s=snippet_max_s,
            )
            for tag, detail, at in night_tags:
                conn.execute(
                    "INSERT OR IGNORE INTO tags (night_date, tag, detail, at_local, created_at, source) "
                    "VALUES (?,?,?,?,?,?)",
                    (night_date.isoformat(), tag, detail, at, iso_utc(start_local), "demo"),
                )
            if tags and rng.random() < 0.8:
                awakenings = sum(1 for o in outputs if isinstance(o, Event) and o.type == "awakening")
                quality = int(np.clip(5 - awakenings // 2 + rng.integers(-1, 2), 1, 5))
                conn.execute(
                    "INSERT OR REPLACE INTO checkins VALUES (?,?,?,?,?,?)",
                    (
                        night_date.isoformat(),
                        quality,
                        int(rng.integers(1, 5)),
                        "",
                        iso_utc(start_local + timedelta(hours=9)),
                        iso_utc(start_local + timedelta(hours=9)),
                    ),
                )
            conn.commit()
            _write_summary(conn, night_id, tz)
            ids.append(night_id)
        return ids
    finally:
        conn.close()


def last_demo_date(now: datetime, duration_h: float, rules: SessionRules, tz: tzinfo) -> date:
    """The evening of the newest simulated night that can be placed before ``now``.

    It is before the date a session starting at ``now`` would get (``rules.night_date``: at
    03:05 that is yesterday's evening, at 15:00 today's), and the night, begun at the latest
    bedtime and lasting ``duration_h``, has ended by ``now``. So ``make demo`` at 03:05 writes
    nights up to the evening before yesterday (ended yesterday morning) and leaves yesterday's
    date to the live night; at 15:00 the last one is last night, ended this morning.
    """
    latest_start = timedelta(hours=BEDTIME_LOCAL.hour, minutes=BEDTIME_LOCAL.minute + BEDTIME_SPREAD_MIN)
    day = rules.night_date(now) - timedelta(days=1)
    while (datetime.combine(day, time(0, 0), tz) + latest_start + timedelta(hours=duration_h)).astimezone(
        UTC
    ) > now.astimezone(UTC):
        day -= timedelta(days=1)
    return day


def _draw_tags(rng: np.random.Generator) -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    if rng.random() < 0.5:
        out.append(("stretching", "", "21:30"))
    if rng.random() < 0.3:
        out.append(("heat", "", "21:45"))
    if rng.random() < 0.6:
        out.append(("medication", "baclofen", "21:00"))
    if rng.random() < 0.2:
        out.append(("caffeine", "", "16:00"))
    if rng.random() < 0.1:
        out.append(("alcohol", "", None))
    if rng.random() < 0.15:
        out.append(("late_exercise", "", "20:00"))
    return out


def _store_night(
    conn: sqlite3.Connection,
    *,
    unit_id: str,
    night_date: date,
    stream_start: datetime,
    rate_hz: float,
    samples: np.ndarray,
    outputs: list[Any],
    keep_raw: bool,
    snippet_pad_s: float,
    snippet_max_s: float,
) -> str:
    events = [o for o in outputs if isinstance(o, Event)]
    entry = next((e for e in events if e.type == "bed_entry"), None)
    exits = [e for e in events if e.type == "bed_exit"]
    start_s = entry.start_s if entry else 0.0
    end_s = exits[-1].end_s if exits else samples.size / rate_hz
    started = stream_start + timedelta(seconds=start_s)
    night_id = f"{started.astimezone(UTC):%Y%m%dT%H%M%SZ}-{unit_id}-{uuid.uuid4().hex[:6]}"
    conn.execute(
        "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source, kind, night_date, "
        "start_reason, end_reason, rate_hz) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            night_id,
            unit_id,
            iso_utc(started),
            iso_utc(stream_start + timedelta(seconds=end_s)),
            "aasm",
            "simulated",
            "night",
            night_date.isoformat(),
            "bed_entry",
            "bed_exit",
            rate_hz,
        ),
    )
    ids: dict[int, str] = {}
    for e in events:
        if e.end_s < start_s or e.start_s > end_s:
            continue
        ids[e.seq] = event_id = uuid.uuid4().hex
        row = event_row(
            e,
            event_id=event_id,
            night_id=night_id,
            stream_start=stream_start,
            cause_id=ids.get(e.cause_seq) if e.cause_seq is not None else None,
        )
        conn.execute(
            "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, "
            "profile, confidence, cause_id, details) VALUES (:id, :night_id, :event_type, :start, :end, "
            ":duration_s, :intensity, :profile, :confidence, :cause_id, :details)",
            {**row, "details": json.dumps(row["details"])},
        )
        a_s, b_s = snippet_span(e.start_s, e.end_s, snippet_pad_s, snippet_max_s)
        a, b = round(a_s * rate_hz), min(samples.size, round(b_s * rate_hz))
        if b > a:
            encoding, blob = encode(samples[a:b])
            conn.execute(
                "INSERT INTO snippets VALUES (?,?,?,?,?,?,?)",
                (event_id, night_id, iso_utc(stream_start + timedelta(seconds=a / rate_hz)), rate_hz,
                 b - a, encoding, blob),
            )  # fmt: skip
    for o in outputs:
        if isinstance(o, Epoch) and start_s <= o.start_s < end_s:
            conn.execute(
                "INSERT OR REPLACE INTO epochs VALUES (?,?,?,?,?,?)",
                (night_id, iso_utc(stream_start + timedelta(seconds=o.start_s)), o.duration_s,
                 float(o.count), int(o.asleep), int(o.in_bed)),
            )  # fmt: skip
        elif isinstance(o, Vitals) and start_s <= o.t_s <= end_s:
            conn.execute(
                "INSERT OR REPLACE INTO vitals VALUES (?,?,?,?)",
                (night_id, iso_utc(stream_start + timedelta(seconds=o.t_s)), o.heart_bpm, o.breath_bpm),
            )
    if keep_raw:
        step = round(CHUNK_S * rate_hz)
        first, last = round(start_s * rate_hz), round(end_s * rate_hz)
        for a in range(first, last, step):
            b = min(a + step, last)
            encoding, blob = encode(samples[a:b])
            conn.execute(
                "INSERT INTO raw_chunks VALUES (?,?,?,?,?,?,?)",
                (night_id, a - first, iso_utc(stream_start + timedelta(seconds=a / rate_hz)), rate_hz,
                 b - a, encoding, blob),
            )  # fmt: skip
    return night_id


def _write_summary(conn: sqlite3.Connection, night_id: str, tz: tzinfo) -> None:
    """Each night's summary, as the daemon writes it when a night ends."""
    try:
        from service.history.load import load_night
        from service.history.summary import summarize_night
    except ImportError:  # the history package is older than this builder
        return
    conn.row_factory = sqlite3.Row
    try:
        data = load_night(conn, night_id)
        if data is not None:
            summary = summarize_night(data, tz=tz)
            conn.execute("UPDATE nights SET summary = ? WHERE id = ?", (json.dumps(summary), night_id))
            conn.commit()
    finally:
        conn.row_factory = None
