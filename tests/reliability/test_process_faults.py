"""Process faults: SIGKILL at random moments and a restart, ten times in a night; a power cut mid-write.

After every kill the database passes ``PRAGMA integrity_check``, every event stored before the kill
is still there, and in the end every stored event reaches a real subscriber. A power cut is
emulated on copies of a database whose writer was killed mid-write: the write-ahead log cut exactly
after its last commit frame (what ``synchronous=FULL`` guarantees to keep), torn after it with
garbage, torn half-way through its last transaction, and cut at random earlier frames.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hardware.simulated import SimulatedNight, SimulatedSource
from service.app import Daemon
from tests.daemonutil import in_process_config, query, stored_events
from tests.mqttutil import wait_until
from tests.reliability.conftest import (
    DurableSubscriber,
    KeepingBroker,
    deduplicated,
    evening_timezone,
    expected_events,
    fits_the_detector,
    integrity,
    no_limit_config,
    run_args,
    run_daemon,
)

UNIT = "rel-kill"
EVENT_TOPIC = f"bedside/{UNIT}/event"
SEED = 6


#: Night sessions as on a real unit (the test helpers default to one night per run), in a zone where
#: it is evening now, so the morning rules do not end the night whatever time the test runs.
AUTO = {"BEDSIDE_SESSIONS__MODE": "auto", "BEDSIDE_SESSIONS__TIMEZONE": evening_timezone()}


def _kill_after(args: list[str], log: Path, delay_s: float) -> None:
    proc = run_daemon(args, log, env=AUTO)
    try:
        time.sleep(delay_s)
        assert proc.poll() is None, f"the daemon ended before the kill:\n{log.read_text()}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


@dataclass
class Killed:
    """Ten SIGKILLs and a clean run over one night, and what they left."""

    delays: list[float]
    db: Path
    kept: dict[str, str]  # id -> night, for every event stored before the last kill
    runs: list[list[dict[str, Any]]]  # the rows each killed run added
    stored: list[dict[str, Any]]
    wire: list[str]
    nights: list[dict[str, Any]]


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    """Ten kills at random moments of a night at full speed, each followed by a restart, then a clean
    run; checked after every kill (integrity, nothing stored before it lost)."""
    tmp_path = tmp_path_factory.mktemp("sigkill")
    broker = KeepingBroker(tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    rng = random.Random(20261122)
    db = tmp_path / "b.sqlite3"
    cfg = str(no_limit_config(tmp_path))
    sub = DurableSubscriber(broker.host, broker.port, EVENT_TOPIC)
    kept: dict[str, str] = {}
    runs: list[list[dict[str, Any]]] = []
    delays = [rng.uniform(0.4, 4.0) for _ in range(10)]
    try:
        for k, delay in enumerate(delays):
            args = run_args(db, broker.port, UNIT, SEED, "--speed", "0", "--duration-s", "3600")
            _kill_after([*args, "--config", cfg], tmp_path / f"kill{k}.log", delay)
            if not db.exists():
                continue  # killed before the database was created: nothing to lose yet
            assert integrity(db) == "ok", f"after kill {k} at {delay:.2f} s"
            now = {e["id"]: e["night_id"] for e in stored_events(db)}
            lost = set(kept) - set(now)
            assert not lost, f"kill {k} lost {len(lost)} stored event(s)"
            runs.append([e for e in stored_events(db) if e["id"] not in kept])
            kept = now
        final_args = run_args(db, broker.port, UNIT, SEED, "--speed", "0", "--duration-s", "1800")
        final = run_daemon([*final_args, "--config", cfg], tmp_path / "final.log", env=AUTO)
        assert final.wait(120) == 0, (tmp_path / "final.log").read_text()
        stored = stored_events(db)
        sub.wait_for(
            lambda: set(sub.ids(EVENT_TOPIC)) >= {e["id"] for e in stored},
            timeout_s=60,
            what="every event of every run at the subscriber",
        )
        time.sleep(1.0)  # a late repeat of an id would still count
        wire = sub.ids(EVENT_TOPIC)
    finally:
        sub.close()
        broker.stop()
    nights = [dict(r) for r in query(db, "SELECT * FROM nights ORDER BY started_at")]
    yield Killed(delays, db, kept, runs, stored, wire, nights)


@pytest.mark.slow
def test_ten_sigkills_in_a_night_lose_nothing_and_leave_a_sound_database(killed: Killed) -> None:
    db, stored, kept, wire = killed.db, killed.stored, killed.kept, killed.wire
    assert integrity(db) == "ok"
    ids = [e["id"] for e in stored]
    assert len(ids) == len(set(ids)), "no event stored twice"
    assert set(kept) <= set(ids), "events stored before the kills are all still there"
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0, "the outbox drained"
    # Each restart's stream continues after the night's last data, however far the full-speed run
    # before it got ahead of the wall clock (test_a_restart_after_a_stream_that_ran_ahead...), but
    # ten replays of a night chained that way run hours past the evening window, so the session
    # rules may end a night at a morning exit or its stream may pass RESUME_WITHIN: reported, bounded.
    assert 1 <= len(killed.nights) <= len(killed.delays) + 1
    assert {e["night_id"] for e in stored} <= {n["id"] for n in killed.nights}, "every event has its night"
    last_run = [e for e in stored if e["id"] not in kept]
    assert fits_the_detector(last_run, expected_events(SEED, 1800)), "the last run stored what it found"
    reference = expected_events(SEED, 3600)
    for k, rows in enumerate(killed.runs):
        assert fits_the_detector(rows, reference), f"run {k} holds only what the detector found"
    assert deduplicated(wire) == ids, "after dropping repeats by id, the subscriber holds the store, in order"
    repeats = len(wire) - len(set(wire))
    assert repeats <= len(killed.delays) * 3, f"{repeats} repeated deliveries"
    print(
        f"kills at {', '.join(f'{d:.1f}' for d in killed.delays)} s; {len(ids)} events, 0 lost; "
        f"{len(wire)} messages, {repeats} repeated; {len(killed.nights)} night rows"
    )


def _daemon_run(db: Path, seed: int, start: datetime, duration_s: float) -> None:
    """The real Daemon in-process, ``auto`` sessions, over a simulated night whose stream begins at
    ``start`` (as fast as the CPU allows)."""
    cfg = in_process_config(db, mode="auto", timezone="UTC")
    night = SimulatedNight(seed=seed, rate_hz=250.0, duration_s=duration_s)
    assert asyncio.run(Daemon(cfg, SimulatedSource(night, speed=0.0, start=start), "sim").run()) == 0


def test_a_restart_after_a_stream_that_ran_ahead_of_the_clock_continues_the_same_night(
    tmp_path: Path,
) -> None:
    """What the ten SIGKILLs above do by chance, made certain: the first run's stream reaches 20
    minutes past the moment the second one starts. The restart's times continue after the night's
    last data (as a clock set back is never followed), in the same night, in order."""
    db = tmp_path / "b.sqlite3"
    t0 = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
    _daemon_run(db, SEED, t0, 1500.0)  # ends with its night open, last data at about 22:25
    (first,) = query(db, "SELECT id, ended_at FROM nights")
    assert first["ended_at"] is None
    stored = stored_events(db)
    _daemon_run(db, SEED + 1, t0 + timedelta(minutes=5), 600.0)  # the restart, 5 min of wall clock later
    before = {e["id"] for e in stored}
    nights = query(db, "SELECT id, end_reason FROM nights ORDER BY started_at")
    assert [n["id"] for n in nights] == [first["id"]], [tuple(n) for n in nights]
    everything = stored_events(db)
    after = [e for e in everything if e["id"] not in before]
    assert after, "the restart's events are stored"
    last_before = max(e["end_at"] for e in everything if e["id"] in before)
    assert min(e["start_at"] for e in after) > last_before, "the restart's events follow the first run's"
    assert not [e for e in after if e["event_type"] == "sensor_fault" and "no_data_s" in e["details"]], (
        "no hole: the restart continued straight after the last data"
    )


@pytest.mark.slow
def test_a_restart_after_a_kill_continues_the_same_night(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    args = ["--db", str(db), "--no-mqtt", "--no-web", "--unit-id", UNIT, "--seed", str(SEED)]
    # 30x: the simulated stream stays near the wall clock, as a live sensor's does
    proc = run_daemon([*args, "--speed", "30", "--duration-s", "3600"], tmp_path / "a.log", env=AUTO)
    try:
        wait_until(lambda: len(stored_events(db)) >= 3, timeout_s=60, what="events before the kill")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    again = run_daemon([*args, "--speed", "0", "--duration-s", "600"], tmp_path / "b.log", env=AUTO)
    assert again.wait(60) == 0, (tmp_path / "b.log").read_text()
    nights = query(db, "SELECT id, ended_at FROM nights")
    assert len(nights) == 1, f"{len(nights)} nights after one kill and restart"
    assert len({e["night_id"] for e in stored_events(db)}) == 1, "every event belongs to the one night"


WAL_HEADER = 32  # bytes: magic, version, page size, checkpoint seq, salts, checksum
FRAME_HEADER = 24  # bytes: page number, database size after commit (non-zero: a commit), salts, checksum


def _wal_checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes), continuing from (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_commit_ends(wal: bytes) -> list[int]:
    """The byte offset just after each commit frame SQLite would replay from this WAL: frames of
    the header's generation (same salts) whose checksums chain, up to the first that does not."""
    if len(wal) < WAL_HEADER:
        return []
    magic, _version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", wal[:WAL_HEADER])
    big_endian = magic == 0x377F0683
    page_size = 65536 if page_size == 1 else page_size
    s0, s1 = _wal_checksum(wal[:24], 0, 0, big_endian)
    assert (s0, s1) == (c0, c1), "the WAL header's checksum"
    ends: list[int] = []
    at, frame = WAL_HEADER, FRAME_HEADER + page_size
    while at + frame <= len(wal):
        _page, db_size, f_salt1, f_salt2, f0, f1 = struct.unpack(">6I", wal[at : at + FRAME_HEADER])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        s0, s1 = _wal_checksum(wal[at : at + 8], s0, s1, big_endian)
        s0, s1 = _wal_checksum(wal[at + FRAME_HEADER : at + frame], s0, s1, big_endian)
        if (s0, s1) != (f0, f1):
            break
        at += frame
        if db_size:
            ends.append(at)
    return ends


