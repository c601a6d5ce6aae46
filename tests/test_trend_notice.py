"""The change rule at the end of a night: a sustained rise becomes a stored notice and a retained MQTT
``notice`` (real daemon, real Mosquitto); a flat history gives none."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from service.store.store import Store
from tests.broker import Broker
from tests.daemonutil import query, start_daemon, stop_daemon
from tests.mqttutil import Subscriber

UNIT = "trend-unit"
ROOT = f"bedside/{UNIT}"


def _history(db: Path, spasms: list[int]) -> None:
    """Past nights with summaries, the last one the night before yesterday."""

    async def go() -> None:
        store = await Store.open(db)
        first = date.today() - timedelta(days=len(spasms) + 2)
        for i, count in enumerate(spasms):
            day = first + timedelta(days=i)
            night_id = f"past-{i:02d}"
            start = f"{day.isoformat()}T22:00:00.000Z"
            await store.start_night(night_id, UNIT, start, "aasm", "test", night_date=day.isoformat())
            summary = {"night_id": night_id, "spasms": {"count": count}, "movement_index_per_h": 10.0,
                       "awakenings": 2, "total_sleep_min": 420.0}  # fmt: skip
            await store.end_night(night_id, f"{(day + timedelta(days=1)).isoformat()}T06:00:00.000Z", summary)
        await store.close()

    asyncio.run(go())


def _run_one_night(tmp_path: Path, broker: Broker, db: Path) -> dict[str, object]:
    proc = start_daemon(
        ["--db", str(db), "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--unit-id", UNIT,
         "--seed", "3", "--speed", "0", "--duration-s", "600", "--no-web"],
        tmp_path / "d.log",
    )  # fmt: skip
    try:
        assert proc.wait(120) == 0
    finally:
        stop_daemon(proc)
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/notice")
    try:
        sub.wait_for(lambda: bool(sub.messages), what="retained notice")
        assert sub.messages[-1].retain
        doc: dict[str, object] = json.loads(sub.messages[-1].payload)
        return doc
    finally:
        sub.close()


def test_a_sustained_rise_in_spasms_becomes_a_notice(tmp_path: Path, broker: Broker) -> None:
    rng = np.random.default_rng(1)
    db = tmp_path / "b.sqlite3"
    _history(db, [int(x) for x in rng.poisson(2, 28)] + [int(x) for x in rng.poisson(9, 6)])
    doc = _run_one_night(tmp_path, broker, db)
    assert doc["active"] is True
    message = str(doc["message"])
    assert "Spasms per night" in message and "doctor" in message
    notices = query(db, "SELECT kind, message, dismissed_at FROM notices")
    assert [(n["kind"], n["message"], n["dismissed_at"]) for n in notices] == [("trend_rise", message, None)]


def test_a_flat_history_gives_no_notice(tmp_path: Path, broker: Broker) -> None:
    rng = np.random.default_rng(2)
    db = tmp_path / "b.sqlite3"
    _history(db, [int(x) for x in rng.poisson(2, 34)])
    doc = _run_one_night(tmp_path, broker, db)
    assert doc == {"active": False, "kind": "trend_rise"}
    assert query(db, "SELECT * FROM notices") == []
