"""The daemon with a bedside button and LED on gpiozero mock pins: presses become annotations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from hardware.simulated import SimulatedNight, SimulatedSource
from service.app import Daemon
from service.config import load_config

BUTTON, LED = 17, 27


async def _wait(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def _annotations(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT kind, source FROM annotations ORDER BY rowid")]
    finally:
        conn.close()


def test_short_and_long_presses_become_annotations_and_the_led_shows_recording(
    mock_factory: MockFactory, tmp_path: Path
) -> None:
    db = tmp_path / "b.sqlite3"
    cfg = load_config(
        environ={},
        overrides={
            "storage": {"db_path": str(db)},
            "mqtt": {"enabled": False},
            "sessions": {"mode": "run"},
            "web": {"enabled": False},
            "controls": {"button_pin": BUTTON, "led_pin": LED, "hold_time_s": 0.3},
        },
    )
    night = SimulatedNight(seed=1, rate_hz=50.0, duration_s=600.0, glitches=False)
    daemon = Daemon(cfg, SimulatedSource(night, speed=20.0, block_s=0.2), "test")
    button = mock_factory.pin(BUTTON)
    led = mock_factory.pin(LED)

    async def scenario() -> tuple[bool, bool]:
        run = asyncio.create_task(daemon.run())
        await _wait(lambda: daemon.controls is not None and daemon.blocks > 2)
        led_on_while_recording = bool(led.state)
        button.drive_low()
        await asyncio.sleep(0.05)
        button.drive_high()
        await _wait(lambda: len(_annotations(db)) >= 1)
        button.drive_low()
        await _wait(lambda: len(_annotations(db)) >= 2)
        button.drive_high()
        daemon.request_stop("test over")
        await asyncio.wait_for(run, 30)
        return led_on_while_recording, bool(led.state)

    on_while_recording, on_after_stop = asyncio.run(scenario())
    assert _annotations(db) == [("spasm_mark", "button"), ("awake_mark", "button")]
    assert on_while_recording is True
    assert on_after_stop is False


def test_a_stuck_sensor_blinks_the_led_and_recovery_makes_it_steady_again(
    mock_factory: MockFactory, tmp_path: Path
) -> None:
    import numpy as np

    from hardware.replay import Recording, ReplaySource

    rate = 50.0
    night = SimulatedNight(seed=2, rate_hz=rate, duration_s=3600.0, glitches=False, movements=False)
    x = night.render(int(1800 * rate), int(350 * rate)).copy()
    x[int(120 * rate) : int(200 * rate)] = x[int(120 * rate)]  # the ADC sticks for 80 s
    db = tmp_path / "b.sqlite3"
    cfg = load_config(
        environ={},
        overrides={
            "storage": {"db_path": str(db)},
            "mqtt": {"enabled": False},
            "sessions": {"mode": "run"},
            "web": {"enabled": False},
            "controls": {"led_pin": LED},
        },
    )
    source = ReplaySource(Recording(x.astype(np.float32), rate, None, "test", "x"), speed=0.0, block_s=0.5)
    daemon = Daemon(cfg, source, "test")
    shown: list[str] = []

    async def scenario() -> None:
        run = asyncio.create_task(daemon.run())
        await _wait(lambda: daemon.controls is not None)
        assert daemon.controls is not None
        real = daemon.controls.set_health

        def record(health: str) -> None:  # observe what the LED is told, then do it
            shown.append(health)
            real(health)  # type: ignore[arg-type]

        daemon.controls.set_health = record  # type: ignore[method-assign]
        await asyncio.wait_for(run, 60)

    asyncio.run(scenario())
    conn = sqlite3.connect(db)
    faults = conn.execute("SELECT start_at FROM events WHERE event_type = 'sensor_fault'").fetchall()
    conn.close()
    assert faults, "the stuck ADC is a sensor_fault"
    assert "fault" in shown and shown.index("fault") < len(shown) - 1
    after = shown[shown.index("fault") :]
    assert "ok" in after, "the LED went back to steady once the signal returned"
    assert shown[-1] == "stopped"
    assert daemon.live.sensor_ok
