"""Broker faults: a ten-minute outage mid-night and a broker restarted every minute for an hour.

Every event the detector finds must reach a real subscriber once the broker is back, in the order
it was stored, and the store must hold exactly what the detector finds offline on the same night,
which finds the simulator's true movements as often as the detector does offline. QoS 1 is at
least once: a message in flight when the broker died may arrive twice, so the subscriber drops
repeats by id, as consumers must; what it keeps must equal the store, and the repeats are counted
and bounded. (The broker unreachable at start: tests/test_daemon_e2e.py
``test_events_wait_in_the_outbox_while_the_broker_is_down_and_arrive_when_it_is_up``.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemonutil import query, stored_events
from tests.mqttutil import wait_until
from tests.reliability.conftest import (
    DurableSubscriber,
    KeepingBroker,
    expected_events,
    no_limit_config,
    run_args,
    run_daemon,
    same_events,
    stored_relative,
    truth_found,
    truth_movements,
)

UNIT = "rel-broker"
EVENT_TOPIC = f"bedside/{UNIT}/event"


@dataclass(frozen=True)
class Delivery:
    """What reached the subscriber: stored events, raw messages on the wire, and repeats of an id."""

    events: int
    wire: int
    duplicates: int
    truth: int
    truth_found: int


def _check_delivery(db: Path, sub: DurableSubscriber, seed: int, duration_s: float) -> Delivery:
    """Store == offline detector; the simulator's true movements found in the store as often as the
    detector finds them offline; the subscriber, dropping repeats by id as a consumer does, holds
    exactly the stored ids in store order."""
    stored = stored_events(db)
    try:
        sub.wait_for(lambda: set(sub.ids(EVENT_TOPIC)) >= {e["id"] for e in stored}, timeout_s=90)
    except TimeoutError:
        missing = [e for e in stored if e["id"] not in set(sub.ids(EVENT_TOPIC))]
        queued = query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        first = [(e["event_type"], e["start_at"]) for e in missing[:3]]
        raise AssertionError(
            f"{len(missing)} of {len(stored)} stored events never reached the subscriber "
            f"({queued} still in the outbox; first missing: {first})"
        ) from None
    reference = expected_events(seed, duration_s)
    relative = stored_relative(stored, reference)
    assert same_events(relative, reference), "the store holds what was detected"
    truth = truth_movements(seed, duration_s)
    offline, in_store = truth_found(truth, reference), truth_found(truth, relative)
    assert in_store == offline >= 0.9 * len(truth), (
        f"true movements found: {in_store} in the store, {offline} offline, of {len(truth)}"
    )
    time.sleep(1.0)  # a late repeat of an id would still count
    wire = sub.ids(EVENT_TOPIC)
    assert sub.unique_ids(EVENT_TOPIC) == [e["id"] for e in stored], (
        "after dropping repeats by id, the subscriber holds the stored events exactly, in store order"
    )
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0, "every row acknowledged"
    assert len({e["id"] for e in stored}) == len(stored), "no id stored twice"
    return Delivery(len(stored), len(wire), len(wire) - len(set(wire)), len(truth), in_store)


@pytest.mark.slow
def test_broker_down_ten_simulated_minutes_mid_night_loses_nothing(
    keeping_broker: KeepingBroker, tmp_path: Path
) -> None:
    seed, duration_s, speed = 4, 2400.0, 120.0
    db = tmp_path / "b.sqlite3"
    sub = DurableSubscriber(keeping_broker.host, keeping_broker.port, EVENT_TOPIC)
    args = run_args(
        db, keeping_broker.port, UNIT, seed, "--speed", str(speed), "--duration-s", str(duration_s)
    )
    proc = run_daemon([*args, "--config", str(no_limit_config(tmp_path))], tmp_path / "d.log")
    try:
        sub.wait_for(lambda: len(sub.ids(EVENT_TOPIC)) >= 3, timeout_s=60, what="first events")
        keeping_broker.stop()
        before = len(stored_events(db))
        time.sleep(600.0 / speed)  # ten simulated minutes without a broker
        during = len(stored_events(db)) - before
        queued = query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        keeping_broker.start()
        assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()
        got = _check_delivery(db, sub, seed, duration_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
    assert during >= 1 and queued >= 1, "events were detected and queued during the outage"
    # QoS 1 is at least once: a message the broker took just before it died, whose PUBACK never
    # came back, is sent again (the contract: consumers drop duplicates by id). One outage: one
    # message in flight at most, as a rule.
    assert got.duplicates <= 3, f"{got.duplicates} repeated deliveries"
    log = (tmp_path / "d.log").read_text()
    assert "connection lost" in log and "Traceback" not in log
    print(
        f"outage: {got.events} events, {during} during the outage, 0 lost, {got.wire} messages, "
        f"{got.duplicates} repeated; true movements found {got.truth_found}/{got.truth}"
    )


#: One simulated minute is this many real seconds at the speed below: the daemon (and the
#: subscriber) reconnect 1 s after losing the broker (paho's shortest delay), so a simulated minute
#: must last longer than that in real time for the daemon to be connected between two restarts.
MINUTE_REAL_S = 1.25


@pytest.mark.slow
def test_broker_restarted_every_simulated_minute_for_an_hour_loses_nothing(
    keeping_broker: KeepingBroker, tmp_path: Path
) -> None:
    seed, duration_s, restarts_wanted = 5, 3900.0, 60
    speed = 60.0 / MINUTE_REAL_S  # 48x
    db = tmp_path / "b.sqlite3"
    log_path = tmp_path / "d.log"
    sub = DurableSubscriber(keeping_broker.host, keeping_broker.port, EVENT_TOPIC)
    args = run_args(
        db, keeping_broker.port, UNIT, seed, "--speed", str(speed), "--duration-s", str(duration_s)
    )
    proc = run_daemon([*args, "--config", str(no_limit_config(tmp_path))], log_path)
    restarts, down_s, connected_between = 0, 0.0, 0
    try:
        wait_until(lambda: len(stored_events(db)) >= 1, timeout_s=60, what="the night under way")
        hour_began = time.monotonic()
        connects = log_path.read_text().count("MQTT: connected to")
        while proc.poll() is None and restarts < restarts_wanted:
            time.sleep(max(0.0, hour_began + (restarts + 1) * MINUTE_REAL_S - time.monotonic()))
            now_connects = log_path.read_text().count("MQTT: connected to")
            connected_between += now_connects > connects
            connects = now_connects
            stopped = time.monotonic()
            keeping_broker.stop()
            keeping_broker.start()
            down_s = max(down_s, time.monotonic() - stopped)
            restarts += 1
        hour_s = time.monotonic() - hour_began
        assert proc.wait(60) == 0, log_path.read_text()
        got = _check_delivery(db, sub, seed, duration_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
    assert restarts == restarts_wanted, f"the night ended after {restarts} restarts"
    assert hour_s * speed <= 3600.0 * 1.05, f"the restarts took {hour_s * speed / 60:.0f} simulated minutes"
    # The daemon was back on the broker between (nearly) every two restarts, so each restart cut a
    # live session, not a link that never came back.
    assert connected_between >= 0.9 * restarts, f"back between {connected_between} of {restarts} restarts"
    # A repeat needs a message in flight at the moment the broker died: rare, one at a time.
    assert got.duplicates <= max(3, got.events // 20), f"{got.duplicates} repeats of {got.events} events"
    log = log_path.read_text()
    assert "Traceback" not in log
    print(
        f"restarts: {restarts} in {hour_s:.0f} s real ({hour_s * speed / 60:.0f} simulated min), longest "
        f"down {down_s:.2f} s real; daemon reconnected between {connected_between}; {got.events} events, "
        f"0 lost, {got.wire} messages, {got.duplicates} repeated; true movements found "
        f"{got.truth_found}/{got.truth}"
    )