def _tear(src_db: Path, dst_db: Path, wal_bytes: int, garbage: bytes) -> None:
    """A copy of the database as a power cut could leave it: the WAL cut at ``wal_bytes`` (mid-frame
    in general) with ``garbage`` where the rest of the interrupted write was."""
    shutil.copyfile(src_db, dst_db)
    wal = src_db.with_name(src_db.name + "-wal")
    data = wal.read_bytes()[:wal_bytes] if wal.exists() else b""
    dst_db.with_name(dst_db.name + "-wal").write_bytes(data + garbage)


def _ids_and_orphans(db: Path) -> tuple[set[str], int]:
    assert integrity(db) == "ok", f"{db.name}: integrity"
    conn = sqlite3.connect(db)
    try:
        ids = {r[0] for r in conn.execute("SELECT id FROM events")}
        orphans = conn.execute(
            "SELECT COUNT(*) FROM events WHERE night_id NOT IN (SELECT id FROM nights)"
        ).fetchone()[0]
    finally:
        conn.close()
    return ids, int(orphans)


@pytest.mark.slow
def test_a_power_cut_during_a_write_loses_no_commit_and_the_night_goes_on(tmp_path: Path) -> None:
    """A power cut with ``synchronous=FULL`` loses at most what follows the last synced commit: the
    WAL is cut exactly after its last commit frame, and torn inside the unfinished tail with garbage
    after it. Every event committed survives and the restarted daemon goes on with the same night.
    Cuts at earlier frames (a disk that lied about a sync) leave exactly the earlier commit."""
    rng = random.Random(7)
    db = tmp_path / "live.sqlite3"
    args = ["--db", str(db), "--no-mqtt", "--no-web", "--unit-id", UNIT, "--seed", str(SEED), "--speed", "0"]
    proc = run_daemon([*args, "--duration-s", "3600"], tmp_path / "live.log", env=AUTO)
    try:
        # A few events in: the night is open, and its stream (at full speed) is still within the
        # resume rule's 5 minutes of the wall clock (known gap 6).
        wait_until(lambda: len(stored_events(db)) >= 6, timeout_s=60, what="a night under way", poll_s=0.01)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-write: at full speed the daemon commits all the time
        proc.wait(10)
    wal = db.with_name(db.name + "-wal").read_bytes()
    ends = wal_commit_ends(wal)
    assert len(ends) >= 5, f"the kill left a write-ahead log with commits to tear ({len(ends)})"
    full, _ = _ids_and_orphans(db)
    (night,) = query(db, "SELECT id FROM nights")
    tail = len(wal) - ends[-1]

    def restart_continues(copy: Path, what: str) -> None:
        before, _ = _ids_and_orphans(copy)
        run = run_daemon(
            [*args[:1], str(copy), *args[2:], "--duration-s", "300"], tmp_path / f"{what}.log", env=AUTO
        )
        assert run.wait(60) == 0, (tmp_path / f"{what}.log").read_text()
        after, orphans = _ids_and_orphans(copy)
        assert orphans == 0 and before <= after, f"{what}: the next run keeps what survived"
        assert [r["id"] for r in query(copy, "SELECT id FROM nights")] == [night["id"]], (
            f"{what}: the night goes on in the same row"
        )
        assert len(after) > len(before), f"{what}: the restarted stream's events are in that night"

    # exactly after the last commit frame: every committed event is there
    clean = tmp_path / "clean.sqlite3"
    _tear(db, clean, ends[-1], b"")
    survivors, orphans = _ids_and_orphans(clean)
    assert survivors == full and orphans == 0, f"{len(full - survivors)} committed event(s) lost"
    restart_continues(clean, "clean")
    # torn inside the unfinished write after it (if the kill left one), garbage where the rest was
    for k in range(3):
        cut = rng.randrange(ends[-1], len(wal) + 1)
        torn = tmp_path / f"tail{k}.sqlite3"
        _tear(db, torn, cut, rng.randbytes(rng.randrange(1, 3000)))
        survivors, orphans = _ids_and_orphans(torn)
        assert survivors == full and orphans == 0, f"tail cut at {cut}: {len(full - survivors)} lost"
        restart_continues(torn, f"tail{k}")
    # the power lost half-way through writing the last transaction: the one before it is all there
    half = tmp_path / "half.sqlite3"
    _tear(db, half, (ends[-2] + ends[-1]) // 2, rng.randbytes(1000))
    previous = tmp_path / "previous.sqlite3"
    _tear(db, previous, ends[-2], b"")
    survivors, orphans = _ids_and_orphans(half)
    assert survivors == _ids_and_orphans(previous)[0] and survivors <= full and orphans == 0
    # cut anywhere earlier: exactly what was committed up to the last commit frame before the cut
    for k in range(3):
        cut = rng.randrange(WAL_HEADER, ends[-1])
        torn = tmp_path / f"early{k}.sqlite3"
        _tear(db, torn, cut, rng.randbytes(rng.randrange(1, 3000)))
        reference = tmp_path / f"early{k}-ref.sqlite3"
        _tear(db, reference, max((e for e in ends if e <= cut), default=WAL_HEADER), b"")
        survivors, orphans = _ids_and_orphans(torn)
        assert survivors == _ids_and_orphans(reference)[0] and survivors <= full and orphans == 0
        run = run_daemon(
            [*args[:1], str(torn), *args[2:], "--duration-s", "300"], tmp_path / f"early{k}.log", env=AUTO
        )
        assert run.wait(60) == 0, (tmp_path / f"early{k}.log").read_text()
        assert survivors <= _ids_and_orphans(torn)[0], "the next run keeps what survived"
    print(
        f"power cut: {len(full)} events, WAL {len(wal)} bytes with {len(ends)} commits and a "
        f"{tail}-byte unfinished tail; every commit kept at the last commit frame and at 3 torn tails"
    )
