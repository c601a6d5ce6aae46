"""Home Assistant MQTT discovery payloads, as pure functions of the unit's topics and version.

One device per unit. Topics: ``<prefix>/<component>/<node_id>/<object_id>/config`` with
``node_id = bedside_<unit>``; every entity has a ``unique_id``, the shared ``device`` block and
the availability topic. Event entities read the one ``event`` topic and keep only their own
event types (a value template renders other types as empty, which Home Assistant ignores).
"""

from __future__ import annotations

import json
from typing import Any, Final

from service.detect.types import MOVEMENT_TYPES, SERIES_TYPES
from service.topics import Topics

MOVEMENT_EVENT_TYPES: Final = (*MOVEMENT_TYPES, *SERIES_TYPES)
SLEEP_EVENT_TYPES: Final = ("awakening", "fell_asleep", "bed_entry", "bed_exit")
PROFILES: Final = ("aasm", "wasm2016")


def node_id(topics: Topics) -> str:
    """Discovery node id of the unit: ``bedside_<unit>`` with '-' folded to '_'."""
    return f"bedside_{topics.unit_id}".replace("-", "_")


def device_name(unit_id: str) -> str:
    """The device's name in Home Assistant, which prefixes every entity's name with it: "Bedside"
    for the default unit (never "Bedside bedside"), "Bedside <unit>" for any other."""
    return "Bedside" if unit_id.strip().lower() == "bedside" else f"Bedside {unit_id}"


def _device(topics: Topics, sw_version: str) -> dict[str, Any]:
    return {
        "identifiers": [node_id(topics)],
        "name": device_name(topics.unit_id),
        "manufacturer": "Bedside",
        "model": "Bedside movement monitor",
        "sw_version": sw_version,
    }


def _event_filter(types: tuple[str, ...]) -> str:
    names = ", ".join(f"'{t}'" for t in types)
    return f"{{% if value_json.event_type in [{names}] %}}{{{{ value }}}}{{% endif %}}"


def discovery_messages(topics: Topics, sw_version: str) -> list[tuple[str, dict[str, Any]]]:
    """Every ``(config topic, payload)`` to publish retained for this unit."""
    node = node_id(topics)
    device = _device(topics, sw_version)
    state = topics.state

    def entity(component: str, object_id: str, name: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        payload = {
            "name": name,
            "unique_id": f"{node}_{object_id}",
            "object_id": f"{node}_{object_id}",
            "device": device,
            "availability_topic": topics.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            **fields,
        }
        return f"{topics.discovery_prefix}/{component}/{node}/{object_id}/config", payload

    def flag(key: str) -> str:
        return f"{{{{ 'ON' if value_json.{key} else 'OFF' }}}}"

    def number(key: str) -> str:
        return f"{{{{ value_json.{key} if value_json.{key} is not none else 'None' }}}}"

    def count(keys: tuple[str, ...]) -> str:
        terms = " + ".join(f"value_json.counts.get('{k}', 0)" for k in keys)
        return f"{{{{ {terms} }}}}"

    return [
        entity(
            "event", "movement", "Movement", state_topic=topics.event,
            event_types=list(MOVEMENT_EVENT_TYPES), value_template=_event_filter(MOVEMENT_EVENT_TYPES),
            icon="mdi:run",
        ),
        entity(
            "event", "sleep", "Sleep", state_topic=topics.event,
            event_types=list(SLEEP_EVENT_TYPES), value_template=_event_filter(SLEEP_EVENT_TYPES),
            icon="mdi:sleep",
        ),
        entity("binary_sensor", "in_bed", "In bed", state_topic=state, device_class="occupancy",
               value_template=flag("in_bed")),
        entity("binary_sensor", "moving", "Moving", state_topic=state, device_class="moving",
               value_template=flag("moving")),
        entity("binary_sensor", "awake", "Awake", state_topic=state, icon="mdi:eye",
               value_template="{{ 'ON' if value_json.asleep == false else 'OFF' }}"),
        entity("binary_sensor", "sensor_problem", "Sensor problem", state_topic=state,
               device_class="problem", entity_category="diagnostic",
               value_template="{{ 'OFF' if value_json.sensor_ok else 'ON' }}"),
        entity("sensor", "movements_tonight", "Movements tonight", state_topic=state,
               state_class="total", icon="mdi:counter", value_template=count(MOVEMENT_TYPES)),
        entity("sensor", "spasms_tonight", "Spasms tonight", state_topic=state, state_class="total",
               icon="mdi:counter", value_template=count(("spasm",))),
        entity("sensor", "awakenings_tonight", "Awakenings tonight", state_topic=state,
               state_class="total", icon="mdi:counter", value_template=count(("awakening",))),
        entity("sensor", "movements_per_hour", "Movements per hour of sleep", state_topic=state,
               unit_of_measurement="/h", state_class="measurement",
               value_template=number("movements_per_hour")),
        entity("sensor", "heart_rate", "Heart rate", state_topic=state, unit_of_measurement="bpm",
               state_class="measurement", icon="mdi:heart-pulse", value_template=number("heart_bpm")),
        entity("sensor", "breathing_rate", "Breathing rate", state_topic=state,
               unit_of_measurement="/min", state_class="measurement", icon="mdi:lungs",
               value_template=number("breath_bpm")),
        entity("sensor", "last_night_sleep", "Last night's sleep", state_topic=topics.night,
               unit_of_measurement="h", device_class="duration", state_class="measurement",
               value_template="{{ (value_json.total_sleep_min / 60) | round(2) if "
               "value_json.total_sleep_min is defined and value_json.total_sleep_min is not none "
               "else 'None' }}"),
        entity("sensor", "last_night_efficiency", "Last night's sleep efficiency", state_topic=topics.night,
               unit_of_measurement="%", state_class="measurement",
               value_template="{{ value_json.efficiency_pct if value_json.efficiency_pct is defined "
               "and value_json.efficiency_pct is not none else 'None' }}"),
        entity("sensor", "last_night_movement_index", "Last night's movement index (bed sensor)",
               state_topic=topics.night, unit_of_measurement="/h", state_class="measurement",
               icon="mdi:run", value_template="{{ value_json.movement_index_per_h if "
               "value_json.movement_index_per_h is defined and value_json.movement_index_per_h is not none "
               "else 'None' }}"),
        entity("binary_sensor", "trend_notice", "Trend notice", state_topic=topics.notice,
               value_template="{{ 'ON' if value_json.active else 'OFF' }}", payload_on="ON",
               payload_off="OFF",
               json_attributes_topic=topics.notice, icon="mdi:chart-line"),
        entity("switch", "tracking", "Tracking", state_topic=state, command_topic=topics.command("night"),
               value_template="{{ 'ON' if value_json.night_id else 'OFF' }}", payload_on="start",
               payload_off="stop", state_on="ON", state_off="OFF", icon="mdi:bed-clock"),
        entity("button", "mark", "Mark: that was a spasm", command_topic=topics.command("mark"),
               payload_press="spasm", icon="mdi:bookmark"),
        entity("select", "profile", "Rule profile", state_topic=state,
               command_topic=topics.command("profile"), options=list(PROFILES),
               value_template="{{ value_json.profile }}", entity_category="config"),
    ]  # fmt: skip


def discovery_json(topics: Topics, sw_version: str) -> list[tuple[str, str]]:
    """The same messages as compact JSON text."""
    return [(t, json.dumps(p, separators=(",", ":"))) for t, p in discovery_messages(topics, sw_version)]
