"""Fixtures for the browser tests: a simulated week in a real database, the real ``bedside web``
process serving it, one headless Chromium per test module, and the screenshots taken.

The browser is Debian's (``/usr/bin/chromium`` with ``/usr/bin/chromedriver``); if it is missing
or cannot start, the tests fail, they are never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from service.demo_history import build_history
from tests.browser.browserutil import (
    DESKTOP,
    WebServer,
    drain_logs,
    publish_screenshots,
    start_chrome,
    start_web,
)

#: A week; six weeks when the screenshots are made, so Trends shows weeks and with/without intervals.
WEEK_NIGHTS = 42 if os.environ.get("BEDSIDE_SCREENSHOTS") == "1" else 7
WEEK_SEED = 11


@pytest.fixture(scope="session")
def week_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A real database holding a simulated week (raw signal kept for all of it); its night ids."""
    db = tmp_path_factory.mktemp("week") / "bedside.sqlite3"
    ids = build_history(db, nights=WEEK_NIGHTS, seed=WEEK_SEED, raw_days=WEEK_NIGHTS)
    return db, ids


@pytest.fixture(scope="session")
def live_server(
    week_db: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    """``bedside web`` on a free loopback port over the simulated week."""
    server = start_web(week_db[0], tmp_path_factory.mktemp("web") / "web.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the whole module, at desktop size."""
    driver = start_chrome(tmp_path_factory.mktemp("chromedriver") / "chromedriver.log", DESKTOP)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def clean_browser(browser: webdriver.Chrome) -> webdriver.Chrome:
    """The module's browser at desktop size with its logs emptied and no cookies."""
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.delete_all_cookies()
    drain_logs(browser)
    return browser


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the tests save screenshots; copied to docs/screenshots at the end with BEDSIDE_SCREENSHOTS=1."""
    path = tmp_path_factory.mktemp("screenshots")
    yield path
    publish_screenshots(sorted(path.glob("*.png")))
