"""What the user writes through the dashboard, in a real browser: a relabel, a tag, a check-in; each
checked in the database afterwards, and bad input answered with a message naming the problem."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.browser.browserutil import WebServer, read_problems, start_web, wait_for


def rows(db: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def own_db(week_db: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the simulated week, so these writes touch no other module's data."""
    target = tmp_path_factory.mktemp("userinput") / "bedside.sqlite3"
    src = sqlite3.connect(f"file:{week_db[0]}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
    finally:
        src.close()
        dst.close()
    return target


@pytest.fixture(scope="module")
def server(own_db: Path) -> Iterator[WebServer]:
    web = start_web(own_db, own_db.parent / "web.log")
    try:
        yield web
    finally:
        web.stop()


def type_time(driver: webdriver.Chrome, field: WebElement, hour: int, minute: int) -> None:
    """Type a clock time into an ``<input type=time>`` as a user of the browser's locale would."""
    cycle = driver.execute_script(
        "return new Intl.DateTimeFormat(navigator.language, {hour: 'numeric'}).resolvedOptions().hourCycle"
    )
    if cycle in ("h11", "h12"):
        field.send_keys(f"{(hour - 1) % 12 + 1:02d}{minute:02d}{'P' if hour >= 12 else 'A'}")
    else:
        field.send_keys(f"{hour:02d}{minute:02d}")


def submit(driver: webdriver.Chrome, form_id: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#{form_id} button[type=submit]").click()


def test_relabelling_an_event_in_the_browser_stores_the_label_and_shows_it(
    clean_browser: webdriver.Chrome, server: WebServer, own_db: Path
) -> None:
    driver = clean_browser
    event = rows(
        own_db,
        "SELECT e.id, e.night_id FROM events e JOIN snippets s ON s.event_id = e.id "
        "WHERE e.event_type = 'limb_movement' ORDER BY e.start_at DESC LIMIT 1",
    )[0]
    assert rows(own_db, "SELECT * FROM relabels WHERE event_id = ?", event["id"]) == []
    driver.get(f"{server.url}/night/{event['night_id']}?event={event['id']}#event")
    section = driver.find_element(By.CSS_SELECTOR, f'#event[data-event-id="{event["id"]}"]')
    choice = Select(section.find_element(By.ID, "relabel-label"))
    assert choice.first_selected_option.get_attribute("value") == "limb_movement"
    choice.select_by_value("jerk")
    submit(driver, "relabel-form")
    wait_for(lambda: driver.find_elements(By.ID, "relabel-saved"), what="the relabel's Saved message")

    stored = rows(own_db, "SELECT label, source FROM relabels WHERE event_id = ?", event["id"])
    assert [tuple(r) for r in stored] == [("jerk", "web")]
    detector = rows(own_db, "SELECT event_type FROM events WHERE id = ?", event["id"])
    assert detector[0]["event_type"] == "limb_movement", "the detector's own label is kept"
    assert driver.find_element(By.ID, "current-label").text.lower() == "jerk"
    row = driver.find_element(By.CSS_SELECTOR, f'#night-events tr[data-id="{event["id"]}"]')
    assert "jerk" in row.text.lower()
    assert not read_problems(driver)


def test_adding_a_tag_in_the_browser_stores_it_for_that_night(
    clean_browser: webdriver.Chrome, server: WebServer, own_db: Path
) -> None:
    driver = clean_browser
    night_date = rows(own_db, "SELECT night_date FROM nights ORDER BY started_at LIMIT 1")[0]["night_date"]
    before = rows(own_db, "SELECT * FROM tags WHERE night_date = ? AND tag = 'custom'", night_date)
    assert before == []
    driver.get(f"{server.url}/checkin?date={night_date}")
    assert driver.find_element(By.ID, "checkin").get_attribute("data-night-date") == night_date
    Select(driver.find_element(By.ID, "tag-choice")).select_by_value("custom")
    form = driver.find_element(By.ID, "tag-form")
    form.find_element(By.NAME, "detail").send_keys("warm bath")
    at = form.find_element(By.NAME, "at_local")
    type_time(driver, at, 21, 15)
    assert at.get_attribute("value") == "21:15", "the time field takes 24-hour HH:MM"
    submit(driver, "tag-form")
    wait_for(lambda: driver.find_elements(By.ID, "form-saved"), what="the tag's Saved message")

    stored = rows(
        own_db,
        "SELECT tag, detail, at_local, source FROM tags WHERE night_date = ? AND tag = 'custom'",
        night_date,
    )
    assert [tuple(r) for r in stored] == [("custom", "warm bath", "21:15", "web")]
    listed = driver.find_elements(By.CSS_SELECTOR, '#tag-list li[data-tag="custom"]')
    assert len(listed) == 1 and "warm bath" in listed[0].text
    assert not read_problems(driver)


def test_a_checkin_saved_in_the_browser_is_stored(
    clean_browser: webdriver.Chrome, server: WebServer, own_db: Path
) -> None:
    driver = clean_browser
    night_date = rows(own_db, "SELECT night_date FROM nights ORDER BY started_at DESC LIMIT 1")[0][
        "night_date"
    ]
    driver.get(f"{server.url}/checkin?date={night_date}")
    form = driver.find_element(By.ID, "checkin-form")
    form.find_element(By.CSS_SELECTOR, 'input[name="sleep_quality"][value="2"]').click()
    form.find_element(By.CSS_SELECTOR, 'input[name="spasm_severity"][value="4"]').click()
    note = form.find_element(By.ID, "note")
    note.clear()
    note.send_keys("legs jumpy after 3 am")
    submit(driver, "checkin-form")
    wait_for(lambda: driver.find_elements(By.ID, "form-saved"), what="the check-in's Saved message")

    stored = rows(
        own_db, "SELECT sleep_quality, spasm_severity, note FROM checkins WHERE night_date = ?", night_date
    )
    assert [tuple(r) for r in stored] == [(2, 4, "legs jumpy after 3 am")]
    assert not read_problems(driver)


def test_a_medication_tag_without_its_name_is_refused_with_a_message_naming_the_field(
    clean_browser: webdriver.Chrome, server: WebServer, own_db: Path
) -> None:
    driver = clean_browser
    night_date = rows(own_db, "SELECT night_date FROM nights ORDER BY started_at LIMIT 1 OFFSET 1")[0][
        "night_date"
    ]
    before = rows(own_db, "SELECT COUNT(*) AS n FROM tags")[0]["n"]
    driver.get(f"{server.url}/checkin?date={night_date}")
    Select(driver.find_element(By.ID, "tag-choice")).select_by_value("medication")
    submit(driver, "tag-form")
    error = wait_for(lambda: driver.find_elements(By.ID, "form-error"), what="the form's error message")[0]
    assert "detail" in error.text.lower()
    assert rows(own_db, "SELECT COUNT(*) AS n FROM tags")[0]["n"] == before
    problems = read_problems(driver)
    # The refusal is a 400 answer to the form's POST: that one is expected, nothing else.
    assert problems.console == [] or all("400" in c for c in problems.console), problems
    assert all(n.startswith("400 ") and n.endswith("/checkin/tags") for n in problems.network), problems
