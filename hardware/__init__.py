"""Sensors and pins only: sample sources that hand Blocks of samples to the daemon."""

from hardware.block import Block, SampleSource
from hardware.errors import BedsideError, RecordingError, SensorError

__all__ = ["BedsideError", "Block", "RecordingError", "SampleSource", "SensorError"]
