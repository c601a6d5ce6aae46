"""The bedside button (mark an event, say "I'm awake") and the status LED, through gpiozero."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from hardware.timing import SettingError, check_range

logger = logging.getLogger(__name__)

ButtonAction = Literal["mark", "awake"]
Health = Literal["ok", "fault", "stopped"]
HEALTH_STATES: tuple[str, ...] = ("ok", "fault", "stopped")


class BedsideButton:
    """A push button between a GPIO and GND (internal pull-up): short press and long press.

    A press released before ``hold_time_s`` calls ``callback("mark")`` on release; holding it
    for ``hold_time_s`` calls ``callback("awake")`` at that moment (once; the release that
    follows calls nothing). ``bounce_time_s`` is gpiozero's software debounce.

    The callback runs on a gpiozero thread (its pin-event or hold thread), never on the asyncio
    loop: to act on the loop, cross over, e.g.
    ``BedsideButton(17, lambda a: loop.call_soon_threadsafe(queue.put_nowait, a))``.
    A callback that raises is logged and the button keeps working.
    """

    def __init__(
        self,
        pin: int | str,
        callback: Callable[[ButtonAction], object],
        *,
        hold_time_s: float = 2.0,
        bounce_time_s: float | None = 0.05,
        pin_factory: Any = None,
    ) -> None:
        check_range("hold_time_s", hold_time_s, 0.1, 30.0, "s")
        if bounce_time_s is not None:
            check_range("bounce_time_s", bounce_time_s, 0.0, 1.0, "s")
        from gpiozero import Button

        self._callback = callback
        self._held = False
        self._lock = threading.Lock()
        self._button = Button(
            pin,
            pull_up=True,
            bounce_time=bounce_time_s,
            hold_time=hold_time_s,
            hold_repeat=False,
            pin_factory=pin_factory,
        )
        self._button.when_pressed = self._on_pressed
        self._button.when_held = self._on_held
        self._button.when_released = self._on_released

    @property
    def is_pressed(self) -> bool:
        """True while the button is down."""
        return bool(self._button.is_pressed)

    def _fire(self, action: ButtonAction) -> None:
        logger.info("bedside button: %s", action)
        try:
            self._callback(action)
        except Exception:
            logger.exception("button callback failed for %r", action)

    def _on_pressed(self) -> None:
        with self._lock:
            self._held = False

    def _on_held(self) -> None:
        with self._lock:
            self._held = True
        self._fire("awake")

    def _on_released(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if not held:
            self._fire("mark")

    def close(self) -> None:
        """Release the pin."""
        self._button.close()


class StatusLed:
    """An LED (through a resistor) from a GPIO to GND: steady, blinking or off."""

    def __init__(
        self,
        pin: int | str,
        *,
        blink_on_s: float = 0.25,
        blink_off_s: float = 0.25,
        pin_factory: Any = None,
    ) -> None:
        check_range("blink_on_s", blink_on_s, 0.01, 10.0, "s")
        check_range("blink_off_s", blink_off_s, 0.01, 10.0, "s")
        from gpiozero import LED

        self._blink_on_s = blink_on_s
        self._blink_off_s = blink_off_s
        self._led = LED(pin, pin_factory=pin_factory)
        self._mode = "off"

    @property
    def mode(self) -> str:
        """``"recording"``, ``"fault"`` or ``"off"``."""
        return self._mode

    def recording(self) -> None:
        """Steady on."""
        self._mode = "recording"
        self._led.on()

    def fault(self) -> None:
        """Blinking (gpiozero's background thread toggles it)."""
        if self._mode != "fault":  # restarting the blink would reset its phase
            self._mode = "fault"
            self._led.blink(on_time=self._blink_on_s, off_time=self._blink_off_s)

    def off(self) -> None:
        """Off."""
        self._mode = "off"
        self._led.off()

    def close(self) -> None:
        """Stop any blinking and release the pin."""
        self._led.close()


class Controls:
    """The button and LED together; the LED follows the daemon's health.

    ``set_health("ok")`` -> steady, ``"fault"`` -> blinking, ``"stopped"`` -> off. Either pin
    may be None when that part is not fitted. ``on_button`` has the threading rules of
    :class:`BedsideButton`.
    """

    def __init__(
        self,
        *,
        button_pin: int | str | None,
        led_pin: int | str | None,
        on_button: Callable[[ButtonAction], object] | None = None,
        hold_time_s: float = 2.0,
        bounce_time_s: float | None = 0.05,
        pin_factory: Any = None,
    ) -> None:
        if button_pin is not None and on_button is None:
            raise SettingError("on_button", "a button needs a callback")
        self._health: Health = "stopped"
        self.led: StatusLed | None = None
        self.button: BedsideButton | None = None
        try:
            if led_pin is not None:
                self.led = StatusLed(led_pin, pin_factory=pin_factory)
            if button_pin is not None and on_button is not None:
                self.button = BedsideButton(
                    button_pin,
                    on_button,
                    hold_time_s=hold_time_s,
                    bounce_time_s=bounce_time_s,
                    pin_factory=pin_factory,
                )
        except BaseException:
            self.close()
            raise

    @property
    def health(self) -> Health:
        """The last health state set."""
        return self._health

    def set_health(self, health: Health) -> None:
        """Show ``health`` on the LED; any thread. Unknown state -> SettingError."""
        if health not in HEALTH_STATES:
            raise SettingError("health", f"must be one of {HEALTH_STATES}, got {health!r}")
        self._health = health
        if self.led is None:
            return
        if health == "ok":
            self.led.recording()
        elif health == "fault":
            self.led.fault()
        else:
            self.led.off()

    def close(self) -> None:
        """Release both pins (the LED goes off)."""
        if self.button is not None:
            self.button.close()
            self.button = None
        if self.led is not None:
            self.led.close()
            self.led = None
