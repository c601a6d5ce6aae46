"""The Status page's facts: the unit's health, sensor calibration age, MQTT, outbox, disk, version."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service import __version__
from service.status import health
from web.queries import parse_utc

logger = logging.getLogger(__name__)


def status(conn: sqlite3.Connection | None, database: str, unit_id: str) -> dict[str, Any]:
    """One document for the page and ``/api/status``.

    ``health`` is ``bedside status``'s verdict (``healthy`` and ``problems``); the rest are
    figures: ``calibration`` (the latest, with its age in days, or None), ``outbox_rows``
    (messages stored but not yet acknowledged by the broker), ``database_bytes`` (the file and
    its WAL), ``disk`` (of the database's file system), ``version``.
    """
    path = Path(database)
    doc: dict[str, Any] = {"version": __version__, "unit_id": unit_id, "health": health(database, unit_id)}
    size = 0
    for suffix in ("", "-wal"):
        p = path.with_name(path.name + suffix)
        if p.exists():
            size += p.stat().st_size
    doc["database_bytes"] = size
    folder = path.parent if path.parent.exists() else Path("/")
    usage = shutil.disk_usage(folder)
    doc["disk"] = {
        "total_mb": round(usage.total / 2**20),
        "free_mb": round(usage.free / 2**20),
        "used_pct": round(100 * usage.used / usage.total, 1) if usage.total else None,
    }
    doc["calibration"] = None
    doc["outbox_rows"] = None
    if conn is not None:
        row = conn.execute(
            "SELECT created_at, sensor, rate_hz, usable, verdict FROM calibrations"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            made = parse_utc(row["created_at"])
            doc["calibration"] = {
                "created_at": row["created_at"],
                "age_days": None
                if made is None
                else round((datetime.now(UTC) - made).total_seconds() / 86400, 1),
                "sensor": row["sensor"],
                "rate_hz": row["rate_hz"],
                "usable": bool(row["usable"]),
                "verdict": row["verdict"],
            }
        doc["outbox_rows"] = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    return doc
