"""The JSON documents Bedside stores and publishes, built from detector outputs (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from service.detect.types import Event
from service.timefmt import iso_utc


def event_row(
    event: Event, *, event_id: str, night_id: str, stream_start: datetime, cause_id: str | None
) -> dict[str, Any]:
    """The stored and published form of an event (``event`` topic payload, ``events`` table row).

    ``event_type`` is the Home Assistant event entity's key; the other keys become attributes.
    """
    return {
        "id": event_id,
        "event_type": event.type,
        "start": iso_utc(stream_start + timedelta(seconds=event.start_s)),
        "end": iso_utc(stream_start + timedelta(seconds=event.end_s)),
        "duration_s": round(event.duration_s, 3),
        "intensity": round(float(event.intensity), 2),
        "profile": event.profile,
        "confidence": None if event.confidence is None else round(float(event.confidence), 3),
        "night_id": night_id,
        "cause_id": cause_id,
        "details": {k: float(v) for k, v in event.details.items()},
    }
