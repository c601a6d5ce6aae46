"""The bedside button and status LED on gpiozero's MockFactory pins."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import pytest
from gpiozero.pins.mock import MockFactory

from hardware.controls import BedsideButton, ButtonAction, Controls, StatusLed
from hardware.timing import SettingError

TIMEOUT_S = 5.0
BUTTON_PIN = 17
LED_PIN = 27


def wait_for(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> bool:
    """Wait on a condition (without sleeping blind): True as soon as it holds."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.002)
    return True


class Presses:
    """Collects button actions from gpiozero's threads."""

    def __init__(self) -> None:
        self.actions: queue.Queue[tuple[ButtonAction, str]] = queue.Queue()

    def __call__(self, action: ButtonAction) -> None:
        self.actions.put((action, threading.current_thread().name))

    def next(self) -> ButtonAction:
        return self.actions.get(timeout=TIMEOUT_S)[0]

    def none_pending(self) -> bool:
        return self.actions.empty()


def test_a_short_press_marks(mock_factory: MockFactory) -> None:
    presses = Presses()
    button = BedsideButton(BUTTON_PIN, presses, hold_time_s=1.0)
    pin = mock_factory.pin(BUTTON_PIN)
    assert pin.state  # pulled up: released reads high
    pin.drive_low()
    assert button.is_pressed
    pin.drive_high()
    assert presses.next() == "mark"
    assert presses.none_pending()
    button.close()


def test_a_long_press_says_awake_once_and_no_mark(mock_factory: MockFactory) -> None:
    presses = Presses()
    button = BedsideButton(BUTTON_PIN, presses, hold_time_s=0.1)
    pin = mock_factory.pin(BUTTON_PIN)
    pin.drive_low()
    action, thread_name = presses.actions.get(timeout=TIMEOUT_S)  # fires while still held
    assert action == "awake"
    assert thread_name != threading.main_thread().name  # on gpiozero's hold thread
    pin.drive_high()
    assert presses.none_pending()
    # The next short press is a mark again.
    pin.drive_low()
    pin.drive_high()
    assert presses.next() == "mark"
    button.close()


def test_a_failing_callback_does_not_break_the_button(mock_factory: MockFactory) -> None:
    calls: list[ButtonAction] = []

    def callback(action: ButtonAction) -> None:
        calls.append(action)
        raise RuntimeError("boom")

    button = BedsideButton(BUTTON_PIN, callback, hold_time_s=1.0)
    pin = mock_factory.pin(BUTTON_PIN)
    for _ in range(2):
        pin.drive_low()
        pin.drive_high()
    assert calls == ["mark", "mark"]
    button.close()


def states_of(mock_factory: MockFactory) -> list[bool]:
    return [bool(s.state) for s in mock_factory.pin(LED_PIN).states]


def test_the_led_is_steady_blinking_or_off(mock_factory: MockFactory) -> None:
    led = StatusLed(LED_PIN, blink_on_s=0.01, blink_off_s=0.01)
    pin = mock_factory.pin(LED_PIN)
    led.recording()
    assert pin.state and led.mode == "recording"
    pin.clear_states()
    led.fault()
    assert wait_for(lambda: len(pin.states) >= 6)  # it keeps changing on its own
    assert True in states_of(mock_factory) and False in states_of(mock_factory)
    led.off()
    assert not pin.state
    pin.clear_states()
    assert not wait_for(lambda: len(pin.states) > 1, timeout_s=0.1)  # and stays off
    led.close()


def test_controls_follow_the_health_state(mock_factory: MockFactory) -> None:
    presses = Presses()
    controls = Controls(button_pin=BUTTON_PIN, led_pin=LED_PIN, on_button=presses)
    led_pin = mock_factory.pin(LED_PIN)
    assert controls.health == "stopped" and not led_pin.state

    controls.set_health("ok")
    assert led_pin.state
    led_pin.clear_states()
    assert not wait_for(lambda: len(led_pin.states) > 1, timeout_s=0.1)  # steady

    controls.set_health("fault")
    assert wait_for(lambda: len(led_pin.states) >= 4)  # blinking
    controls.set_health("ok")
    assert led_pin.state
    controls.set_health("stopped")
    assert not led_pin.state

    button_pin = mock_factory.pin(BUTTON_PIN)
    button_pin.drive_low()
    button_pin.drive_high()
    assert presses.next() == "mark"

    with pytest.raises(SettingError, match="health"):
        controls.set_health("sleepy")  # type: ignore[arg-type]
    controls.close()
    controls.close()  # idempotent


def test_controls_without_a_button_or_led(mock_factory: MockFactory) -> None:
    controls = Controls(button_pin=None, led_pin=None)
    controls.set_health("fault")
    assert controls.health == "fault"
    controls.close()
    with pytest.raises(SettingError, match="on_button"):
        Controls(button_pin=BUTTON_PIN, led_pin=None)


def test_bad_hold_time_names_the_parameter(mock_factory: MockFactory) -> None:
    with pytest.raises(SettingError, match="hold_time_s"):
        BedsideButton(BUTTON_PIN, lambda action: None, hold_time_s=0)
