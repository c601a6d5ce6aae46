"""Storage faults: the disk fills up mid-night (a small tmpfs), and a reader holds a read transaction.

The small file system is a real tmpfs mounted for the test (the tests run as root here); space
"returns" by deleting the file that filled it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonutil import query, stop_daemon, stored_events
from tests.mqttutil import wait_until
from tests.reliability.conftest import expected_events, integrity, run_daemon, same_events, stored_relative

UNIT = "rel-disk"
SEED = 8


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted under tmp_path, unmounted after the test."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to give the space back)."""
    filler = mnt / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def _grow(mnt: Path) -> None:
    """Give the file system more room (as an admin freeing or enlarging the disk would)."""
    subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)


def _args(db: Path, *extra: str) -> list[str]:
    return ["--db", str(db), "--no-mqtt", "--no-web", "--unit-id", UNIT, "--seed", str(SEED), *extra]


@pytest.mark.slow
def test_a_full_disk_never_corrupts_the_database_and_a_restart_recovers_when_space_returns(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "b.sqlite3"
    proc = run_daemon(_args(db, "--speed", "100", "--duration-s", "3600"), tmp_path / "full.log")
    try:
        wait_until(lambda: len(stored_events(db)) >= 5, timeout_s=60, what="events before the disk fills")
        before = {e["id"] for e in stored_events(db)}
        filler = _fill(small_disk)
        log_path = tmp_path / "full.log"
        wait_until(
            lambda: proc.poll() is not None or "full" in log_path.read_text().lower(),
            timeout_s=60,
            what="the daemon to meet the full disk",
        )
        # The daemon holds the refused writes and keeps detecting (gap 1, fixed; the next test checks
        # that in full): it is still running here, and this test stops it to restart after the disk.
        assert proc.poll() is None, f"the daemon stopped on a full disk:\n{log_path.read_text()}"
        stop_daemon(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert integrity(db) == "ok", "a full disk leaves the database sound"
    assert before <= {e["id"] for e in stored_events(db)}, "nothing stored before the disk filled is lost"
    log = (tmp_path / "full.log").read_text()
    assert "full" in log.lower(), "the log names the problem"
    filler.unlink()
    _grow(small_disk)
    again = run_daemon(_args(db, "--speed", "0", "--duration-s", "1800"), tmp_path / "again.log")
    assert again.wait(120) == 0, (tmp_path / "again.log").read_text()
    assert integrity(db) == "ok"
    stored = stored_events(db)
    assert before <= {e["id"] for e in stored}
    nights = [r["id"] for r in query(db, "SELECT id FROM nights ORDER BY started_at")]
    reference = expected_events(SEED, 1800)
    last = [e for e in stored if e["night_id"] == nights[-1]]
    assert same_events(stored_relative(last, reference), reference), "the night after recovery is whole"


@pytest.mark.slow
def test_a_full_disk_is_a_health_error_and_detection_goes_on_until_space_returns(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "b.sqlite3"
    duration_s = 1800.0
    proc = run_daemon(_args(db, "--speed", "60", "--duration-s", str(duration_s)), tmp_path / "d.log")
    try:
        wait_until(lambda: len(stored_events(db)) >= 3, timeout_s=60, what="events before the disk fills")
        filler = _fill(small_disk)
        time.sleep(5.0)  # five simulated minutes on a full disk
        status = subprocess.run(
            [".venv/bin/python", "-m", "service", "status", "--db", str(db)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
            env={k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
            | {"BEDSIDE_UNIT_ID": UNIT},
        )
        alive_while_full = proc.poll() is None
        filler.unlink()
        _grow(small_disk)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "d.log").read_text()
    assert alive_while_full, f"the daemon survives a full disk:\n{log[-3000:]}"
    assert code == 0 and "Traceback" not in log
    assert "disk" in log.lower() and "full" in log.lower(), "one clear log line names the full disk"
    assert status.returncode == 1 and "full" in status.stdout.lower(), status.stdout
    assert integrity(db) == "ok"
    reference = expected_events(SEED, duration_s)
    assert same_events(stored_relative(stored_events(db), reference), reference), "nothing detected was lost"


@pytest.mark.slow
def test_a_reader_holding_a_read_transaction_does_not_block_the_daemon(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    proc = run_daemon(_args(db, "--speed", "100", "--duration-s", "3600"), tmp_path / "d.log")
    try:
        wait_until(lambda: len(stored_events(db)) >= 2, timeout_s=60, what="the night under way")
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        try:
            reader.execute("BEGIN")
            held = reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            live_before = query(db, "SELECT updated_at FROM live_state")[0]["updated_at"]
            hold_s = 6.0  # ten simulated minutes
            time.sleep(hold_s)
            written = len(stored_events(db))
            live_after = query(db, "SELECT updated_at FROM live_state")[0]["updated_at"]
            still_same = reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            reader.execute("COMMIT")
        finally:
            reader.close()
        assert proc.poll() is None, (tmp_path / "d.log").read_text()
        assert stop_daemon(proc) == 0, (tmp_path / "d.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert still_same == held, "the reader saw one consistent snapshot"
    assert written > held, "the daemon kept writing events while the reader held its transaction"
    assert live_after > live_before, "the live state kept being updated"
    assert integrity(db) == "ok"
    assert "locked" not in (tmp_path / "d.log").read_text()


# --- a damaged database (issue 18, finding 12) --------------------------------------------------


def _damaged_database(tmp_path: Path) -> Path:
    """Two simulated nights, then 200 bytes flipped in the events table's root page (as a bad SD card
    sector would): SQLite opens the file, and ``PRAGMA quick_check`` finds the damage."""
    from service.demo_history import build_history

    db = tmp_path / "damaged.sqlite3"
    build_history(db, nights=2, rate_hz=50.0, duration_h=2.0, tags=False)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page_size + 8
    data[start : start + 200] = bytes(b ^ 0xFF for b in data[start : start + 200])
    db.write_bytes(bytes(data))
    return db


def _bedside(*args: str) -> subprocess.CompletedProcess[str]:
    import sys

    from tests.daemonutil import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_a_damaged_database_is_named_and_left_untouched_by_the_daemon_and_every_command(
    tmp_path: Path,
) -> None:
    db = _damaged_database(tmp_path)
    before = db.read_bytes()
    run = _bedside("run", *_args(db, "--speed", "0", "--duration-s", "120"))
    assert run.returncode == 5, f"exit {run.returncode}: {run.stderr[-2000:]}"
    for words in (str(db), "damaged", "quick_check", "Nothing was changed", "backup", ".recover"):
        assert words in run.stderr, f"{words!r} not in {run.stderr[-2000:]!r}"
    assert "Traceback" not in run.stderr
    assert db.read_bytes() == before, "no migration, no write, no checkpoint into the damaged file"

    status = _bedside("status", "--db", str(db))
    assert status.returncode == 5 and "damaged" in status.stdout and "quick_check" in status.stdout, status
    as_json = _bedside("status", "--db", str(db), "--json")
    assert as_json.returncode == 5 and '"damaged": true' in as_json.stdout

    for command in (["nights"], ["tag", "--date", "2026-11-21", "caffeine"], ["report", "--out", "-"]):
        done = _bedside(*command, "--db", str(db))
        assert done.returncode == 5 and "damaged" in done.stderr, (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    assert db.read_bytes() == before
