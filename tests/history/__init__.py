"""Tests of the night history; ``HistoryDb`` builds a real, migrated SQLite file with hand-made rows."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from service.store.store import migrate
from service.timefmt import iso_utc, parse_iso_utc


def at(text: str, plus_s: float = 0.0) -> str:
    """``text`` (ISO UTC) shifted by ``plus_s`` seconds, in the stored format."""
    return iso_utc(parse_iso_utc(text) + timedelta(seconds=plus_s))


class HistoryDb:
    """A migrated database file written with plain sqlite3, the way the daemon's store lays rows out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path)
        migrate(self.conn, path)

    def close(self) -> None:
        """Close the writer connection."""
        self.conn.close()

    def night(
        self,
        night_id: str,
        started_at: str,
        ended_at: str | None = None,
        *,
        night_date: str | None = None,
        kind: str = "night",
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Insert a nights row (``night_date`` defaults to the start's UTC date)."""
        self.conn.execute(
            "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source, summary, kind, "
            "night_date) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                night_id,
                "unit",
                started_at,
                ended_at,
                "aasm",
                "test",
                None if summary is None else json.dumps(summary),
                kind,
                night_date or started_at[:10],
            ),
        )
        self.conn.commit()

    def event(
        self,
        event_id: str,
        night_id: str,
        event_type: str,
        start_at: str,
        duration_s: float,
        intensity: float = 5.0,
        *,
        cause_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Insert one event; its end is ``start_at + duration_s``."""
        self.conn.execute(
            "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, profile, "
            "cause_id, details) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                event_id,
                night_id,
                event_type,
                start_at,
                at(start_at, duration_s),
                duration_s,
                intensity,
                "aasm",
                cause_id,
                json.dumps(details or {}),
            ),
        )
        self.conn.commit()

    def epochs(
        self, night_id: str, first_at: str, calls: list[tuple[bool, bool]], epoch_s: float = 30.0
    ) -> None:
        """Consecutive epochs from ``first_at``; ``calls`` are ``(asleep, in_bed)`` per epoch."""
        t0: datetime = parse_iso_utc(first_at)
        self.conn.executemany(
            "INSERT INTO epochs VALUES (?,?,?,?,?,?)",
            [
                (night_id, iso_utc(t0 + timedelta(seconds=i * epoch_s)), epoch_s, 1.0, int(a), int(b))
                for i, (a, b) in enumerate(calls)
            ],
        )
        self.conn.commit()

    def vitals(self, night_id: str, rows: list[tuple[str, float | None, float | None]]) -> None:
        """Insert ``(t_at, heart_bpm, breath_bpm)`` rows."""
        self.conn.executemany(
            "INSERT INTO vitals VALUES (?,?,?,?)", [(night_id, t, h, b) for t, h, b in rows]
        )
        self.conn.commit()
