"""End to end on real parts: simulated night -> daemon -> real Mosquitto, real SQLite, real dashboard."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from pathlib import Path

import pytest

from service.detect.types import EVENT_TYPES
from service.timefmt import parse_iso_utc
from tests.broker import Broker, free_port, wait_port
from tests.daemonutil import query, start_daemon, stop_daemon, stored_events
from tests.mqttutil import Subscriber, wait_until
from tests.reliability.conftest import (
    expected_events,
    same_events,
    stored_relative,
    truth_found,
    truth_movements,
)

UNIT = "e2e-unit"
EVENT_KEYS = {
    "id", "event_type", "start", "end", "duration_s", "intensity", "profile", "confidence",
    "night_id", "cause_id", "details", "unit_id",
}  # fmt: skip


def _events_on_wire(sub: Subscriber) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in sub.on(f"bedside/{UNIT}/event")]


def _run_args(db: Path, broker_port: int, *extra: str) -> list[str]:
    return [
        "--db", str(db), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker_port),
        "--unit-id", UNIT, "--seed", "3", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_simulated_night_reaches_subscriber_exactly_once_as_stored(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "night.sqlite3"
    sub = Subscriber(broker.host, broker.port, f"bedside/{UNIT}/#")
    try:
        proc = start_daemon(
            _run_args(db, broker.port, "--speed", "0", "--duration-s", "2400", "--no-web"), tmp_path / "d.log"
        )
        assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()
        stored = stored_events(db)
        sub.wait_for(lambda: len(sub.on(f"bedside/{UNIT}/event")) >= len(stored), what="every event")
        sub.wait_for(
            lambda: [m.text for m in sub.on(f"bedside/{UNIT}/availability")][-1:] == ["offline"],
            what="offline",
        )
        wire = _events_on_wire(sub)
    finally:
        sub.close()

    assert len(stored) >= 10, "a 40-minute simulated night has movements"
    ids = [e["id"] for e in wire]
    assert len(ids) == len(set(ids)), "no event published twice"
    assert ids == [e["id"] for e in stored], "published in the order stored, each exactly once"
    for payload, row in zip(wire, stored, strict=True):
        assert set(payload) == EVENT_KEYS
        assert payload["event_type"] in EVENT_TYPES and payload["event_type"] == row["event_type"]
        assert payload["unit_id"] == UNIT and payload["night_id"] == row["night_id"]
        start, end = parse_iso_utc(str(payload["start"])), parse_iso_utc(str(payload["end"]))
        assert str(payload["start"]).endswith("Z") and end >= start
        assert abs((end - start).total_seconds() - float(payload["duration_s"])) < 0.01  # type: ignore[arg-type]
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0, "every row acknowledged"
    stored_ids = {e["id"] for e in stored}
    for e in stored:
        assert e["cause_id"] is None or (e["event_type"] == "awakening" and e["cause_id"] in stored_ids)
    availability = [m.text for m in sub.on(f"bedside/{UNIT}/availability")]
    assert availability[0] == "online" and availability[-1] == "offline"
    states = [json.loads(m.payload) for m in sub.on(f"bedside/{UNIT}/state")]
    assert states, "state was published"
    assert {"in_bed", "moving", "asleep", "sensor_ok", "counts", "heart_bpm", "breath_bpm"} <= set(states[-1])
    assert any(s["moving"] for s in states), "moving ON reached the hub"
    late = Subscriber(broker.host, broker.port, f"bedside/{UNIT}/state")
    try:
        late.wait_for(lambda: bool(late.messages), what="the retained state")
        assert late.messages[0].retain and json.loads(late.messages[0].payload)["night_id"] is None
    finally:
        late.close()


@pytest.mark.slow
def test_sigterm_mid_night_publishes_offline_and_dashboard_shows_the_same_events(
    broker: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "night.sqlite3"
    web_port = free_port()
    sub = Subscriber(broker.host, broker.port, f"bedside/{UNIT}/#")
    proc = start_daemon(
        _run_args(db, broker.port, "--speed", "120", "--duration-s", "7200", "--web-port", str(web_port)),
        tmp_path / "d.log",
    )
    try:
        sub.wait_for(lambda: len(sub.on(f"bedside/{UNIT}/event")) >= 5, timeout_s=60, what="5 events")
        assert [m.text for m in sub.on(f"bedside/{UNIT}/availability")][-1] == "online"
        assert proc.poll() is None, "still running mid-night"
        assert stop_daemon(proc, signal.SIGTERM) == 0, (tmp_path / "d.log").read_text()
        sub.wait_for(
            lambda: [m.text for m in sub.on(f"bedside/{UNIT}/availability")][-1:] == ["offline"],
            what="offline after SIGTERM",
        )
        stored = stored_events(db)
        wait_until(lambda: len(_events_on_wire(sub)) >= len(stored), what="stored events on the wire")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
    assert [e["id"] for e in _events_on_wire(sub)] == [e["id"] for e in stored]
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0
    log = (tmp_path / "d.log").read_text()
    assert "Traceback" not in log
    # The dashboard was the daemon's child: it stopped with it.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=2)


@pytest.mark.slow
def test_a_killed_daemon_takes_its_dashboard_along_and_frees_the_port(broker: Broker, tmp_path: Path) -> None:
    """SIGKILL leaves no time to stop the dashboard child; it notices its parent is gone and stops,
    so the restarted daemon (systemd's Restart=, or `make demo` again) can bind the port."""
    db = tmp_path / "night.sqlite3"
    web_port = free_port()
    args = _run_args(db, broker.port, "--speed", "20", "--duration-s", "7200", "--web-port", str(web_port))
    proc = start_daemon(args, tmp_path / "d.log")
    web_pid = None
    try:
        wait_port(web_port, timeout_s=30)
        log = (tmp_path / "d.log").read_text()
        web_pid = int(re.search(r"dashboard at \S+ \(pid (\d+)\)", log).group(1))  # type: ignore[union-attr]
        proc.kill()
        proc.wait()
        wait_until(lambda: not _alive(web_pid), timeout_s=10, what="the dashboard child to stop")
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=2)
        again = start_daemon(args, tmp_path / "d2.log")
        try:
            wait_port(web_port, timeout_s=30)
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=5) as r:
                assert r.status == 200
        finally:
            assert stop_daemon(again) == 0, (tmp_path / "d2.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if web_pid is not None and _alive(web_pid):
            os.kill(web_pid, signal.SIGKILL)  # a failed run leaves no dashboard behind
    assert "the dashboard stops" in (tmp_path / "d.log").read_text()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_dashboard_and_api_show_the_events_the_running_daemon_stored(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "night.sqlite3"
    web_port = free_port()
    proc = start_daemon(
        _run_args(db, broker.port, "--speed", "60", "--duration-s", "7200", "--web-port", str(web_port)),
        tmp_path / "d.log",
    )
    try:
        wait_port(web_port, timeout_s=30)
        wait_until(lambda: len(stored_events(db)) >= 3, timeout_s=60, what="3 stored events")
        proc.send_signal(signal.SIGSTOP)  # freeze the daemon so store and API are compared at one moment
        try:
            stored = stored_events(db)
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/events?limit=5000", timeout=5) as r:
                api = json.load(r)
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5) as r:
                page = r.read().decode()
        finally:
            proc.send_signal(signal.SIGCONT)
    finally:
        stop_daemon(proc)
    assert sorted(e["id"] for e in api["events"]) == sorted(e["id"] for e in stored)
    starts = [e["start"] for e in api["events"]]
    assert starts == sorted(starts), "the API lists events by start time"
    assert api["night_id"] == stored[0]["night_id"]
    assert stored[-1]["night_id"] in page or "Tonight" in page
    for e in stored[-3:]:
        assert e["event_type"].replace("_", " ") in page.replace("_", " ").lower()


@pytest.mark.slow
def test_events_wait_in_the_outbox_while_the_broker_is_down_and_arrive_when_it_is_up(tmp_path: Path) -> None:
    db = tmp_path / "night.sqlite3"
    broker = Broker(tmp_path / "late-broker")
    broker.workdir.mkdir()
    proc = start_daemon(
        _run_args(db, broker.port, "--speed", "200", "--duration-s", "3600", "--no-web"), tmp_path / "d.log"
    )
    try:
        wait_until(
            lambda: (
                query(db, "SELECT COUNT(*) AS n FROM outbox")[:1] != []
                and query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] >= 3
            ),
            timeout_s=60,
            what="3 events queued while the broker is down",
        )
        broker.start()
        sub = Subscriber(broker.host, broker.port, f"bedside/{UNIT}/#")
        try:
            assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()
            stored = stored_events(db)
            sub.wait_for(lambda: len(_events_on_wire(sub)) >= len(stored), what="every stored event")
        finally:
            sub.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()
    ids = [e["id"] for e in _events_on_wire(sub)]
    assert ids == [e["id"] for e in stored] and len(set(ids)) == len(ids)
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0
    # The store against the detector run offline on the same night, and the simulator's ground truth:
    # its true movements are in the store as often as the detector finds them offline.
    reference = expected_events(3, 3600.0)
    relative = stored_relative(stored, reference)
    assert same_events(relative, reference), "the store holds what the detector finds"
    truth = truth_movements(3, 3600.0)
    assert truth_found(truth, relative) == truth_found(truth, reference) >= 0.9 * len(truth)
