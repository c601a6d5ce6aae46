"""Helpers for the fault-injection tests: a broker that keeps sessions, a durable subscriber, the oracle.

The oracle for "nothing was lost" is the detector itself run offline (``service.analyze``) on the
same simulated night the daemon is fed: the daemon's stored events must be exactly those, whatever
faults were injected on the way.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hardware.simulated import SimulatedNight, SimulatedSource
from service.analyze import run_detector
from service.config import detector_params_for, load_config
from service.detect.types import MOVEMENT_TYPES, Event
from service.timefmt import parse_iso_utc
from tests.broker import Broker
from tests.daemonutil import start_daemon

#: The wire rate limit is switched off, so every stored event is also published.
NO_LIMIT_TOML = (
    "[mqtt]\nevent_burst = 1000\nevents_per_min = 1000.0\nreconnect_min_s = 1.0\nreconnect_max_s = 2.0\n"
)


class KeepingBroker(Broker):
    """A Mosquitto that keeps sessions and queued QoS 1 messages across its own restarts."""

    def _write_config(self) -> Path:
        conf = super()._write_config()
        text = conf.read_text().replace("persistence false", "persistence true")
        text += f"persistence_location {self.workdir}/\nautosave_interval 1\n"
        conf.write_text(text)
        return conf


@pytest.fixture
def keeping_broker(tmp_path: Path) -> Iterator[KeepingBroker]:
    """A started KeepingBroker on a free port, stopped after the test."""
    b = KeepingBroker(tmp_path / "broker")
    b.workdir.mkdir()
    b.start()
    try:
        yield b
    finally:
        b.stop()


def evening_timezone(hour: int = 21) -> str:
    """A fixed-offset zone (``Etc/GMT-N``) in which it is about ``hour`` o'clock now: tests of
    ``auto`` sessions then run inside the evening window whatever the time of day."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def run_daemon(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``tests.daemonutil.start_daemon`` with the sessions' clock in a zone where it is evening now, so
    the morning rules (a bed exit after 05:00 ends the night) do not cut a test's night short."""
    return start_daemon(args, log, env={"BEDSIDE_SESSIONS__TIMEZONE": evening_timezone(), **(env or {})})


def no_limit_config(tmp_path: Path) -> Path:
    """A config file that turns the wire rate limit off and reconnects quickly."""
    path = tmp_path / "nolimit.toml"
    path.write_text(NO_LIMIT_TOML)
    return path


def run_args(db: Path, port: int, unit: str, seed: int, *extra: str) -> list[str]:
    """``bedside run`` arguments for a simulated night into ``db`` talking to 127.0.0.1:port."""
    return [
        "--db", str(db), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(port),
        "--unit-id", unit, "--seed", str(seed), "--no-web", *extra,
    ]  # fmt: skip


