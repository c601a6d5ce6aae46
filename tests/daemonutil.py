"""Run the real ``bedside`` daemon as a subprocess for end-to-end tests, and read what it stored."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from service.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]

#: Daemons started by ``start_daemon``: each leads its own process group (``start_new_session``), which
#: holds its dashboard child too, so ``kill_leftover_daemons`` (after each test, from
#: tests/conftest.py, and at exit) ends both when a test fails before stopping its daemon.
_STARTED: list[subprocess.Popen[bytes]] = []


def start_daemon(
    args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python -m service run ARGS`` with stderr to ``log_path``; no BEDSIDE_* from the caller leaks in.

    Sessions run in ``run`` mode (the night is the daemon's run) unless ``env`` says otherwise, so a
    test does not depend on the time of day; tests of the evening/morning rules set ``auto``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    clean["BEDSIDE_SESSIONS__MODE"] = "run"
    clean.update(env or {})
    log = log_path.open("wb")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "run", *args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean,
            start_new_session=True,
        )
    finally:
        log.close()
    _STARTED.append(proc)
    return proc


def started_daemons() -> set[int]:
    """The process ids of the daemons started so far and not yet cleaned up."""
    return {proc.pid for proc in _STARTED}


def kill_leftover_daemons(keep: set[int] | frozenset[int] = frozenset()) -> int:
    """SIGKILL the process group (the daemon and its dashboard) of every daemon started here but those
    in ``keep`` (a module's daemon, which outlives a test), if anyone is left in it (the test failed
    before stopping it); how many groups were killed."""
    killed = 0
    for proc in [p for p in _STARTED if p.pid not in keep]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 0)  # anyone left in the group, the daemon or a child it started
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        _STARTED.remove(proc)
    return killed


atexit.register(kill_leftover_daemons)


def stop_daemon(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
    """Send ``sig`` and wait for the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout_s)


def query(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    """Rows of a read-only query on the daemon's database (empty list if it has no schema yet)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, params))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def stored_events(db: Path) -> list[dict[str, Any]]:
    """Every stored event, in write order, with details decoded."""
    rows = query(db, "SELECT * FROM events ORDER BY rowid")
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


def in_process_config(db: Path, **sessions: Any) -> Config:
    """The config of a daemon run in the test's process: its store at ``db``, no MQTT, no dashboard,
    ``[sessions]`` from ``sessions``."""
    overrides = {"storage": {"db_path": str(db)}, "mqtt": {"enabled": False}, "web": {"enabled": False}}
    return load_config(environ={}, overrides={**overrides, "sessions": sessions})
