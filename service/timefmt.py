"""UTC timestamps as the sortable ISO 8601 text stored and published everywhere."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(t: datetime) -> str:
    """``2026-11-22T01:30:00.123Z``: milliseconds, always UTC with a ``Z``."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: Bedside keeps times in UTC")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> datetime:
    """Inverse of :func:`iso_utc` (also accepts ``+00:00`` offsets); ValueError otherwise."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time without a timezone: {text!r}")
    return t.astimezone(UTC)


def utc_now() -> datetime:
    """The current wall-clock time in UTC."""
    return datetime.now(UTC)