class DurableSubscriber:
    """A QoS 1 subscriber with a persistent session: it gets what was queued while it or the broker
    was away, and reconnects by itself. Keeps every message in arrival order."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"reliability-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("durable subscriber did not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def ids(self, topic: str) -> list[str]:
        """The ``id`` of every message received on ``topic``, duplicates included, in arrival order."""
        with self._cond:
            return [json.loads(p)["id"] for t, p in self.messages if t == topic]

    def unique_ids(self, topic: str) -> list[str]:
        """What a consumer keeps: each ``id`` on ``topic`` once, at its first arrival (QoS 1 is at
        least once, so consumers drop a message whose id they have already seen)."""
        return deduplicated(self.ids(topic))

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out waiting for {what or predicate}")
                self._cond.wait(min(left, 0.2))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def deduplicated(ids: list[str]) -> list[str]:
    """``ids`` with every repeat of an id already seen dropped, in first-arrival order."""
    return list(dict.fromkeys(ids))


@dataclass(frozen=True)
class Expected:
    """One event the offline detector finds: its type and start, seconds after the stream began."""

    event_type: str
    start_s: float


def expected_events(seed: int, duration_s: float, rate_hz: float = 250.0) -> list[Expected]:
    """What the daemon must store for ``--seed seed --duration-s duration_s``: the detector run
    offline over the same simulated night with the default detector settings."""
    night = SimulatedNight(seed=seed, rate_hz=rate_hz, duration_s=duration_s)
    params = detector_params_for(load_config(environ={}), SimulatedSource(night, speed=0.0))
    outs = run_detector(night.render_all(), rate_hz, params)
    return [Expected(o.type, float(o.start_s)) for o in outs if isinstance(o, Event)]


def truth_movements(seed: int, duration_s: float, rate_hz: float = 250.0) -> list[Expected]:
    """The movements the simulator put into the night (its ground truth), by type and start."""
    night = SimulatedNight(seed=seed, rate_hz=rate_hz, duration_s=duration_s)
    return sorted(
        (Expected(t, e.start_s) for t in MOVEMENT_TYPES for e in night.events_of(t)), key=lambda e: e.start_s
    )


def truth_found(truth: list[Expected], found: list[Expected], tol_s: float = 1.0) -> int:
    """How many true movements a found movement (any movement type) starts within ``tol_s`` of,
    each found event used once: the detector's recall, whoever ran it."""
    pool = sorted(e.start_s for e in found if e.event_type in MOVEMENT_TYPES)
    hits = 0
    for t in truth:
        near = [s for s in pool if abs(s - t.start_s) <= tol_s]
        if near:
            pool.remove(min(near, key=lambda s: abs(s - t.start_s)))
            hits += 1
    return hits


def stored_relative(rows: list[dict[str, Any]], reference: list[Expected]) -> list[Expected]:
    """Stored event rows as (type, start in seconds after the stream began), aligned on the
    reference's earliest event (the stream's UTC start is not stored)."""
    if not rows or not reference:
        return []
    first = min(parse_iso_utc(r["start_at"]) for r in rows)
    origin_s = min(e.start_s for e in reference)
    return [
        Expected(r["event_type"], round(origin_s + (parse_iso_utc(r["start_at"]) - first).total_seconds(), 2))
        for r in rows
    ]


def fits_the_detector(rows: list[dict[str, Any]], reference: list[Expected], tol_s: float = 0.02) -> bool:
    """Every stored row is one of the reference events (type and start), none used twice: nothing
    invented, garbled or doubled. Rows may be any part of the night (a run killed early, or one that
    began recording at bed entry), so they are aligned on whichever placement matches best."""
    if not rows:
        return True
    first = min(parse_iso_utc(r["start_at"]) for r in rows)
    rel = [(r["event_type"], (parse_iso_utc(r["start_at"]) - first).total_seconds()) for r in rows]
    first_type = min(rel, key=lambda x: x[1])[0]
    for anchor in (e.start_s for e in reference if e.event_type == first_type):
        pool = [(e.event_type, e.start_s) for e in reference]
        ok = True
        for event_type, t in rel:
            match = next((p for p in pool if p[0] == event_type and abs(p[1] - (anchor + t)) <= tol_s), None)
            if match is None:
                ok = False
                break
            pool.remove(match)
        if ok:
            return True
    return False


def same_events(stored: list[Expected], reference: list[Expected], tol_s: float = 0.02) -> bool:
    """The same events by type and start (within ``tol_s``: the store keeps milliseconds).

    Compared in start order: the live detector, fed 0.1-s blocks, may emit two events of one
    moment in another order than one offline pass does."""
    a_sorted = sorted(stored, key=lambda e: (round(e.start_s, 1), e.event_type))
    b_sorted = sorted(reference, key=lambda e: (round(e.start_s, 1), e.event_type))
    return len(stored) == len(reference) and all(
        a.event_type == b.event_type and abs(a.start_s - b.start_s) <= tol_s
        for a, b in zip(a_sorted, b_sorted, strict=True)
    )


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of the database (``ok`` when sound)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
