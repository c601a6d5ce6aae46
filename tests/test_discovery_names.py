"""What Home Assistant shows: the device's name, which it puts before every entity's name."""

from __future__ import annotations

import json

from service.discovery import discovery_json
from service.topics import Topics


def _device_names(unit_id: str) -> set[str]:
    messages = discovery_json(Topics("bedside", unit_id), "test")
    return {json.loads(payload)["device"]["name"] for _, payload in messages}


def test_the_default_unit_is_named_bedside_not_bedside_bedside() -> None:
    assert _device_names("bedside") == {"Bedside"}


def test_another_unit_keeps_its_id_in_the_name() -> None:
    assert _device_names("bedroom-2") == {"Bedside bedroom-2"}
