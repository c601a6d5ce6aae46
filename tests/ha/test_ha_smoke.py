"""Smoke test of the HA harness: hand-written MQTT discovery for a binary_sensor, a sensor and an
event entity on one device, checked in a real Home Assistant through a real Mosquitto.

HA starts once per module (about 3 s); the tests share its device and follow one another's
states only through conditions they wait on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker import Broker
from tests.ha.harness import HomeAssistant, broker_and_home_assistant
from tests.mqttutil import wait_until

pytestmark = pytest.mark.slow

NODE = "bedside_smoke"
AVAILABILITY = f"{NODE}/availability"
PRESENCE = f"{NODE}/presence"
RATE = f"{NODE}/rate"
MOVEMENT = f"{NODE}/movement"
DEVICE = {
    "identifiers": [NODE],
    "name": "Bedside smoke",
    "manufacturer": "Bedside",
    "model": "harness test",
    "sw_version": "0.1.0",
}
CONFIGS: dict[str, dict[str, Any]] = {
    f"homeassistant/binary_sensor/{NODE}/presence/config": {
        "name": "In bed",
        "unique_id": f"{NODE}_presence",
        "device_class": "occupancy",
        "state_topic": PRESENCE,
        "payload_on": "ON",
        "payload_off": "OFF",
    },
    f"homeassistant/sensor/{NODE}/rate/config": {
        "name": "Movement rate",
        "unique_id": f"{NODE}_rate",
        "state_topic": RATE,
        "unit_of_measurement": "bpm",
        "state_class": "measurement",
    },
    f"homeassistant/event/{NODE}/movement/config": {
        "name": "Movement",
        "unique_id": f"{NODE}_movement",
        "state_topic": MOVEMENT,
        "event_types": ["awakening", "jerk"],
    },
}
BAD_TOPIC = f"homeassistant/sensor/{NODE}/bad/config"


class Publisher:
    """A paho 2 client that publishes with QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: str | dict[str, Any], retain: bool = False) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish(topic, text, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, HomeAssistant]]:
    with broker_and_home_assistant(tmp_path_factory.mktemp("ha-smoke")) as (broker, ha):
        print(f"HA start timings (s): {ha.timings}")
        yield broker, ha


@pytest.fixture(scope="module")
def ha(stack: tuple[Broker, HomeAssistant]) -> HomeAssistant:
    return stack[1]


@pytest.fixture(scope="module")
def publisher(stack: tuple[Broker, HomeAssistant]) -> Iterator[Publisher]:
    pub = Publisher(stack[0])
    try:
        yield pub
    finally:
        pub.close()


@pytest.fixture(scope="module")
def entity_ids(ha: HomeAssistant, publisher: Publisher) -> dict[str, str]:
    """Publish the three retained discovery configs; unique_id -> entity_id once HA registered all."""
    for topic, config in CONFIGS.items():
        payload = {
            **config,
            "availability_topic": AVAILABILITY,
            "device": DEVICE,
            "origin": {"name": "tests"},
        }
        publisher.publish(topic, payload, retain=True)
    wanted = {c["unique_id"] for c in CONFIGS.values()}
    found: dict[str, str] = {}

    def registered() -> bool:
        found.update({e["unique_id"]: e["entity_id"] for e in ha.entities() if e["unique_id"] in wanted})
        return set(found) == wanted

    wait_until(registered, 30, "the three discovered entities in HA's entity registry", poll_s=0.1)
    return found


def test_discovery_creates_one_device_with_three_entities(
    ha: HomeAssistant, entity_ids: dict[str, str]
) -> None:
    devices = [d for d in ha.devices() if ["mqtt", NODE] in d["identifiers"]]
    assert len(devices) == 1, devices
    device = devices[0]
    assert (device["name"], device["manufacturer"], device["model"], device["sw_version"]) == (
        "Bedside smoke",
        "Bedside",
        "harness test",
        "0.1.0",
    )
    registry = {e["entity_id"]: e for e in ha.entities()}
    for unique_id, entity_id in entity_ids.items():
        assert registry[entity_id]["device_id"] == device["id"], unique_id
        assert registry[entity_id]["platform"] == "mqtt"
    assert entity_ids[f"{NODE}_presence"].startswith("binary_sensor.")
    assert entity_ids[f"{NODE}_rate"].startswith("sensor.")
    assert entity_ids[f"{NODE}_movement"].startswith("event.")


