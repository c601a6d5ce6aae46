"""Our daemon against a real Home Assistant: the device and every entity appear from discovery
and follow the daemon's state and events; HA logs no discovery error or MQTT warning."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.discovery import discovery_messages
from service.topics import Topics
from tests.broker import Broker
from tests.daemonutil import start_daemon, stop_daemon
from tests.ha.harness import HomeAssistant, broker_and_home_assistant
from tests.mqttutil import wait_until

pytestmark = pytest.mark.slow

UNIT = "ha-unit"
TOPICS = Topics("bedside", UNIT)
EXPECTED = {p["unique_id"]: topic.split("/")[1] for topic, p in discovery_messages(TOPICS, "test")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, HomeAssistant, Path]]:
    workdir = tmp_path_factory.mktemp("ha-bedside")
    with broker_and_home_assistant(workdir) as (broker, ha):
        yield broker, ha, workdir


@pytest.fixture(scope="module")
def daemon(stack: tuple[Broker, HomeAssistant, Path]) -> Iterator[subprocess.Popen[bytes]]:
    broker, _, workdir = stack
    proc = start_daemon(
        ["--db", str(workdir / "b.sqlite3"), "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
         "--unit-id", UNIT, "--seed", "6", "--speed", "30", "--duration-s", "7200", "--no-web"],
        workdir / "daemon.log",
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_daemon(proc)


@pytest.fixture(scope="module")
def entity_ids(stack: tuple[Broker, HomeAssistant, Path], daemon: subprocess.Popen[bytes]) -> dict[str, str]:
    ha = stack[1]
    found: dict[str, str] = {}

    def registered() -> bool:
        found.update({e["unique_id"]: e["entity_id"] for e in ha.entities() if e["unique_id"] in EXPECTED})
        return set(found) == set(EXPECTED)

    wait_until(registered, 60, "every Bedside entity in HA's registry", poll_s=0.2)
    return found


def test_one_device_carries_every_entity_of_the_contract(
    stack: tuple[Broker, HomeAssistant, Path], entity_ids: dict[str, str]
) -> None:
    ha = stack[1]
    devices = [d for d in ha.devices() if ["mqtt", "bedside_ha_unit"] in d["identifiers"]]
    assert len(devices) == 1
    assert devices[0]["model"] == "Bedside movement monitor" and devices[0]["sw_version"]
    registry = {e["entity_id"]: e for e in ha.entities()}
    for unique_id, entity_id in entity_ids.items():
        assert registry[entity_id]["device_id"] == devices[0]["id"], unique_id
        assert entity_id.split(".")[0] == EXPECTED[unique_id]
    assert not ha.discovery_errors(), [r.message for r in ha.discovery_errors()]


def test_states_follow_the_daemon(
    stack: tuple[Broker, HomeAssistant, Path], entity_ids: dict[str, str]
) -> None:
    ha = stack[1]
    in_bed = entity_ids["bedside_ha_unit_in_bed"]
    ha.wait_for_state(in_bed, lambda s: s["state"] in ("on", "off"), timeout_s=60)
    movements = entity_ids["bedside_ha_unit_movements_tonight"]
    ha.wait_for_state(movements, lambda s: s["state"].isdigit() and int(s["state"]) > 0, timeout_s=120)
    problem = entity_ids["bedside_ha_unit_sensor_problem"]
    ha.wait_for_state(problem, lambda s: s["state"] in ("on", "off"), timeout_s=30)
    profile = entity_ids["bedside_ha_unit_profile"]
    ha.wait_for_state(profile, "aasm", timeout_s=30)
    tracking = entity_ids["bedside_ha_unit_tracking"]
    ha.wait_for_state(tracking, "on", timeout_s=30)
    notice = entity_ids["bedside_ha_unit_trend_notice"]  # no history yet: no notice
    ha.wait_for_state(notice, "off", timeout_s=30)


def test_movement_events_reach_the_event_entity_without_warnings(
    stack: tuple[Broker, HomeAssistant, Path], entity_ids: dict[str, str]
) -> None:
    ha = stack[1]
    movement = entity_ids["bedside_ha_unit_movement"]
    ha.wait_for_state(movement, lambda s: s["state"] not in ("unknown", "unavailable"), timeout_s=120)
    attrs = (ha.state(movement) or {})["attributes"]
    assert attrs["event_type"] in (
        "jerk",
        "limb_movement",
        "spasm",
        "large_movement",
        "plm_series",
        "restless",
    )
    assert "id" in attrs and "intensity" in attrs
    assert not ha.mqtt_problems(), [r.message for r in ha.mqtt_problems()]


def test_clean_stop_makes_every_entity_unavailable(
    stack: tuple[Broker, HomeAssistant, Path], daemon: subprocess.Popen[bytes], entity_ids: dict[str, str]
) -> None:
    ha = stack[1]
    assert stop_daemon(daemon) == 0
    for entity_id in entity_ids.values():
        ha.wait_for_state(entity_id, "unavailable", timeout_s=30)
