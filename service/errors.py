"""Errors the service raises on purpose; all inherit from ``BedsideError``."""

from hardware.errors import BedsideError, RecordingError, SensorError


class ConfigError(BedsideError, ValueError):
    """The configuration is invalid; the message names the key and the reason."""


class StoreError(BedsideError, OSError):
    """The database could not be opened, migrated or written."""


__all__ = ["BedsideError", "ConfigError", "RecordingError", "SensorError", "StoreError"]
