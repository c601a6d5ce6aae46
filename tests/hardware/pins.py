"""gpiozero's MockFactory as the global pin factory, fresh for each test that drives pins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory


@pytest.fixture()
def mock_factory() -> Iterator[MockFactory]:
    """Install a MockFactory as the global pin factory; reset and restore it afterwards.

    Global because gpiozero's software SPI (which MockFactory's SPI is) asks for
    ``Device.pin_factory`` whatever factory the device was given.
    """
    saved = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = saved
