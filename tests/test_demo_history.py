"""The simulated history the demo, the dashboard tests and the benches use: stored as the daemon
stores a night (rows, summaries, snippets, raw chunks for the last nights only)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.demo_history import build_history
from service.sessions import SessionRules
from service.store.signal_codec import decode
from service.timefmt import parse_iso_utc


def test_each_simulated_night_is_stored_whole(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    ids = build_history(db, nights=3, first_date=date(2026, 11, 1), raw_days=1, duration_h=1.5, seed=2)
    conn = sqlite3.connect(db)
    nights = conn.execute(
        "SELECT id, night_date, kind, summary, ended_at > started_at FROM nights"
    ).fetchall()
    assert [n[0] for n in nights] == ids
    assert [n[1] for n in nights] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    for _, _, kind, summary, ordered in nights:
        assert kind == "night" and ordered == 1
        assert json.loads(summary)["time_in_bed_min"] > 60
    assert {r[0] for r in conn.execute("SELECT night_id FROM raw_chunks")} == {ids[-1]}
    missing = conn.execute(
        "SELECT count(*) FROM events e LEFT JOIN snippets s ON s.event_id = e.id WHERE s.event_id IS NULL"
    ).fetchone()[0]
    assert missing == 0
    for encoding, blob, n in conn.execute("SELECT encoding, data, n FROM snippets LIMIT 20"):
        assert decode(encoding, blob).size == n
    raw_n = conn.execute("SELECT sum(n) FROM raw_chunks").fetchone()[0]
    start, end = conn.execute("SELECT started_at, ended_at FROM nights WHERE id = ?", (ids[-1],)).fetchone()
    assert raw_n > 0 and start < end
    conn.close()


def test_the_cli_leaves_a_database_with_nights_alone(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    build_history(db, nights=1, duration_h=0.5)
    out = subprocess.run(
        [sys.executable, "-m", "service", "demo-history", "--db", str(db), "--nights", "2", "--if-empty"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "left as it is" in out.stdout
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM nights").fetchone()[0] == 1
    conn.close()


def _zone_where_it_is(hh: int, mm: int) -> tuple[timezone, datetime]:
    """A fixed-offset zone in which the wall clock reads about ``hh:mm`` now, and now in it.

    The builder's default placement reads the real clock, so the test moves the zone, not the clock."""
    now_utc = datetime.now(UTC)
    target = now_utc.replace(hour=hh, minute=mm, second=0, microsecond=0)
    offset_min = round((target - now_utc).total_seconds() / 60.0) % (24 * 60)
    if offset_min > 12 * 60:
        offset_min -= 24 * 60
    zone = timezone(timedelta(minutes=offset_min))
    return zone, now_utc.astimezone(zone)


@pytest.mark.parametrize("clock", [(3, 5), (15, 0), (11, 30), (23, 50)])
def test_simulated_nights_end_before_now_and_leave_the_live_nights_date_free(
    tmp_path: Path, clock: tuple[int, int]
) -> None:
    zone, now = _zone_where_it_is(*clock)
    db = tmp_path / "h.sqlite3"
    build_history(db, nights=2, duration_h=8.0, tags=False, tz=zone)
    finished = datetime.now(UTC)
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT night_date, started_at, ended_at FROM nights ORDER BY started_at").fetchall()
    conn.close()
    live_date = SessionRules(tz=zone).night_date(finished).isoformat()
    dates = [r[0] for r in rows]
    assert len(set(dates)) == 2 and live_date not in dates, (dates, live_date, now.isoformat())
    for _, _, ended_at in rows:
        assert parse_iso_utc(ended_at) <= now, (ended_at, now.isoformat())
    # As recent as it can be: the evening before the live night's (which at 03:05 is yesterday's).
    assert dates[-1] == (date.fromisoformat(live_date) - timedelta(days=1)).isoformat()
