"""Layout and wording checks in a real browser: Tonight's live-state labels are the same whether the
server or the script wrote them, the Nights table fits a desktop, the events chart names its rows
beside the marks (readable on a phone), and the heart/breath key is not drawn over the lines."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from service.live import LiveState
from service.timefmt import iso_utc, utc_now
from tests.browser.browserutil import PHONE, WebServer, read_problems, set_viewport, start_web, wait_for
from tests.webutil import copy_database, http, set_live_state

FONT_SIZE_JS = "return parseFloat(getComputedStyle(arguments[0]).fontSize)"


@pytest.fixture(scope="module")
def live_state_server(
    week_db: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    """``bedside web`` over a copy of the week with the daemon's full live state for its last night."""
    folder = tmp_path_factory.mktemp("polish")
    db = folder / "bedside.sqlite3"
    copy_database(week_db[0], db)
    now = iso_utc(utc_now())
    state = LiveState(
        night_id=week_db[1][-1],
        in_bed=True,
        asleep=True,
        heart_bpm=57.2,
        breath_bpm=14.0,
        updated_at=now,
        tracking=True,
        profile="aasm",
        movements_per_hour=6.4,
        suppressed_events=2,
    ).as_dict()
    set_live_state(db, state, now)
    server = start_web(db, folder / "web.log")
    try:
        yield server
    finally:
        server.stop()


def _server_rows(page: str) -> list[tuple[str, str, str]]:
    found = re.findall(
        r'<div class="state-item" data-key="([^"]+)"><dt>([^<]*)</dt><dd>([^<]*)</dd></div>', page
    )
    return [(k, html.unescape(label), html.unescape(text)) for k, label, text in found]


def test_tonight_now_card_labels_are_human_and_the_same_from_server_and_script(
    clean_browser: webdriver.Chrome, live_state_server: WebServer
) -> None:
    server_rows = _server_rows(http(live_state_server.url + "/").text)
    keys = [k for k, _, _ in server_rows]
    assert {"tracking", "profile", "movements_per_hour", "suppressed_events", "updated_at"} <= set(keys)
    for key, label, _ in server_rows:
        assert label != key and "_" not in label, f"raw key {key!r} shown as {label!r}"
    shown = {k: text for k, _, text in server_rows}
    assert shown["profile"] == "AASM" and shown["tracking"] == "on" and shown["movements_per_hour"] == "6.4"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", shown["updated_at"]), shown["updated_at"]

    driver = clean_browser
    driver.get(live_state_server.url + "/")
    wait_for(
        lambda: driver.find_element(By.ID, "tonight").get_attribute("data-live") == "sse",
        what="Tonight following the live stream",
    )
    # Empty the card, then let the script refill it from the next stream message.
    driver.execute_script("document.getElementById('state').replaceChildren()")
    wait_for(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#state .state-item"),
        what="the script re-drawing the Now card",
        timeout_s=20,
    )
    script_rows = [
        (
            item.get_attribute("data-key") or "",
            item.find_element(By.TAG_NAME, "dt").text,
            item.find_element(By.TAG_NAME, "dd").text,
        )
        for item in driver.find_elements(By.CSS_SELECTOR, "#state .state-item")
    ]
    assert script_rows == server_rows
    assert not read_problems(driver)


def test_nights_table_fits_a_desktop_screen_without_sideways_scrolling(
    clean_browser: webdriver.Chrome, live_server: WebServer
) -> None:
    driver = clean_browser
    driver.get(live_server.url + "/nights")
    table = wait_for(lambda: driver.find_element(By.ID, "nights-table"), what="the Nights table")
    box = table.find_element(By.XPATH, "..")
    hidden = driver.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth", box)
    assert hidden <= 1, f"{hidden} px of the Nights table are behind a sideways scroll at 1280 px"
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert "Check-in" in headers
    assert not read_problems(driver)


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_events_chart_rows_are_named_beside_the_marks_and_the_vitals_key_is_off_the_lines(
    clean_browser: webdriver.Chrome, live_server: WebServer, week_db: tuple[Path, list[str]], phone: bool
) -> None:
    driver = clean_browser
    if phone:
        set_viewport(driver, PHONE, mobile=True)
    driver.get(f"{live_server.url}/night/{week_db[1][-1]}")
    svg = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, 'svg.chart[data-chart="events"]'), what="events chart"
    )
    chart = svg.rect
    labels = driver.find_elements(By.CSS_SELECTOR, '.lane[data-lane="events"] .lane-labels li')
    types = driver.execute_script(
        "return [...arguments[0].querySelectorAll('g.row[data-type]')].map(g => g.dataset.type)", svg
    )
    marked = driver.execute_script(
        "return [...arguments[0].querySelectorAll('g.row[data-type]')].filter(g => g.dataset.starts)"
        ".map(g => g.dataset.type)",
        svg,
    )
    assert len(labels) >= len(types) > 0 and marked
    for label in labels:
        box = label.rect
        assert box["x"] + box["width"] <= chart["x"] + 0.5, f"row name {label.text!r} overlaps the marks"
        assert box["height"] >= 14, f"row name {label.text!r} squashed to {box['height']} px"
        size = float(
            driver.execute_script("return parseFloat(getComputedStyle(arguments[0]).fontSize)", label)
        )
        assert size >= 11, f"row name {label.text!r} at {size} px"
    # Each row name sits level with its marks: the middle of the row's drawn marks is inside its label's band.
    names = {label.get_attribute("data-type"): label for label in labels}
    for kind in marked:
        name_box = names[kind].rect
        marks = driver.execute_script(
            'const g = arguments[0].querySelector(`g.row[data-type="${arguments[1]}"]`);'
            "return g.getBoundingClientRect().toJSON();",
            svg,
            kind,
        )
        middle = marks["y"] + marks["height"] / 2 + driver.execute_script("return window.scrollY")
        assert name_box["y"] <= middle <= name_box["y"] + name_box["height"], (names[kind].text, marks)
    # Heart and breathing have their own lanes; their names and units are in captions above the
    # lines, never text drawn over them.
    for name in ("heart", "breath"):
        lane = driver.find_element(By.CSS_SELECTOR, f'svg.chart[data-chart="{name}"]')
        assert lane.find_elements(By.CSS_SELECTOR, "text.legend") == []
        caption = driver.find_element(By.CSS_SELECTOR, f'figure[data-plot="{name}"] figcaption').rect
        assert caption["y"] + caption["height"] <= lane.rect["y"], f"the {name} caption is above its chart"
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1
    assert not read_problems(driver)
