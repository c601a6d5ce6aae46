"""What the daemon knows 'now': the state published retained on MQTT and shown by the dashboard."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LiveState:
    """The sleeper and the unit right now; ``as_dict()`` is the documented ``state`` payload."""

    night_id: str | None = None
    in_bed: bool | None = None
    moving: bool = False
    asleep: bool | None = None
    sensor_ok: bool = True
    heart_bpm: float | None = None
    breath_bpm: float | None = None
    counts: Counter[str] = field(default_factory=Counter)
    mqtt_connected: bool = False
    outbox_len: int = 0
    updated_at: str | None = None
    tracking: bool = False
    profile: str = "aasm"
    movements_per_hour: float | None = None
    suppressed_events: int = 0
    storage_problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (rates rounded to 0.1 per minute)."""
        return {
            "night_id": self.night_id,
            "in_bed": self.in_bed,
            "moving": self.moving,
            "asleep": self.asleep,
            "sensor_ok": self.sensor_ok,
            "heart_bpm": None if self.heart_bpm is None else round(self.heart_bpm, 1),
            "breath_bpm": None if self.breath_bpm is None else round(self.breath_bpm, 1),
            "counts": dict(sorted(self.counts.items())),
            "tracking": self.tracking,
            "profile": self.profile,
            "movements_per_hour": self.movements_per_hour,
            "suppressed_events": self.suppressed_events,
            "storage_ok": self.storage_problem is None,
            "storage_problem": self.storage_problem,
            "mqtt_connected": self.mqtt_connected,
            "outbox_len": self.outbox_len,
            "updated_at": self.updated_at,
        }
