"""The database schema as a numbered list of migrations; ``PRAGMA user_version`` records the last applied.

Times are ISO 8601 UTC text with milliseconds and a ``Z`` (``2026-11-22T01:30:00.123Z``),
so they sort as text. The daemon is the only writer of detector data (nights, events,
epochs, vitals, live_state, outbox); the web process writes only the user's own tables.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: nights, events, epochs, vitals, outbox, live state
    """
    CREATE TABLE nights (
        id          TEXT PRIMARY KEY,
        unit_id     TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        profile     TEXT NOT NULL,
        source      TEXT NOT NULL,
        summary     TEXT
    );
    CREATE INDEX nights_started ON nights(started_at);

    CREATE TABLE events (
        rowid       INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        night_id    TEXT NOT NULL REFERENCES nights(id),
        event_type  TEXT NOT NULL,
        start_at    TEXT NOT NULL,
        end_at      TEXT NOT NULL,
        duration_s  REAL NOT NULL,
        intensity   REAL NOT NULL,
        profile     TEXT NOT NULL,
        confidence  REAL,
        cause_id    TEXT,
        details     TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_night ON events(night_id, start_at);

    CREATE TABLE epochs (
        night_id    TEXT NOT NULL REFERENCES nights(id),
        start_at    TEXT NOT NULL,
        duration_s  REAL NOT NULL,
        count       REAL NOT NULL,
        asleep      INTEGER NOT NULL,
        in_bed      INTEGER NOT NULL,
        PRIMARY KEY (night_id, start_at)
    );

    CREATE TABLE vitals (
        night_id    TEXT NOT NULL REFERENCES nights(id),
        t_at        TEXT NOT NULL,
        heart_bpm   REAL,
        breath_bpm  REAL,
        PRIMARY KEY (night_id, t_at)
    );

    CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        topic       TEXT NOT NULL,
        payload     TEXT NOT NULL,
        qos         INTEGER NOT NULL,
        retain      INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );

    CREATE TABLE live_state (
        unit_id     TEXT PRIMARY KEY,
        updated_at  TEXT NOT NULL,
        state       TEXT NOT NULL
    );
    """,
    # 2: annotations (bedside button, MQTT marks, relabels) and sensor calibrations
    """
    CREATE TABLE annotations (
        rowid       INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        night_id    TEXT REFERENCES nights(id),
        at          TEXT NOT NULL,
        kind        TEXT NOT NULL,
        source      TEXT NOT NULL,
        note        TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX annotations_night ON annotations(night_id, at);

    CREATE TABLE calibrations (
        rowid       INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at  TEXT NOT NULL,
        sensor      TEXT NOT NULL,
        rate_hz     REAL NOT NULL,
        usable      INTEGER NOT NULL,
        values_json TEXT NOT NULL,
        verdict     TEXT NOT NULL
    );
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
