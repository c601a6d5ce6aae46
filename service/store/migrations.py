"""The database schema as a numbered list of migrations; ``PRAGMA user_version`` records the last applied.

Times are ISO 8601 UTC text with milliseconds and a ``Z`` (``2026-11-22T01:30:00.123Z``),
so they sort as text. The daemon is the only writer of detector data (nights, events,
epochs, vitals, live_state, outbox); the web process writes only the user's own tables.

Version 3 in words:

- ``nights.kind`` is ``night`` or ``nap``; ``night_date`` is the local calendar date of the
  evening the night began (``2026-11-21`` for a night from 22:30 on the 21st to 07:00 on the
  22nd); user tags and check-ins join nights on it, so a tag can be written before the night
  exists. ``start_reason`` is ``bed_entry``, ``command``, ``button`` or ``daemon``;
  ``end_reason`` is ``bed_exit``, ``command``, ``morning_limit`` or ``daemon_stop``.
- ``tags``: one row per intervention and night (``stretching``, ``heat``, ``medication``,
  ``caffeine``, ``alcohol``, ``late_exercise`` or ``custom``), with ``detail`` (the medication's
  or custom tag's name) and an optional local time ``at_local`` (``HH:MM``).
- ``checkins``: the morning check-in for a night (1..5 scales and a note).
- ``relabels``: the user's label for an event (an event type, or ``not_an_event``), kept as
  ground truth; the detector's own label in ``events`` is never changed.
- ``snippets`` (kept for the whole history) and ``raw_chunks`` (whole nights, pruned after
  ``storage.raw_retention_days``) hold raw signal in the codec of ``service.store.signal_codec``.
- ``notices``: messages for the user such as the trend-rise notice, until dismissed.
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
    # 3: night sessions, user tags and check-ins, relabels, raw signal, notices
    """
    ALTER TABLE nights ADD COLUMN kind TEXT NOT NULL DEFAULT 'night';
    ALTER TABLE nights ADD COLUMN night_date TEXT;
    ALTER TABLE nights ADD COLUMN start_reason TEXT NOT NULL DEFAULT 'daemon';
    ALTER TABLE nights ADD COLUMN end_reason TEXT;
    ALTER TABLE nights ADD COLUMN rate_hz REAL;
    UPDATE nights SET night_date = substr(started_at, 1, 10) WHERE night_date IS NULL;
    CREATE INDEX nights_date ON nights(night_date);

    CREATE TABLE tags (
        rowid       INTEGER PRIMARY KEY AUTOINCREMENT,
        night_date  TEXT NOT NULL,
        tag         TEXT NOT NULL,
        detail      TEXT NOT NULL DEFAULT '',
        at_local    TEXT,
        created_at  TEXT NOT NULL,
        source      TEXT NOT NULL,
        UNIQUE (night_date, tag, detail)
    );
    CREATE INDEX tags_tag ON tags(tag, night_date);

    CREATE TABLE checkins (
        night_date      TEXT PRIMARY KEY,
        sleep_quality   INTEGER CHECK (sleep_quality BETWEEN 1 AND 5),
        spasm_severity  INTEGER CHECK (spasm_severity BETWEEN 1 AND 5),
        note            TEXT NOT NULL DEFAULT '',
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );

    CREATE TABLE relabels (
        event_id    TEXT PRIMARY KEY REFERENCES events(id),
        label       TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        source      TEXT NOT NULL
    );

    CREATE TABLE snippets (
        event_id    TEXT PRIMARY KEY REFERENCES events(id),
        night_id    TEXT NOT NULL REFERENCES nights(id),
        start_at    TEXT NOT NULL,
        rate_hz     REAL NOT NULL,
        n           INTEGER NOT NULL,
        encoding    TEXT NOT NULL,
        data        BLOB NOT NULL
    );
    CREATE INDEX snippets_night ON snippets(night_id);

    CREATE TABLE raw_chunks (
        night_id    TEXT NOT NULL REFERENCES nights(id),
        start_index INTEGER NOT NULL,
        start_at    TEXT NOT NULL,
        rate_hz     REAL NOT NULL,
        n           INTEGER NOT NULL,
        encoding    TEXT NOT NULL,
        data        BLOB NOT NULL,
        PRIMARY KEY (night_id, start_index)
    );

    CREATE TABLE notices (
        id          TEXT PRIMARY KEY,
        created_at  TEXT NOT NULL,
        kind        TEXT NOT NULL,
        message     TEXT NOT NULL,
        details     TEXT NOT NULL DEFAULT '{}',
        dismissed_at TEXT
    );
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
