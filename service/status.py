"""`bedside status`: the unit's health from its database (read-only), for people and for scripts.

Unhealthy when: no database, a damaged one (``damaged`` is then true: ``bedside status`` exits 5),
no live state, the live state is older than ``stale_after_s``
(the daemon is stopped or stalled), the sensor reports a fault, the outbox holds messages while
MQTT is disconnected for long, or the disk is nearly full.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from service.errors import StoreError
from service.store.store import DatabaseDamagedError, check_integrity
from service.timefmt import parse_iso_utc, utc_now

#: Live state older than this means the daemon is not running (it writes once a second).
STALE_AFTER_S = 60.0
#: Less free disk than this is unhealthy.
MIN_FREE_BYTES = 200 * 1024 * 1024


def _read(db: Path, unit_id: str) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT updated_at, state FROM live_state WHERE unit_id = ?", (unit_id,)
        ).fetchone()
        night = conn.execute(
            "SELECT id, started_at, ended_at, summary FROM nights WHERE ended_at IS NOT NULL "
            "ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    state = json.loads(row[1]) if row else None
    last = None
    if night:
        last = {
            "id": night[0],
            "started_at": night[1],
            "ended_at": night[2],
            "summary": json.loads(night[3] or "{}"),
        }
    return state, (row[0] if row else None), last


def health(db_path: str, unit_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The health document: ``healthy`` plus one entry per part and the reasons it is not."""
    now = now or utc_now()
    db = Path(db_path)
    doc: dict[str, Any] = {"database": str(db), "problems": []}
    problems: list[str] = doc["problems"]
    if not db.exists():
        problems.append(f"no database at {db}: the daemon has never run with this configuration")
        doc["healthy"] = False
        return doc
    try:
        check_integrity(db)
    except DatabaseDamagedError as exc:
        problems.append(str(exc))
        doc["damaged"] = True
        doc["healthy"] = False
        return doc
    except StoreError as exc:
        problems.append(f"database unreadable: {exc}")
        doc["healthy"] = False
        return doc
    try:
        state, updated_at, last = _read(db, unit_id)
    except sqlite3.Error as exc:
        problems.append(f"database unreadable: {exc}")
        doc["healthy"] = False
        return doc
    free = shutil.disk_usage(db.parent).free
    doc["disk_free_mb"] = round(free / 2**20)
    if free < MIN_FREE_BYTES:
        problems.append(f"disk nearly full: {free / 2**20:.0f} MiB free")
    doc["last_night"] = last
    if state is None or updated_at is None:
        problems.append(f"no live state for unit {unit_id!r}: the daemon is not running")
        doc["healthy"] = False
        return doc
    age = (now - parse_iso_utc(updated_at)).total_seconds()
    doc["detector"] = {"updated_at": updated_at, "age_s": round(age, 1)}
    if age > STALE_AFTER_S:
        problems.append(f"live state is {age:.0f} s old: the daemon is stopped or stalled")
    doc["sensor"] = {"ok": state.get("sensor_ok"), "in_bed": state.get("in_bed")}
    if state.get("sensor_ok") is False:
        problems.append("the sensor reports a fault (glitches, stuck or unplugged)")
    if state.get("storage_ok") is False:
        problems.append(
            f"the database refuses writes ({state.get('storage_problem')}): they are held in memory"
        )
    doc["mqtt"] = {"connected": state.get("mqtt_connected"), "outbox_len": state.get("outbox_len")}
    if state.get("mqtt_connected") is False and (state.get("outbox_len") or 0) > 0:
        problems.append(f"MQTT disconnected with {state.get('outbox_len')} message(s) waiting in the outbox")
    doc["night_id"] = state.get("night_id")
    doc["healthy"] = not problems
    return doc


def print_health(doc: dict[str, Any]) -> None:
    """Plain lines for a person."""
    print(f"database   {doc['database']}")
    if "detector" in doc:
        print(f"detector   last update {doc['detector']['age_s']} s ago (night {doc.get('night_id')})")
    if "sensor" in doc:
        print(f"sensor     {'ok' if doc['sensor']['ok'] else 'FAULT'}, in bed: {doc['sensor']['in_bed']}")
    if "mqtt" in doc:
        m = doc["mqtt"]
        print(f"mqtt       {'connected' if m['connected'] else 'disconnected'}, outbox {m['outbox_len']}")
    if "disk_free_mb" in doc:
        print(f"disk       {doc['disk_free_mb']} MiB free")
    last = doc.get("last_night")
    if last:
        s = last["summary"]
        asleep, moves = s.get("total_sleep_min"), s.get("movements")
        print(f"last night {last['id']}: {asleep} min asleep, {moves} movements")
    print("healthy" if doc["healthy"] else "UNHEALTHY: " + "; ".join(doc["problems"]))
