"""Login beyond loopback, CSRF on every write, the login rate limit, cookies, the password file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests import webutil
from tests.webutil import Client, Week, http
from web import create_app
from web.security import LoginLimiter, load_secret_key, read_password_hash, write_password_file
from web.serve import ServerHandle, app_config, is_loopback, start_in_thread

week_template = webutil.week_template
week = webutil.week

PASSWORD = "correct horse battery"


@pytest.fixture
def locked_app(week: Week) -> Flask:
    """The app as served on the LAN (0.0.0.0), with a password set."""
    write_password_file(week.path.parent / "web-password", PASSWORD)
    return create_app(app_config(str(week.path), "0.0.0.0"))


@pytest.fixture
def locked_server(locked_app: Flask) -> Iterator[ServerHandle]:
    with start_in_thread(locked_app) as handle:
        yield handle


def _login(client: Client, password: str = PASSWORD) -> int:
    token = client.form_token("/login")
    return client.request(
        "/login", "POST", form={"csrf_token": token, "password": password, "next": "/trends"}
    ).status


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("::", False),
        ("bedside.local", False),
    ],
)
def test_login_is_required_exactly_when_served_beyond_loopback(
    tmp_path: Path, host: str, loopback: bool
) -> None:
    assert is_loopback(host) is loopback
    assert app_config(str(tmp_path / "b.sqlite3"), host)["LOGIN_REQUIRED"] is (not loopback)
    assert app_config(str(tmp_path / "b.sqlite3"), "127.0.0.1", require_login=True)["LOGIN_REQUIRED"] is True


def test_beyond_loopback_every_page_and_api_needs_the_login(week: Week, locked_server: ServerHandle) -> None:
    client = Client(locked_server.url)
    for path in (
        "/",
        "/nights",
        f"/night/{week.night_ids[0]}",
        "/trends",
        "/checkin",
        "/status",
        "/export",
        "/export/report",
    ):
        reply = client.request(path)
        assert reply.status == 302 and reply.headers["Location"].startswith("/login"), path
    for path in ("/api/state", "/api/nights", "/api/trends", "/api/stream", "/api/session", "/api/status"):
        reply = client.request(path)
        assert reply.status == 401 and reply.json()["error"].startswith("login required"), path
    assert client.request("/healthz").status == 200
    assert client.request("/api/openapi.json").status == 200
    assert client.request("/static/style.css").status == 200
    assert _login(client) == 302
    for path in ("/", "/nights", "/trends", "/status", "/api/state", "/api/trends"):
        assert client.request(path).status == 200, path


def test_on_loopback_no_login_is_needed(week: Week) -> None:
    app = create_app(app_config(str(week.path), "127.0.0.1"))
    with start_in_thread(app) as handle:
        assert http(handle.url + "/").status == 200
        assert http(handle.url + "/api/state").status == 200


def test_a_real_lan_bound_server_refuses_without_login(week: Week) -> None:
    write_password_file(week.path.parent / "web-password", PASSWORD)
    app = create_app(app_config(str(week.path), "0.0.0.0"))
    with start_in_thread(app, host="0.0.0.0") as handle:
        client = Client(f"http://127.0.0.1:{handle.port}")
        assert client.request("/api/nights").status == 401
        assert _login(client) == 302
        assert client.request("/api/nights").status == 200


def test_wrong_password_is_401_and_login_redirects_only_within_the_site(locked_server: ServerHandle) -> None:
    client = Client(locked_server.url)
    token = client.form_token("/login")
    wrong = client.request("/login", "POST", form={"csrf_token": token, "password": "guess"})
    assert wrong.status == 401 and "wrong password" in wrong.text
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil"):
        reply = client.request(
            "/login", "POST", form={"csrf_token": token, "password": PASSWORD, "next": target}
        )
        assert reply.status == 302 and reply.headers["Location"] == "/", target
        client.cookies.clear()
        token = client.form_token("/login")


def test_without_a_password_only_the_setup_page_is_served(week: Week) -> None:
    app = create_app(app_config(str(week.path), "0.0.0.0"))
    client = app.test_client()
    page = client.get("/login")
    assert (
        page.status_code == 200 and b'id="setup-needed"' in page.data and b"bedside set-password" in page.data
    )
    assert client.get("/nights").headers["Location"] == "/login"
    api = client.get("/api/nights")
    assert api.status_code == 503 and "set-password" in api.get_json()["error"]
    token = client.get("/login").get_data(as_text=True).split('name="csrf_token" value="')
    assert len(token) == 1  # no form to post a password to


def test_five_failed_logins_a_minute_then_429(locked_server: ServerHandle) -> None:
    client = Client(locked_server.url)
    token = client.form_token("/login")
    for _ in range(5):
        assert client.request("/login", "POST", form={"csrf_token": token, "password": "nope"}).status == 401
    refused = client.request("/login", "POST", form={"csrf_token": token, "password": PASSWORD})
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    assert "too many failed logins" in refused.text
    assert client.request("/api/state").status == 401  # the right password did not get through


def test_the_limiter_forgets_failures_after_the_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=5, window_s=60.0, clock=lambda: now[0])
    for _ in range(5):
        limiter.failed("10.0.0.5")
    assert limiter.retry_after_s("10.0.0.5") == pytest.approx(60.0)
    assert limiter.retry_after_s("10.0.0.6") == 0.0
    now[0] = 59.0
    assert limiter.retry_after_s("10.0.0.5") == pytest.approx(1.0)
    now[0] = 60.0
    assert limiter.retry_after_s("10.0.0.5") == 0.0


@pytest.mark.parametrize(
    ("method", "path", "json_body"),
    [
        ("POST", "/api/tags", {"night_date": "2026-11-20", "tag": "heat"}),
        ("PUT", "/api/checkins/2026-11-20", {"sleep_quality": 3}),
        ("DELETE", "/api/tags/1", None),
        ("POST", "/api/events/x/relabel", {"label": "jerk"}),
        ("POST", "/api/notices/x/dismiss", None),
    ],
)
def test_api_writes_need_the_csrf_token_missing_400_wrong_403(
    week: Week, locked_server: ServerHandle, method: str, path: str, json_body: object
) -> None:
    client = Client(locked_server.url)
    assert _login(client) == 302
    missing = client.request(path, method, json_body=json_body)
    assert missing.status == 400 and "CSRF token missing" in missing.json()["error"]
    wrong = client.request(path, method, json_body=json_body, headers={"X-CSRF-Token": "forged"})
    assert wrong.status == 403 and "CSRF" in wrong.json()["error"]
    other = Client(locked_server.url)
    assert _login(other) == 302
    stolen = client.request(path, method, json_body=json_body, headers={"X-CSRF-Token": other.csrf()})
    assert stolen.status == 403


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/checkin", {"night_date": "2026-11-20", "sleep_quality": "3"}),
        ("/checkin/tags", {"night_date": "2026-11-20", "tag": "heat"}),
        ("/checkin/tags/1/remove", {"night_date": "2026-11-20"}),
        ("/night/x/relabel", {"event_id": "e", "label": "jerk"}),
        ("/notices/x/dismiss", {}),
        ("/logout", {}),
        ("/login", {"password": PASSWORD}),
    ],
)
def test_every_form_needs_the_csrf_token(
    locked_server: ServerHandle, path: str, form: dict[str, str]
) -> None:
    client = Client(locked_server.url)
    assert _login(client) == 302
    assert client.request(path, "POST", form=form).status == 400
    assert client.request(path, "POST", form={**form, "csrf_token": "forged"}).status == 403


def test_csrf_applies_on_loopback_too(week: Week) -> None:
    app = create_app(app_config(str(week.path), "127.0.0.1"))
    client = app.test_client()
    assert client.post("/api/tags", json={"night_date": "2026-11-20", "tag": "heat"}).status_code == 400


def test_the_session_cookie_is_httponly_and_samesite(locked_server: ServerHandle) -> None:
    client = Client(locked_server.url)
    token = client.form_token("/login")
    reply = client.request("/login", "POST", form={"csrf_token": token, "password": PASSWORD})
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and ("SameSite=Lax" in cookie or "SameSite=Strict" in cookie)


def test_logout_ends_the_session(locked_server: ServerHandle) -> None:
    client = Client(locked_server.url)
    assert _login(client) == 302
    token = client.csrf()
    assert client.request("/logout", "POST", form={"csrf_token": token}).status == 302
    assert client.request("/api/state").status == 401


def test_nothing_secret_reaches_pages_or_logs(
    week: Week, locked_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stored_hash = read_password_hash(week.path.parent / "web-password")
    assert stored_hash and PASSWORD not in stored_hash and stored_hash.startswith("scrypt:")
    secret = str(locked_app.config["SECRET_KEY"])
    client = locked_app.test_client()
    token = client.get("/login").get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"csrf_token": token, "password": "wrong guess"})
    client.post("/login", data={"csrf_token": token, "password": PASSWORD})
    pages = [
        client.get(p).get_data(as_text=True) for p in ("/", "/status", "/api/status", "/login", "/trends")
    ]
    for text in [*pages, caplog.text]:
        assert PASSWORD not in text and "wrong guess" not in text
        assert stored_hash not in text and secret not in text


def test_password_file_is_private_and_short_passwords_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "web-password"
    write_password_file(target, PASSWORD)
    assert os.stat(target).st_mode & 0o777 == 0o600
    from web.security import PasswordError

    with pytest.raises(PasswordError, match="at least 8"):
        write_password_file(target, "short")


def test_set_password_command_writes_a_hash_that_logs_in(week: Week) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    result = subprocess.run(
        [sys.executable, "-m", "service", "set-password", "--db", str(week.path), "--stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout
    app = create_app(app_config(str(week.path), "0.0.0.0"))
    with start_in_thread(app) as handle:
        client = Client(handle.url)
        assert _login(client) == 302
        assert client.request("/api/state").status == 200
    short = subprocess.run(
        [sys.executable, "-m", "service", "set-password", "--db", str(week.path), "--stdin"],
        input="abc\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert short.returncode != 0 and "at least 8 characters" in short.stderr


def test_an_unreadable_password_file_is_a_503_naming_it_not_a_500(week: Week, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder-not-a-file"
    folder.mkdir()
    app = create_app({**app_config(str(week.path), "0.0.0.0"), "PASSWORD_FILE": str(folder)})
    client = app.test_client()
    api = client.get("/api/state")
    assert api.status_code == 503 and "cannot read password file" in api.get_json()["error"]
    assert client.get("/login").status_code == 503


def test_bedside_web_command_wires_require_login_through_to_the_server(week: Week) -> None:
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    command = [sys.executable, "-m", "service", "web", "--db", str(week.path), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--require-login"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if http(url + "/healthz", timeout_s=2.0).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "bedside web did not start within 60 s"
            time.sleep(0.2)
        reply = http(url + "/api/state")
        assert reply.status == 503 and "set-password" in reply.json()["error"]  # login on, no password yet
        write_password_file(week.path.parent / "web-password", PASSWORD)
        client = Client(url)
        assert client.request("/api/state").status == 401
        assert _login(client) == 302
        assert client.request("/api/state").status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_session_key_is_never_written_through_a_link_planted_beside_the_database(tmp_path: Path) -> None:
    """The web process may run as root (``sudo bedside web``): the old writer opened the fixed name
    ``web-secret-key.tmp`` with O_TRUNC, following a link the service user had planted there."""
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "web-secret-key.tmp").symlink_to(victim)
    key = load_secret_key(state / "bedside.sqlite3")
    assert key and len(key) == 64
    assert victim.read_text() == "root's file\n"
    assert (state / "web-secret-key").read_text().strip() == key
    assert not (state / "web-secret-key").is_symlink()


def test_a_session_key_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "web-secret-key").symlink_to("/dev/zero")
    assert load_secret_key(state / "bedside.sqlite3") is None  # a key for this run only, no endless read
