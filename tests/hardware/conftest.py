"""Fixtures of the hardware tests: a fresh gpiozero MockFactory per test (tests/hardware/pins.py)."""

from tests.hardware.pins import mock_factory

__all__ = ["mock_factory"]
