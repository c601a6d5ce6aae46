"""Tonight and Status, live: the real daemon runs a simulated night at 60x with a real Mosquitto and
its dashboard; a new event shows up in the open Tonight page through the live stream, without a
reload, and Status shows the running monitor."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.broker import Broker, free_port, wait_port
from tests.browser.browserutil import (
    PHONE,
    choose_theme,
    full_page_png,
    read_problems,
    set_viewport,
    wait_for,
)
from tests.daemonutil import start_daemon, stop_daemon

SPEED = 60  # a simulated minute per second: an event every second or two once the sleeper is in bed


def stored_event(db: Path, event_id: str) -> tuple[int, str] | None:
    """(rowid, event_type) of a stored event, None if the daemon has not stored it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT rowid, event_type FROM events WHERE id = ?", (event_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None else (int(row[0]), str(row[1]))


def last_rowid(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM events").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private Mosquitto for the module's daemon (as the ``broker`` fixture, module-scoped)."""
    broker = Broker(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def daemon(module_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``bedside run`` with the simulated sensor, MQTT to a private broker, and its dashboard on a
    free port: (dashboard url, database)."""
    workdir = tmp_path_factory.mktemp("live")
    db, log = workdir / "bedside.sqlite3", workdir / "daemon.log"
    port = free_port()
    args = ["--db", str(db), "--unit-id", "bedside", "--seed", "3", "--speed", str(SPEED)]
    args += ["--mqtt-host", module_broker.host, "--mqtt-port", str(module_broker.port)]
    # The simulated night starts at the last 22:30 (local), so Tonight shows evening clock times.
    env = {"BEDSIDE_SENSOR__SIM_START": "22:30"}
    proc = start_daemon([*args, "--duration-s", "7200", "--web-port", str(port)], log, env=env)
    try:
        wait_port(port, timeout_s=60)
        yield f"http://127.0.0.1:{port}", db
    finally:
        code = stop_daemon(proc)
        assert code == 0, log.read_text()


def test_a_new_event_appears_on_tonight_without_a_reload(
    clean_browser: webdriver.Chrome, daemon: tuple[str, Path], screenshot_dir: Path
) -> None:
    url, db = daemon
    driver = clean_browser
    driver.get(url + "/")
    root = driver.find_element(By.ID, "tonight")
    wait_for(
        lambda: root.get_attribute("data-live") == "sse", timeout_s=20, what="Tonight on the live stream"
    )
    wait_for(lambda: driver.find_element(By.ID, "now").is_displayed(), timeout_s=30, what="the Now card")
    driver.execute_script("window.__sameDocument = true;")
    seen = {r.get_attribute("data-id") for r in driver.find_elements(By.CSS_SELECTOR, "#events tr[data-id]")}
    stored_before = last_rowid(db)  # events stored after this one are new since the page was seen

    def new_rows() -> list[tuple[str, str, tuple[int, str] | None]]:
        rows = driver.find_elements(By.CSS_SELECTOR, "#events tr[data-id]")
        pairs = [(r.get_attribute("data-id") or "", r.get_attribute("data-type") or "") for r in rows]
        fresh = [(i, t, stored_event(db, i)) for i, t in pairs if i not in seen]
        return [f for f in fresh if f[2] is None or f[2][0] > stored_before]

    fresh = wait_for(new_rows, timeout_s=45, what="a newly stored event's row on Tonight")
    assert driver.execute_script("return window.__sameDocument === true"), "the page was reloaded"
    assert root.get_attribute("data-live") == "sse", "the event came through the live stream"
    event_id, event_type, stored = fresh[0]
    assert stored is not None, f"the row {event_id} is not an event the daemon stored"
    assert stored[1] == event_type
    assert not read_problems(driver)

    if os.environ.get("BEDSIDE_SCREENSHOTS") == "1":
        # For the picture only: give the sleeper time to settle, so heart and breathing rate
        # show and a dozen events are listed.
        with contextlib.suppress(TimeoutError):
            wait_for(
                lambda: (
                    "unknown"
                    not in driver.find_element(By.CSS_SELECTOR, '#state [data-key="heart_bpm"]').text
                    and len(driver.find_elements(By.CSS_SELECTOR, "#events tr[data-id]")) >= 12
                ),
                timeout_s=40,
                what="a heart rate and a dozen events on Tonight",
            )
        with contextlib.suppress(TimeoutError):  # the last-hour chart is fetched again every 30 s
            wait_for(
                lambda: (
                    int(driver.find_element(By.ID, "live-chart").get_attribute("data-refreshed") or 0) >= 1
                ),
                timeout_s=40,
                what="the last-hour chart refreshed",
            )
    choose_theme(driver, "dark")
    full_page_png(driver, screenshot_dir / "tonight.png", max_height_px=1600)
    set_viewport(driver, PHONE, mobile=True)
    wait_for(lambda: driver.execute_script("return document.documentElement.clientWidth") == PHONE[0])
    full_page_png(driver, screenshot_dir / "tonight-phone.png", max_height_px=1600)
    assert not read_problems(driver)


def test_status_shows_the_running_monitors_recent_update(
    clean_browser: webdriver.Chrome, daemon: tuple[str, Path], screenshot_dir: Path
) -> None:
    url, _ = daemon
    driver = clean_browser
    driver.get(url + "/status")
    figures = driver.find_element(By.ID, "status-figures")
    detector = figures.find_element(By.CSS_SELECTOR, 'div[data-key="detector"] dd').text
    assert detector != "never" and "ago" in detector, f"monitor last update: {detector!r}"
    sensor = figures.find_element(By.CSS_SELECTOR, 'div[data-key="sensor"] dd').text
    assert sensor == "OK"
    mqtt = figures.find_element(By.CSS_SELECTOR, 'div[data-key="mqtt"] dd').text
    assert mqtt == "connected"
    assert not read_problems(driver)
    choose_theme(driver, "dark")
    full_page_png(driver, screenshot_dir / "status.png")
