"""The documented blueprint in a real Home Assistant: an awakening at night turns a light on warm and dim.

The light is a real MQTT light (JSON schema) discovered by HA; the test reads the command HA sends it.
The event is built by the same function the daemon uses for its ``event`` payloads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from service.detect.types import Event
from service.payloads import event_row
from service.topics import Topics
from tests.broker import Broker
from tests.ha.harness import HomeAssistant, broker_and_home_assistant
from tests.mqttutil import Subscriber, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BLUEPRINT = REPO / "docs" / "blueprints" / "bedside_warm_light_on_awakening.yaml"
UNIT = "lamp-unit"
TOPICS = Topics("bedside", UNIT)
SLEEP_ENTITY = "event.bedside_lamp_unit_sleep"
LAMP_SET = "test/lamp/set"

AUTOMATION = f"""
automation:
  - id: bedside_warm_light
    alias: Bedside warm light
    use_blueprint:
      path: bedside/{BLUEPRINT.name}
      input:
        sleep_event: {SLEEP_ENTITY}
        light_target:
          entity_id: light.test_lamp
        night_starts: "00:00:00"
        night_ends: "23:59:59"
"""


def _publish(broker: Broker, topic: str, payload: dict[str, object] | str, retain: bool = False) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    publish.single(topic, text, qos=1, retain=retain, hostname=broker.host, port=broker.port)


def _event(kind: str) -> dict[str, object]:
    ev = Event(seq=1, type=kind, start_s=0.0, end_s=30.0, intensity=0.0, profile="aasm")
    row = event_row(
        ev, event_id=uuid.uuid4().hex, night_id="n1", stream_start=datetime.now(UTC), cause_id=None
    )
    return {**row, "unit_id": UNIT}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, HomeAssistant]]:
    files = {f"blueprints/automation/bedside/{BLUEPRINT.name}": BLUEPRINT.read_text()}
    with broker_and_home_assistant(
        tmp_path_factory.mktemp("ha-light"), extra_yaml=AUTOMATION, files=files
    ) as pair:
        yield pair


def test_awakening_turns_the_light_on_warm_and_dim_and_a_jerk_does_not(
    stack: tuple[Broker, HomeAssistant],
) -> None:
    broker, ha = stack
    from service import __version__
    from service.discovery import discovery_json

    for topic, text in discovery_json(TOPICS, __version__):
        _publish(broker, topic, text, retain=True)
    _publish(
        broker,
        "homeassistant/light/test_lamp/config",
        {"name": "Test lamp", "unique_id": "test_lamp", "object_id": "test_lamp", "schema": "json",
         "command_topic": LAMP_SET, "state_topic": "test/lamp/state", "brightness": True,
         "color_mode": True, "supported_color_modes": ["color_temp"]},
        retain=True,
    )  # fmt: skip
    _publish(broker, TOPICS.availability, "online", retain=True)
    ha.wait_for_state("light.test_lamp", lambda s: s["state"] != "unavailable", timeout_s=30)
    ha.wait_for_state(SLEEP_ENTITY, lambda s: s["state"] != "unavailable", timeout_s=30)
    ha.wait_for_state("automation.bedside_warm_light", "on", timeout_s=30)
    ha.wait_for_subscription(TOPICS.event)
    lamp = Subscriber(broker.host, broker.port, LAMP_SET)
    try:
        _publish(broker, TOPICS.event, _event("jerk"))
        _publish(broker, TOPICS.event, _event("bed_entry"))
        ha.wait_for_state(
            SLEEP_ENTITY, lambda s: s["attributes"].get("event_type") == "bed_entry", timeout_s=20
        )
        _publish(broker, TOPICS.event, _event("awakening"))
        lamp.wait_for(lambda: bool(lamp.messages), timeout_s=30, what="a command to the lamp")
        command = json.loads(lamp.messages[0].payload)
        wait_until(lambda: len(lamp.messages) >= 1, 1)
    finally:
        lamp.close()
    assert len(lamp.messages) == 1, "only the awakening turned the light on"
    assert command["state"] == "ON"
    assert abs(command["color_temp"] - 1_000_000 / 2200) <= 2, command
    assert abs(command["brightness"] - 0.10 * 255) <= 2, command
    assert command["transition"] == 3
    errors = ha.log_records("ERROR")
    assert not [r for r in errors if "blueprint" in r.text.lower() or "automation" in r.text.lower()], errors
