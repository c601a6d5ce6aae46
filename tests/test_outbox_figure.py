"""The outbox figure the daemon reports (live state: Status page, `bedside status`, MQTT `state`) is
the outbox as it is: once the broker has acknowledged every event it reads 0 within about a second,
not after the next change of bed or movement state (it once said "Unsent messages 3" for 95 s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hardware.simulated import SimulatedNight
from tests.broker import Broker
from tests.daemonutil import query, start_daemon, stop_daemon
from tests.mqttutil import wait_until

UNIT = "outbox-unit"
#: How long after the outbox table is empty the live figure may still show messages (seconds).
ALLOWED_LAG_S = 1.0


def _table_len(db: Path) -> int:
    rows = query(db, "SELECT COUNT(*) AS n FROM outbox")
    return int(rows[0]["n"]) if rows else -1


def _live_len(db: Path) -> int | None:
    rows = query(db, "SELECT state FROM live_state WHERE unit_id = ?", UNIT)
    return json.loads(rows[0]["state"]).get("outbox_len") if rows else None


def _quiet_night(path: Path) -> Path:
    """Ten simulated minutes at 50 Hz with movements one to two minutes apart (no PLM series, no
    restlessness): after each movement's event the bed, movement and sleep state stay as they are."""
    night = SimulatedNight(
        seed=3, rate_hz=50.0, duration_s=1200.0, plm_series=False, restless=False, awakenings=0,
        glitches=False, bathroom_trip=False,
    )  # fmt: skip
    np.save(path, night.render_all()[: 600 * 50].astype(np.float32))
    return path


def test_the_live_outbox_figure_falls_to_zero_once_the_broker_has_every_event(
    broker: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "night.sqlite3"
    recording = _quiet_night(tmp_path / "quiet.npy")
    args = [
        "--db", str(db), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--unit-id", UNIT,
        "--sensor", f"replay:{recording}", "--rate-hz", "50", "--speed", "15", "--no-web",
    ]  # fmt: skip
    proc = start_daemon(args, tmp_path / "d.log")
    try:
        wait_until(lambda: _live_len(db) is not None, timeout_s=30, what="the daemon's live state")
        # The live figure may say messages wait while none does (an event acknowledged before it is
        # counted again) for at most ALLOWED_LAG_S at a stretch.
        stale_since: float | None = None
        worst_s = 0.0
        seen: list[tuple[float, int, int | None]] = []
        start = time.monotonic()
        while time.monotonic() - start < 60.0 and proc.poll() is None:
            table, live = _table_len(db), _live_len(db)
            now = time.monotonic()
            seen.append((round(now - start, 2), table, live))
            if table == 0 and live:
                stale_since = now if stale_since is None else stale_since
                worst_s = max(worst_s, now - stale_since)
            else:
                stale_since = None
            time.sleep(0.05)  # a sampling period, not a wait for a condition
        assert proc.wait(30) == 0, (tmp_path / "d.log").read_text()
        events = query(db, "SELECT COUNT(*) AS n FROM events")[0]["n"]
        assert events >= 5, "the recording's movements were found and published"
        assert _table_len(db) == 0
        assert worst_s <= ALLOWED_LAG_S, (
            f"the live state counted unsent messages for {worst_s:.1f} s while none waited: {seen[::10]}"
        )
    finally:
        if proc.poll() is None:
            stop_daemon(proc)
