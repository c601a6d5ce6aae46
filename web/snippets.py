"""Waveform snippets kept around events (table ``snippets``), decoded with the store's codec."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

import numpy as np

from service.store.signal_codec import CodecError, decode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snippet:
    """Samples from ``start_at`` (UTC text) at ``rate_hz``."""

    event_id: str
    start_at: str
    rate_hz: float
    samples: np.ndarray


def load_snippet(conn: sqlite3.Connection, event_id: str) -> Snippet | None:
    """The event's snippet, or None if none was kept (or the stored blob cannot be decoded)."""
    row = conn.execute(
        "SELECT start_at, rate_hz, encoding, data FROM snippets WHERE event_id = ?", (event_id,)
    ).fetchone()
    if row is None:
        return None
    try:
        samples = decode(row["encoding"], row["data"])
    except CodecError as exc:
        logger.warning("snippet of event %s cannot be decoded: %s", event_id, exc)
        return None
    return Snippet(event_id, str(row["start_at"]), float(row["rate_hz"]), np.asarray(samples, dtype=float))
