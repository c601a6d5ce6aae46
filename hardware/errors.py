"""The exception base of Bedside and the errors the hardware layer raises.

Every Bedside error inherits from ``BedsideError`` and from the built-in it is a kind of,
so callers can catch either (the gpiozero way: ``class BadWaitTime(GPIOZeroError, ValueError)``).
"""


class BedsideError(Exception):
    """Base of every error Bedside raises on purpose."""


class SensorError(BedsideError, OSError):
    """A sensor could not be opened or read (wiring, permissions, bus errors)."""


class RecordingError(BedsideError, ValueError):
    """A recorded signal file is missing, unreadable, or not in a form we can replay."""
