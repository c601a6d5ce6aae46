"""The login, in a real browser, on a dashboard bound beyond loopback (``--host 0.0.0.0``): locked
until a password is set, every page leads to /login, a wrong password is refused, the right one
gets in and logging out locks it again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.browser.browserutil import (
    REPO,
    WebServer,
    choose_theme,
    clean_env,
    foreign_urls,
    full_page_png,
    read_problems,
    start_web,
    wait_for,
)
from tests.webutil import create_database, http

PASSWORD = "correct horse battery"
PROTECTED = ["/", "/nights", "/trends", "/checkin", "/status", "/export"]


@pytest.fixture(scope="module")
def lan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """``bedside web --host 0.0.0.0`` over its own (empty) database, with no password set yet.

    The first test needs it without a password; the second sets one (they run in file order).
    """
    db = tmp_path_factory.mktemp("lan") / "bedside.sqlite3"
    create_database(db)
    web = start_web(db, db.parent / "web.log", host="0.0.0.0")
    try:
        yield web
    finally:
        web.stop()


def set_password(db: Path, password: str) -> None:
    """``bedside set-password --stdin`` for the database's dashboard."""
    result = subprocess.run(
        [sys.executable, "-m", "service", "set-password", "--db", str(db), "--stdin"],
        cwd=REPO,
        input=password + "\n",
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def db_of(server: WebServer) -> Path:
    return server.log_path.parent / "bedside.sqlite3"


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_without_a_password_the_lan_dashboard_stays_locked_and_says_how_to_set_one(
    clean_browser: webdriver.Chrome, lan_server: WebServer
) -> None:
    driver = clean_browser
    driver.get(lan_server.url + "/nights")
    wait_for(lambda: path_of(driver.current_url) == "/login", what="the redirect to /login")
    assert (
        "bedside set-password" in driver.find_element(By.ID, "setup-needed").find_element(By.XPATH, "..").text
    )
    assert driver.find_elements(By.ID, "login-form") == []
    api = http(lan_server.url + "/api/events")
    assert api.status in (401, 503) and "password" in api.json()["error"]
    assert not read_problems(driver).console


def test_with_a_password_pages_lead_to_login_wrong_is_refused_right_gets_in_and_logout_locks(
    clean_browser: webdriver.Chrome, lan_server: WebServer, screenshot_dir: Path
) -> None:
    driver = clean_browser
    set_password(db_of(lan_server), PASSWORD)
    for path in PROTECTED:
        driver.get(lan_server.url + path)
        wait_for(lambda: path_of(driver.current_url) == "/login", what=f"{path} redirecting to /login")
        assert driver.find_elements(By.ID, "login-form"), f"{path}: no login form"
    assert http(lan_server.url + "/api/events").status == 401
    assert http(lan_server.url + "/healthz").status == 200, "the health check stays open"
    assert foreign_urls(driver) == [], "the login page refers to another origin"
    choose_theme(driver, "dark")
    full_page_png(driver, screenshot_dir / "login.png")

    driver.get(lan_server.url + "/trends")
    wait_for(lambda: driver.find_elements(By.ID, "password"), what="the password field")
    driver.find_element(By.ID, "password").send_keys("not the password")
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    error = wait_for(lambda: driver.find_elements(By.ID, "login-error"), what="the wrong-password message")
    assert "wrong password" in error[0].text.lower()
    assert path_of(driver.current_url) == "/login"
    read_problems(driver)  # the refusal is a 401 answer to the form: expected

    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_for(lambda: driver.find_elements(By.ID, "trends"), what="the Trends page after logging in")
    assert path_of(driver.current_url) == "/trends", "the login returns to the page first asked for"
    for path in PROTECTED:
        driver.get(lan_server.url + path)
        assert path_of(driver.current_url) == path, f"{path} still redirects after login"
    assert not read_problems(driver), "no failed request once logged in"

    driver.find_element(By.CSS_SELECTOR, "#logout-form button[type=submit]").click()
    wait_for(lambda: path_of(driver.current_url) == "/login", what="the login page after logging out")
    driver.get(lan_server.url + "/status")
    wait_for(lambda: path_of(driver.current_url) == "/login", what="/status locked again")