def test_states_follow_availability_and_payloads(
    ha: HomeAssistant, publisher: Publisher, entity_ids: dict[str, str]
) -> None:
    presence, rate, movement = (entity_ids[f"{NODE}_{k}"] for k in ("presence", "rate", "movement"))
    publisher.publish(AVAILABILITY, "online", retain=True)
    publisher.publish(PRESENCE, "ON", retain=True)
    publisher.publish(RATE, "12", retain=True)

    state = ha.wait_for_state(presence, "on")
    assert state["attributes"]["device_class"] == "occupancy"
    assert state["attributes"]["friendly_name"] == "Bedside smoke In bed"
    state = ha.wait_for_state(rate, "12")
    assert state["attributes"]["unit_of_measurement"] == "bpm"
    assert state["attributes"]["state_class"] == "measurement"
    state = ha.wait_for_state(movement, lambda s: s["state"] != "unavailable")
    assert state["state"] == "unknown"  # available, no event yet
    assert state["attributes"]["event_types"] == ["awakening", "jerk"]

    publisher.publish(PRESENCE, "OFF", retain=True)
    publisher.publish(RATE, "3.5", retain=True)
    ha.wait_for_state(presence, "off")
    ha.wait_for_state(rate, "3.5")


def _new_event(event_type: str, previous: str | None) -> Callable[[dict[str, Any]], bool]:
    """A state predicate: an event of ``event_type`` newer than the state ``previous``."""

    def check(state: dict[str, Any]) -> bool:
        return bool(state["attributes"].get("event_type") == event_type and state["state"] != previous)

    return check


def test_event_entity_records_event_type(
    ha: HomeAssistant, publisher: Publisher, entity_ids: dict[str, str]
) -> None:
    movement = entity_ids[f"{NODE}_movement"]
    publisher.publish(AVAILABILITY, "online", retain=True)
    ha.wait_for_subscription(MOVEMENT)  # events must not be retained: HA ignores replayed ones
    for event_type in ("jerk", "awakening"):
        previous = (ha.state(movement) or {}).get("state")
        publisher.publish(MOVEMENT, {"event_type": event_type, "strength": 0.4})
        state = ha.wait_for_state(movement, _new_event(event_type, previous))
        assert state["attributes"]["strength"] == 0.4
        datetime.fromisoformat(state["state"])  # an event entity's state is the last event's time


def test_availability_offline_makes_every_entity_unavailable(
    ha: HomeAssistant, publisher: Publisher, entity_ids: dict[str, str]
) -> None:
    publisher.publish(AVAILABILITY, "offline", retain=True)
    for entity_id in entity_ids.values():
        ha.wait_for_state(entity_id, "unavailable")
    publisher.publish(AVAILABILITY, "online", retain=True)
    for entity_id in entity_ids.values():
        ha.wait_for_state(entity_id, lambda s: s["state"] != "unavailable")


def test_log_has_no_discovery_errors_nor_setup_failures(
    ha: HomeAssistant, entity_ids: dict[str, str]
) -> None:
    assert [r.text for r in ha.setup_failures()] == []
    problems = [r.text for r in ha.mqtt_problems() if BAD_TOPIC not in r.text]
    assert problems == []
    assert [r.text for r in ha.discovery_errors() if BAD_TOPIC not in r.text] == []


def test_harness_reports_a_rejected_discovery_payload(ha: HomeAssistant, publisher: Publisher) -> None:
    publisher.publish(BAD_TOPIC, {"name": "Bad", "state_topic": f"{NODE}/bad", "state_class": "nonsense"})
    wait_until(
        lambda: any(BAD_TOPIC in r.text for r in ha.discovery_errors()),
        20,
        "HA to log the rejected discovery payload",
        poll_s=0.1,
    )
    (record,) = [r for r in ha.discovery_errors() if BAD_TOPIC in r.text]
    assert record.level == "ERROR"
    assert "when processing MQTT discovery message" in record.message


def test_missing_venv_skips_locally_and_errors_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.ha import harness

    monkeypatch.setenv("HA_VENV", str(tmp_path / "no-such-venv"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"scripts/ha-venv\.sh"):
        harness.require_hass()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RuntimeError, match="CI is set"):
        harness.require_hass()
