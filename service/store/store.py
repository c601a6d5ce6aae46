"""The daemon's database writer (aiosqlite): nights, events with their outbox rows, epochs, vitals.

It is the only writer of detector data. Every event is written in the same transaction as
its outbox row, so an event that is in the database is also queued for MQTT until the
broker acknowledges it. Runs on the daemon's asyncio loop; aiosqlite does the blocking
work on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from service.errors import StoreError
from service.store.files import check_not_a_link
from service.store.held import KEEP_ALWAYS, RAW_CHUNK, SNIPPET, HeldWrites
from service.store.migrations import MIGRATIONS, SCHEMA_VERSION

logger = logging.getLogger(__name__)

#: Epochs and vitals are batched in memory and written at most this often (or with the next event,
#: whichever comes first): fewer synced commits, less SD-card wear. A power cut loses at most
#: this many seconds of them; events and their outbox rows are still committed at once.
BATCH_S = 10.0

#: One statement of a transaction: SQL, its parameters, and whether they are many rows.
Step = tuple[str, Any, bool]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: str
    qos: int
    retain: bool


#: A person's nights are private: the database and its backups are never readable by other users,
#: whatever the umask (SQLite gives the -wal and -shm files the database file's mode).
DB_FILE_MODE = 0o640


def make_private(path: Path) -> None:
    """Create ``path`` (empty) with DB_FILE_MODE if it is missing; take away other users' access if
    it has it. Never through a link (root may run this in the service user's folder):
    UnsafeFileError if ``path`` is a symbolic link or not a regular file; OSError otherwise."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, DB_FILE_MODE))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            check_not_a_link(path, "database file")  # raises, saying what it is
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            check_not_a_link(path, "database file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o007:
            os.fchmod(fd, mode & ~0o007)
            logger.info("database %s was readable by other users: now %o", path, mode & ~0o007)
    finally:
        os.close(fd)


class DatabaseDamagedError(StoreError):
    """SQLite finds the database file damaged (``PRAGMA quick_check`` fails, or it is no database)."""


def check_integrity(path: str | Path, busy_timeout_s: float = 5.0) -> None:
    """Run ``PRAGMA quick_check`` on an existing database, read-only (nothing is written, not even a
    WAL checkpoint). DatabaseDamagedError saying which file, what SQLite said and what to do.

    It reads every page (about 1 s for 30 nights, see RELIABILITY.md), so it runs once per open by
    the daemon and the commands, not per query."""
    p = Path(path)
    uri = p.absolute().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s)
        try:
            said = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise StoreError(f"cannot check database {p}: {exc}") from exc
        said = [str(exc)]
    if said == ["ok"]:
        return
    raise DatabaseDamagedError(
        f"database {p} is damaged; SQLite's quick_check says: {' / '.join(said)[:500]}. "
        "Nothing was changed. Stop Bedside, then restore a backup of the file (or the "
        f"{p.name}.bak-v* copy kept beside it before a migration), or save what is still readable: "
        f"sqlite3 {p} .recover | sqlite3 {p.name}.recovered, check that, and move it into place"
    )


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """Bring a plain sqlite3 connection to SCHEMA_VERSION; returns the version it was at.

    Before changing a database that already has a schema, a copy is written next to it
    (``<name>.bak-v<old>``). Each migration runs in one transaction with its version bump,
    so a failure leaves the database at the last good version.
    """
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this Bedside ({SCHEMA_VERSION}): "
            "upgrade Bedside or restore a backup"
        )
    if current == SCHEMA_VERSION:
        return current
    if current > 0 and path is not None:
        backup = path.with_name(f"{path.name}.bak-v{current}")
        make_private(backup)
        with sqlite3.connect(backup) as dst:
            conn.backup(dst)
        dst.close()
        logger.info("backed up database to %s before migrating", backup)
    for version in range(current + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[version - 1]
        try:
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        except sqlite3.Error as exc:
            conn.rollback()
            raise StoreError(f"migration {version} failed: {exc}") from exc
        logger.info("database migrated to schema version %d", version)
    return current


_EVENT_INSERT = (
    "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, profile, "
    "confidence, cause_id, details) VALUES (:id, :night_id, :event_type, :start, :end, :duration_s, "
    ":intensity, :profile, :confidence, :cause_id, :details)"
)
#: Tables with times of a night's rows: (table, time columns, whether a time is part of a unique key).
_NIGHT_TIMES = (
    ("events", ("start_at", "end_at"), False),
    ("epochs", ("start_at",), True),
    ("vitals", ("t_at",), True),
    ("raw_chunks", ("start_at",), False),
    ("snippets", ("start_at",), False),
    ("annotations", ("at",), False),
)
_OUTBOX_INSERT = "INSERT INTO outbox (topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)"


class Store:
    """Async access to the SQLite file for the daemon. Use ``await Store.open(path)``.

    Writes never fail for want of space or a lock: while the database refuses them (disk full,
    I/O error, locked past the busy timeout) they are held in ``held`` in order and retried
    (``retry_held``); ``problem`` says why. Other SQLite errors are raised."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._epochs: list[tuple[Any, ...]] = []
        self._vitals: list[tuple[Any, ...]] = []
        self._last_flush = time.monotonic()
        self.held = HeldWrites()
        self._tx_lock = asyncio.Lock()

    @property
    def problem(self) -> str | None:
        """Why writes are being held (e.g. "database or disk is full"), or None when they go through."""
        return self.held.problem

    async def retry_held(self) -> None:
        """Try the held writes again if the retry period has passed (call it often; it is cheap)."""
        await self.held.retry(due_only=True)

    async def _transaction(self, steps: list[Step]) -> None:
        """Run the steps and commit, or roll back. One at a time: the daemon's tasks (events, the MQTT
        drain's acknowledgements) share this connection, and one's rollback must not undo another's rows."""
        async with self._tx_lock:
            try:
                for sql, params, many in steps:
                    if many:
                        await self._db.executemany(sql, params)
                    else:
                        await self._db.execute(sql, params)
                await self._db.commit()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.rollback()
                raise

    async def _write(
        self,
        what: str,
        steps: list[Step],
        *,
        size_bytes: int = 0,
        drop_rank: int = KEEP_ALWAYS,
        keep: bool = True,
    ) -> bool:
        """Run ``steps`` in one transaction now, or hold them (see the class). True if written now."""
        return await self.held.run(
            lambda: self._transaction(steps), what, size_bytes=size_bytes, drop_rank=drop_rank, keep=keep
        )

    def _take_batch(self) -> list[Step]:
        """The batched epochs and vitals as steps for the next transaction (the buffers are emptied)."""
        steps: list[Step] = []
        if self._epochs:
            steps.append(("INSERT OR REPLACE INTO epochs VALUES (?,?,?,?,?,?)", self._epochs, True))
            self._epochs = []
        if self._vitals:
            steps.append(("INSERT OR REPLACE INTO vitals VALUES (?,?,?,?)", self._vitals, True))
            self._vitals = []
        self._last_flush = time.monotonic()
        return steps

    async def flush(self) -> None:
        """Write and commit the batched epochs and vitals now."""
        if self._epochs or self._vitals:
            await self._write("epochs and vitals", self._take_batch())

    async def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= BATCH_S:
            await self.flush()

    @classmethod
    async def open(cls, path: str | Path, busy_timeout_s: float = 5.0) -> Store:
        """Open (creating folders and file), check an existing file (``check_integrity``), set WAL and
        durability, migrate. StoreError on failure (DatabaseDamagedError for a damaged file, which
        is left untouched)."""
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            existing = p.is_file() and p.stat().st_size > 0
            make_private(p)
            if existing:  # before anything writes to it: no migration or WAL switch on a damaged file
                check_integrity(p, busy_timeout_s)
            with sqlite3.connect(p, timeout=busy_timeout_s) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                migrate(conn, p)
            conn.close()
            db = await aiosqlite.connect(p, timeout=busy_timeout_s)
        except StoreError:  # damaged, a link, or a failed migration: says so itself
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {p}: {exc}") from exc
        # FULL: a power cut after a commit loses nothing that was committed.
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        return cls(db, p)

    async def close(self) -> None:
        """Write what is batched and held, then close the connection (held writes still refused are
        lost, and logged)."""
        await self.flush()
        await self.held.retry()
        if len(self.held):
            logger.error("database: closing with %s not saved (%s)", self.held.describe(), self.problem)
        await self._db.close()

    async def start_night(
        self,
        night_id: str,
        unit_id: str,
        started_at: str,
        profile: str,
        source: str,
        *,
        kind: str = "night",
        night_date: str | None = None,
        start_reason: str = "daemon",
        rate_hz: float | None = None,
    ) -> None:
        """Record the start of a night (or nap)."""
        sql = (
            "INSERT INTO nights (id, unit_id, started_at, profile, source, kind, night_date, start_reason, "
            "rate_hz) VALUES (?,?,?,?,?,?,?,?,?)"
        )
        row = (night_id, unit_id, started_at, profile, source, kind, night_date or started_at[:10],
               start_reason, rate_hz)  # fmt: skip
        await self._write("the start of a night", [(sql, row, False)])

    async def end_night(
        self,
        night_id: str,
        ended_at: str,
        summary: dict[str, Any],
        outbox: list[tuple[str, str, int, bool]] | None = None,
        *,
        kind: str | None = None,
        end_reason: str = "daemon_stop",
    ) -> None:
        """Record the end of a night and its summary, with its outbox messages, in one transaction."""
        steps = self._take_batch()
        steps.append((
            "UPDATE nights SET ended_at = ?, summary = ?, end_reason = ?, kind = COALESCE(?, kind) "
            "WHERE id = ?",
            (ended_at, json.dumps(summary), end_reason, kind, night_id),
            False,
        ))  # fmt: skip
        steps.append((_OUTBOX_INSERT, [(t, p, q, int(r), ended_at) for t, p, q, r in outbox or []], True))
        await self._write("the end of a night", steps)

    async def open_nights(self, unit_id: str) -> list[dict[str, Any]]:
        """Nights of this unit never ended (a crash, or a restart mid-night), newest first, each with
        ``last_at``: the time of its newest stored data (epoch, event end, vitals row, the end of its
        raw signal) or its start."""
        async with self._db.execute(
            "SELECT n.id, n.started_at, n.kind, n.night_date, n.start_reason, "
            "max(n.started_at, COALESCE((SELECT max(start_at) FROM epochs WHERE night_id = n.id), ''), "
            "COALESCE((SELECT max(end_at) FROM events WHERE night_id = n.id), ''), "
            "COALESCE((SELECT max(t_at) FROM vitals WHERE night_id = n.id), ''), "
            "COALESCE((SELECT strftime('%Y-%m-%dT%H:%M:%fZ', start_at, printf('%+.3f seconds', n / rate_hz)) "
            "FROM raw_chunks WHERE night_id = n.id ORDER BY start_index DESC LIMIT 1), '')) "
            "FROM nights n WHERE n.unit_id = ? AND n.ended_at IS NULL ORDER BY n.started_at DESC",
            (unit_id,),
        ) as cur:
            rows = await cur.fetchall()
        keys = ("id", "started_at", "kind", "night_date", "start_reason", "last_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def shift_night(self, night_id: str, started_at: str, night_date: str, delta_s: float) -> None:
        """The wall clock was wrong when this open night began and has jumped by ``delta_s``: move its
        start and every row stored for it so far (events, epochs, vitals, raw signal, snippets, marks),
        in one transaction, so they lie inside their night and in order with what follows.

        Messages already published keep the times they had."""
        steps = self._take_batch()  # batched epochs and vitals carry the old times too
        steps.append(("UPDATE nights SET started_at = ?, night_date = ? WHERE id = ?",
                      (started_at, night_date, night_id), False))  # fmt: skip
        for table, columns, unique in _NIGHT_TIMES:
            for col in columns:
                if unique:  # shifted values may meet unshifted ones: step through a marked form
                    steps.append(
                        (f"UPDATE {table} SET {col} = '~' || {col} WHERE night_id = ?", (night_id,), False)
                    )
                    src = f"substr({col}, 2)"
                else:
                    src = col
                steps.append((
                    f"UPDATE {table} SET {col} = strftime('%Y-%m-%dT%H:%M:%fZ', {src}, ?) WHERE night_id = ?",
                    (f"{delta_s:+.3f} seconds", night_id),
                    False,
                ))  # fmt: skip
        await self._write("a night's times", steps)

    async def add_raw_chunk(
        self,
        night_id: str,
        start_index: int,
        start_at: str,
        rate_hz: float,
        n: int,
        encoding: str,
        data: bytes,
    ) -> None:
        """Keep one chunk of a night's raw signal (``start_index``: samples since the night began)."""
        row = (night_id, start_index, start_at, rate_hz, n, encoding, data)
        await self._write(
            "raw signal chunks",
            [("INSERT OR REPLACE INTO raw_chunks VALUES (?,?,?,?,?,?,?)", row, False)],
            size_bytes=len(data),
            drop_rank=RAW_CHUNK,
        )

    async def add_snippet(
        self, event_id: str, night_id: str, start_at: str, rate_hz: float, n: int, encoding: str, data: bytes
    ) -> None:
        """Keep the raw signal around one event."""
        row = (event_id, night_id, start_at, rate_hz, n, encoding, data)
        await self._write(
            "event snippets",
            [("INSERT OR REPLACE INTO snippets VALUES (?,?,?,?,?,?,?)", row, False)],
            size_bytes=len(data),
            drop_rank=SNIPPET,
        )

    async def prune_raw(self, ended_before: str) -> int:
        """Delete the whole-night raw signal of nights that ended before ``ended_before``; chunks deleted
        (0 while writes are held: the next night's end prunes them)."""
        removed: list[int] = []

        async def prune() -> None:
            async with self._tx_lock:
                try:
                    cur = await self._db.execute(
                        "DELETE FROM raw_chunks WHERE night_id IN (SELECT id FROM nights WHERE ended_at IS "
                        "NOT NULL AND ended_at < ?)",
                        (ended_before,),
                    )
                    await self._db.commit()
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.rollback()
                    raise
            removed.append(int(cur.rowcount or 0))

        await self.held.run(prune, "raw signal pruning", keep=False)
        return sum(removed)

    async def add_notice(
        self, notice_id: str, created_at: str, kind: str, message: str, details: dict[str, Any]
    ) -> None:
        """Keep a notice for the user (e.g. a sustained rise) until they dismiss it."""
        sql = "INSERT INTO notices (id, created_at, kind, message, details) VALUES (?,?,?,?,?)"
        await self._write(
            "a notice", [(sql, (notice_id, created_at, kind, message, json.dumps(details)), False)]
        )

    async def active_notice(self, kind: str) -> dict[str, Any] | None:
        """The newest notice of ``kind`` not dismissed, or None."""
        async with self._db.execute(
            "SELECT id, created_at, message FROM notices WHERE kind = ? AND dismissed_at IS NULL "
            "ORDER BY created_at DESC LIMIT 1",
            (kind,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else {"id": row[0], "created_at": row[1], "message": row[2]}

    async def add_event(
        self, row: dict[str, Any], outbox: list[tuple[str, str, int, bool]], created_at: str
    ) -> None:
        """Insert an event and its outbox messages ``(topic, payload, qos, retain)`` atomically."""
        steps = self._take_batch()
        steps.append((_EVENT_INSERT, {**row, "details": json.dumps(row.get("details") or {})}, False))
        steps.append((_OUTBOX_INSERT, [(t, p, q, int(r), created_at) for t, p, q, r in outbox], True))
        await self._write("events", steps)

    async def add_epoch(
        self,
        night_id: str,
        start_at: str,
        duration_s: float,
        count: float,
        asleep: bool,
        in_bed: bool,
    ) -> None:
        """Keep one scored epoch (written within BATCH_S, or with the next event)."""
        self._epochs.append((night_id, start_at, duration_s, count, int(asleep), int(in_bed)))
        await self._flush_if_due()

    async def add_vitals(
        self, night_id: str, t_at: str, heart_bpm: float | None, breath_bpm: float | None
    ) -> None:
        """Keep one vitals reading (written within BATCH_S, or with the next event)."""
        self._vitals.append((night_id, t_at, heart_bpm, breath_bpm))
        await self._flush_if_due()

    async def set_live_state(self, unit_id: str, updated_at: str, state: dict[str, Any]) -> None:
        """Replace the live state the dashboard shows as 'now' (not held: the next one replaces it)."""
        sql = "INSERT OR REPLACE INTO live_state VALUES (?,?,?)"
        await self._write(
            "the live state", [(sql, (unit_id, updated_at, json.dumps(state)), False)], keep=False
        )

    async def add_annotation(
        self, annotation_id: str, night_id: str | None, at: str, kind: str, source: str, note: str = ""
    ) -> None:
        """Record a user's mark on the night (button press, MQTT mark, relabel)."""
        sql = "INSERT INTO annotations (id, night_id, at, kind, source, note) VALUES (?,?,?,?,?,?)"
        await self._write("annotations", [(sql, (annotation_id, night_id, at, kind, source, note), False)])

    async def add_calibration(
        self, created_at: str, sensor: str, rate_hz: float, usable: bool, values: dict[str, Any], verdict: str
    ) -> None:
        """Keep one calibration result (the newest usable one is used)."""
        sql = (
            "INSERT INTO calibrations (created_at, sensor, rate_hz, usable, values_json, verdict) "
            "VALUES (?,?,?,?,?,?)"
        )
        row = (created_at, sensor, rate_hz, int(usable), json.dumps(values), verdict)
        await self._write("a calibration", [(sql, row, False)])

    async def latest_calibration(self, sensor: str) -> dict[str, Any] | None:
        """The newest usable calibration of this sensor kind: its values and created_at, or None."""
        async with self._db.execute(
            "SELECT created_at, values_json FROM calibrations WHERE sensor = ? AND usable = 1 "
            "ORDER BY rowid DESC LIMIT 1",
            (sensor,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return {"created_at": row[0], **json.loads(row[1])}

    async def outbox_pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Queued messages with seq > after_seq, oldest first."""
        async with self._db.execute(
            "SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [OutboxRow(int(s), str(t), str(p), int(q), bool(r)) for s, t, p, q, r in rows]

    async def outbox_ack(self, seqs: list[int]) -> None:
        """Delete messages the broker acknowledged (held like any write: until then a restart would
        publish them again, which consumers drop by id)."""
        if not seqs:
            return
        await self._write(
            "outbox acknowledgements", [("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs], True)]
        )

    async def last_finished_night(self, unit_id: str) -> dict[str, Any] | None:
        """The newest ended night (or nap) of this unit: ``id``, ``ended_at``, ``kind`` and its stored
        ``summary`` (a dict, or None when none was stored), or None when no night has ended yet."""
        async with self._db.execute(
            "SELECT id, ended_at, kind, summary FROM nights WHERE unit_id = ? AND ended_at IS NOT NULL "
            "ORDER BY ended_at DESC LIMIT 1",
            (unit_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        try:
            summary = json.loads(row[3]) if row[3] else None
        except ValueError:
            summary = None
        return {"id": row[0], "ended_at": row[1], "kind": row[2],
                "summary": summary if isinstance(summary, dict) else None}  # fmt: skip

    async def outbox_waits_on(self, topic: str) -> bool:
        """Whether a message for ``topic`` is still waiting for the broker."""
        async with self._db.execute("SELECT 1 FROM outbox WHERE topic = ? LIMIT 1", (topic,)) as cur:
            return await cur.fetchone() is not None

    async def add_outbox(self, messages: list[tuple[str, str, int, bool]], created_at: str) -> None:
        """Queue messages ``(topic, payload, qos, retain)`` that no other row goes with."""
        await self._write(
            "outbox messages",
            [(_OUTBOX_INSERT, [(t, p, q, int(r), created_at) for t, p, q, r in messages], True)],
        )

    async def outbox_len(self) -> int:
        """Messages still waiting for the broker."""
        async with self._db.execute("SELECT COUNT(*) FROM outbox") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def event_count(self, night_id: str) -> int:
        """Events stored for a night."""
        async with self._db.execute("SELECT COUNT(*) FROM events WHERE night_id = ?", (night_id,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
