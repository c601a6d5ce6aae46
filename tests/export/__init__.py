"""Helpers for the export tests: real databases of simulated nights, the CLI as a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, date, timedelta
from pathlib import Path

from service.demo_history import build_history
from service.timefmt import iso_utc, parse_iso_utc

REPO = Path(__file__).resolve().parents[2]
FIRST_DATE = date(2026, 10, 1)


def build_db(
    path: Path, *, nights: int, raw_days: int = 2, duration_h: float = 1.0, seed: int = 3
) -> list[str]:
    """A real Bedside database of ``nights`` short simulated nights (UTC), ids oldest first."""
    return build_history(
        path,
        nights=nights,
        first_date=FIRST_DATE,
        seed=seed,
        raw_days=raw_days,
        duration_h=duration_h,
        tz=UTC,
    )


def add_spasms(path: Path, night_ids: list[str], per_night: int) -> None:
    """Add ``per_night`` spasm events to each night, spread over its first hour (a rise to notice)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for night_id in night_ids:
                (started,) = conn.execute(
                    "SELECT started_at FROM nights WHERE id = ?", (night_id,)
                ).fetchone()
                t0 = parse_iso_utc(started)
                for k in range(per_night):
                    a = t0 + timedelta(minutes=5 + 6 * k)
                    conn.execute(
                        "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, "
                        "intensity, profile, confidence, cause_id, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (uuid.uuid4().hex, night_id, "spasm", iso_utc(a), iso_utc(a + timedelta(seconds=3)),
                         3.0, 60.0, "aasm", None, None, "{}"),
                    )  # fmt: skip
    finally:
        conn.close()


def clean_env() -> dict[str, str]:
    """The environment without any BEDSIDE_* setting of the machine running the tests."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """``python -m service ARGS`` as the user would run ``bedside ARGS``; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        timeout=120,
    )
