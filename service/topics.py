"""Every MQTT topic Bedside uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one unit: ``<base>/<unit>/...`` and Home Assistant's status topic."""

    base: str
    unit_id: str
    discovery_prefix: str = "homeassistant"

    @property
    def root(self) -> str:
        """``<base>/<unit>``."""
        return f"{self.base}/{self.unit_id}"

    @property
    def availability(self) -> str:
        """Retained ``online`` / ``offline``; the last will is ``offline``."""
        return f"{self.root}/availability"

    @property
    def event(self) -> str:
        """One JSON object per event, QoS 1, not retained."""
        return f"{self.root}/event"

    @property
    def state(self) -> str:
        """Retained JSON of the sleeper's state now."""
        return f"{self.root}/state"

    @property
    def night(self) -> str:
        """Retained summary of the last finished night."""
        return f"{self.root}/night"

    @property
    def notice(self) -> str:
        """Retained notice for the user: a sustained rise in frequency or intensity, or none."""
        return f"{self.root}/notice"

    @property
    def command_filter(self) -> str:
        """Subscription for every command topic."""
        return f"{self.root}/cmd/#"

    def command(self, name: str) -> str:
        """The topic of one command, e.g. ``command("night")``."""
        return f"{self.root}/cmd/{name}"

    @property
    def ha_status(self) -> str:
        """Where Home Assistant announces ``online`` when it starts."""
        return f"{self.discovery_prefix}/status"
