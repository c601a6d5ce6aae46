"""Bounds on what reaches the hub, so a restless night cannot flood it (pure, on stream time).

Events over the limit are still stored and counted; they are only not published one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EventLimiter:
    """A token bucket per event type: ``burst`` at once, then ``per_min`` a minute.

    Time is the detector's stream time in seconds, so the same night gives the same result at
    any replay speed. ``per_min <= 0`` disables the limit.
    """

    burst: int = 10
    per_min: float = 2.0
    _tokens: dict[str, float] = field(default_factory=dict)
    _last_s: dict[str, float] = field(default_factory=dict)
    suppressed: int = 0

    def allow(self, event_type: str, t_s: float) -> bool:
        """True if an event of this type at ``t_s`` may be published now."""
        if self.per_min <= 0:
            return True
        tokens = self._tokens.get(event_type, float(self.burst))
        last = self._last_s.get(event_type, t_s)
        tokens = min(float(self.burst), tokens + max(0.0, t_s - last) * self.per_min / 60.0)
        self._last_s[event_type] = t_s
        if tokens >= 1.0:
            self._tokens[event_type] = tokens - 1.0
            return True
        self._tokens[event_type] = tokens
        self.suppressed += 1
        return False


@dataclass
class MovingDebounce:
    """``moving`` goes ON at once (a light can follow within a second) and OFF only after
    ``off_delay_s`` of stillness, so a restless spell is one ON/OFF pair, not dozens."""

    off_delay_s: float = 10.0
    shown: bool = False
    _still_since_s: float | None = None

    def update(self, moving: bool, t_s: float) -> bool:
        """Feed the detector's flag at stream time ``t_s``; returns the flag to show."""
        if moving:
            self._still_since_s = None
            self.shown = True
        elif self.shown:
            if self._still_since_s is None:
                self._still_since_s = t_s
            if t_s - self._still_since_s >= self.off_delay_s:
                self.shown = False
                self._still_since_s = None
        return self.shown
