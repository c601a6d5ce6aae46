"""An adversary on the MQTT bus, against the real daemon process and a real Mosquitto.

Commands toggled back to back, retained commands met again at every reconnect, JSON with a lone
UTF-16 surrogate, and a flood of Home Assistant ``online`` announcements (issue 18). Each test
fails on the code before its fix.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from service.discovery import discovery_messages
from service.mqtt import REDISCOVERY_INTERVAL_S
from service.topics import Topics
from tests.broker import Broker
from tests.daemonutil import query, start_daemon, stop_daemon
from tests.mqttutil import Subscriber, wait_until

UNIT = "adv-unit"
ROOT = f"bedside/{UNIT}"


def _args(db: Path, broker: Broker, *extra: str) -> list[str]:
    return [
        "--db", str(db), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
        "--unit-id", UNIT, "--seed", "2", "--no-web", *extra,
    ]  # fmt: skip


class Publisher:
    """One paho connection publishing QoS 1 in order (MQTT keeps one connection's order per topic)."""

    def __init__(self, broker: Broker, client_id: str = "") -> None:
        self._connected = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("test publisher did not connect")
        self._sent: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False, qos: int = 1) -> None:
        self._sent.append(self.client.publish(topic, payload, qos=qos, retain=retain))

    def wait_all(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        for info in self._sent:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._sent = []

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    p = Publisher(broker)
    try:
        yield p
    finally:
        p.close()


def _state(sub: Subscriber) -> dict[str, object]:
    states = sub.on(f"{ROOT}/state")
    return json.loads(states[-1].payload) if states else {}


def _open_nights(db: Path) -> list[str]:
    return [r["id"] for r in query(db, "SELECT id FROM nights WHERE ended_at IS NULL")]


def _online(sub: Subscriber) -> None:
    sub.wait_for(lambda: [m.text for m in sub.on(f"{ROOT}/availability")][-1:] == ["online"], what="online")


def _wait_for_marks(db: Path, count: int) -> None:
    wait_until(lambda: len(query(db, "SELECT id FROM annotations")) == count, what=f"{count} mark(s)")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_two_hundred_stop_start_toggles_leave_one_night_open_and_recording(
    broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    """Finding 1: a ``stop`` then ``start`` back to back used to end the night silently (the start was
    "already being tracked" while the stop was still being applied) and later starts were ignored."""
    db, log_path = tmp_path / "b.sqlite3", tmp_path / "d.log"
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/#")
    proc = start_daemon(_args(db, broker, "--speed", "30"), log_path)
    toggles = 200
    try:
        _online(sub)
        wait_until(lambda: len(_open_nights(db)) == 1, what="the run's night")
        sub.wait_for(lambda: _state(sub).get("tracking") is True, what="tracking")
        for _ in range(toggles):
            publisher.publish(f"{ROOT}/cmd/night", "stop")
            publisher.publish(f"{ROOT}/cmd/night", "start")
        publisher.wait_all()
        wait_until(
            lambda: log_path.read_text().count("MQTT command: NightCommand") >= 2 * toggles,
            timeout_s=120, what="every command applied",
        )  # fmt: skip
        wait_until(
            lambda: len(query(db, "SELECT id FROM nights WHERE ended_at IS NOT NULL")) >= toggles
            and len(_open_nights(db)) == 1,
            timeout_s=60, what="every stop ended its night and the last start opened one",
        )  # fmt: skip
        last = _open_nights(db)[0]
        sub.wait_for(
            lambda: _state(sub).get("tracking") is True and _state(sub).get("night_id") == last,
            timeout_s=30, what="the retained state tracking the open night",
        )  # fmt: skip
        wait_until(
            lambda: bool(query(db, "SELECT id FROM events WHERE night_id = ?", last)),
            timeout_s=90, what="events still stored on the open night",
        )  # fmt: skip
        assert proc.poll() is None
    finally:
        assert stop_daemon(proc) == 0
        sub.close()
    nights = query(db, "SELECT id, ended_at FROM nights ORDER BY started_at, rowid")
    assert len(nights) == toggles + 1, "each stop ended one night, each start opened one"
    log = log_path.read_text()
    ended = Counter(re.findall(r"night (\S+) ended \(command\)", log))
    assert len(ended) == toggles and max(ended.values()) == 1, "each night ended once"
    # A night's summary is published when it ends, and again for an event the detector decides after
    # the stop but inside the night (an awakening, a movement it needed look-ahead for).
    late = Counter(re.findall(r"found after night (\S+) ended, inside it", log))
    summaries = Counter(json.loads(m.payload)["night_id"] for m in sub.on(f"{ROOT}/night"))
    assert all(n <= 1 + late[night] for night, n in summaries.items()), "no summary rewritten by a toggle"
    assert "already being tracked" not in log and "Traceback" not in log


@pytest.mark.slow
def test_a_retained_command_is_not_applied_again_at_a_reconnect(
    broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    """Finding 4: a retained ``cmd/night stop`` (a switch set up with ``retain: true``) ended a fresh
    night each time the daemon reconnected. A live command is applied; a retained one is ignored."""
    db, log_path = tmp_path / "b.sqlite3", tmp_path / "d.log"
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/#")
    proc = start_daemon(_args(db, broker, "--speed", "20"), log_path)

    def connects() -> int:
        return log_path.read_text().count("MQTT: connected")

    def take_over() -> None:
        """Connect with the daemon's client id: the broker drops the daemon, which reconnects."""
        before = connects()
        intruder = Publisher(broker, client_id=f"bedside-{UNIT}")
        intruder.close()
        wait_until(lambda: connects() > before, timeout_s=30, what="the daemon reconnected")

    try:
        _online(sub)
        wait_until(lambda: len(_open_nights(db)) == 1, what="the run's night")
        publisher.publish(f"{ROOT}/cmd/night", "stop", retain=True)  # live: applied
        publisher.wait_all()
        wait_until(lambda: not _open_nights(db), what="the live stop applied")
        publisher.publish(f"{ROOT}/cmd/night", "start")
        publisher.wait_all()
        wait_until(lambda: len(_open_nights(db)) == 1, what="the start applied")
        second = _open_nights(db)[0]
        for n in range(2):
            take_over()
            # Messages on one connection arrive in order: the retained stop (sent at the subscribe)
            # is handled before this mark.
            publisher.publish(f"{ROOT}/cmd/mark", json.dumps({"kind": "spasm", "note": f"after {n}"}))
            publisher.wait_all()
            _wait_for_marks(db, n + 1)
        assert _open_nights(db) == [second], "the reconnects did not end the night"
        assert len(query(db, "SELECT id FROM nights")) == 2
        sub.wait_for(lambda: _state(sub).get("night_id") == second, what="state names the night")
    finally:
        assert stop_daemon(proc) == 0
        sub.close()
    log = log_path.read_text()
    assert log.count("retained message on bedside/adv-unit/cmd/night ignored") == 1, "logged once per topic"


@pytest.mark.slow
def test_a_lone_surrogate_in_a_command_is_replaced_or_refused_never_a_crash(
    broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    """Finding 8: ``"note": "\\ud800"`` (valid JSON, not encodable text) ended its task with a traceback
    and the annotation was lost. Now the note is kept with U+FFFD; other fields refuse it."""
    db, log_path = tmp_path / "b.sqlite3", tmp_path / "d.log"
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/availability")
    proc = start_daemon(_args(db, broker, "--speed", "20"), log_path)
    try:
        _online(sub)
        for name, payload in [
            ("mark", r'{"kind": "spasm", "note": "left \ud800 leg"}'),
            ("mark", r'{"kind": "sp\udfffasm"}'),
            ("night", r'{"action": "st\ud800op"}'),
            ("profile", r'{"profile": "\udc00aasm"}'),
            ("mark", r'{"kind": "spasm", "note": "\ud83d\ude00 pair"}'),
        ]:
            publisher.publish(f"{ROOT}/cmd/{name}", payload)
        publisher.wait_all()
        wait_until(lambda: len(query(db, "SELECT id FROM annotations")) == 2, what="both good marks")
        assert len(_open_nights(db)) == 1, "the refused stop did nothing"
    finally:
        assert stop_daemon(proc) == 0
        sub.close()
    notes = [r["note"] for r in query(db, "SELECT note FROM annotations ORDER BY rowid")]
    assert notes == ["left \ufffd leg", "\U0001f600 pair"]
    log = log_path.read_text()
    assert "Traceback" not in log and "exception" not in log.lower()
    assert log.count("MQTT command on cmd/") == 3, "the kind, action and profile are refused with a line each"


@pytest.mark.slow
def test_a_flood_of_home_assistant_online_is_folded_into_few_discovery_republishes(
    broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    """Finding 10: each ``homeassistant/status online`` republished every discovery config; 12,000 of
    them logged 9,794 lines, grew the daemon by 140 MB for good and wrapped paho's message ids."""
    db, log_path = tmp_path / "b.sqlite3", tmp_path / "d.log"
    configs = {t for t, _ in discovery_messages(Topics("bedside", UNIT), "x")}
    ha = Subscriber(broker.host, broker.port, "homeassistant/+/+/+/config")
    events = Subscriber(broker.host, broker.port, f"{ROOT}/event")
    proc = start_daemon(_args(db, broker, "--speed", "30"), log_path)
    flood = 5000
    try:
        ha.wait_for(lambda: {m.topic for m in ha.messages} >= configs, what="first discovery")
        events.wait_for(lambda: len(events.messages) >= 1, timeout_s=60, what="a first event")
        rss_before = _rss_mib(proc.pid)
        log_before = len(log_path.read_text().splitlines())
        seen_before, events_before = len(ha.messages), len(events.messages)
        began = time.monotonic()
        for _ in range(flood):
            publisher.publish("homeassistant/status", "online")
        publisher.wait_all(timeout_s=120)
        flooded_at = len(ha.messages)

        def full_after_flood() -> bool:
            return {m.topic for m in ha.messages[flooded_at:]} >= configs

        ha.wait_for(full_after_flood, timeout_s=REDISCOVERY_INTERVAL_S + 20, what="full discovery after it")
        elapsed_s = time.monotonic() - began
        events.wait_for(lambda: len(events.messages) > events_before, timeout_s=60, what="events go on")
        rss_after = _rss_mib(proc.pid)
        assert proc.poll() is None
    finally:
        assert stop_daemon(proc) == 0
        ha.close()
        events.close()
    republishes = (len(ha.messages) - seen_before) / len(configs)
    allowed = elapsed_s / REDISCOVERY_INTERVAL_S + 2
    print(f"\n{flood} 'online' in {elapsed_s:.1f} s: {republishes:.1f} discovery republishes "
          f"(allowed {allowed:.1f}); RSS {rss_before:.1f} -> {rss_after:.1f} MiB")  # fmt: skip
    assert republishes <= allowed
    lines = log_path.read_text().splitlines()[log_before:]
    ha_lines = [line for line in lines if "Home Assistant" in line]
    assert len(ha_lines) <= allowed, "at most one line per republish"
    assert rss_after - rss_before < 10.0, "memory stays bounded"
