"""Who may reach the dashboard and for how long: Host and Origin, the page after login,
revocable sessions, the Secure cookie and the login limits (per address and in all).

Real HTTP to the real app under waitress; other clients are other loopback addresses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests import webutil
from tests.webutil import Client, Week, http
from web import create_app
from web.security import write_password_file
from web.serve import ServerHandle, app_config, start_in_thread

week_template = webutil.week_template
week = webutil.week

PASSWORD = "correct horse battery"


@pytest.fixture
def locked_app(week: Week) -> Flask:
    write_password_file(week.path.parent / "web-password", PASSWORD)
    return create_app(app_config(str(week.path), "0.0.0.0", allowed_hosts=["bedside.example.org"]))


@pytest.fixture
def locked_server(locked_app: Flask) -> Iterator[ServerHandle]:
    with start_in_thread(locked_app) as handle:
        yield handle


def _login(client: Client, password: str = PASSWORD, next_page: str = "/trends") -> webutil.Reply:
    token = client.form_token("/login")
    form = {"csrf_token": token, "password": password, "next": next_page}
    return client.request("/login", "POST", form=form)


# --- the page after login (open redirect, header injection) ----------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\nX: 1",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
    ],
)
def test_only_a_path_on_this_site_is_the_page_after_login(locked_server: ServerHandle, target: str) -> None:
    client = Client(locked_server.url)
    reply = _login(client, next_page=target)
    assert reply.status == 302 and reply.headers["Location"] == "/", target
    # Logged in, GET /login?next=... redirects at once: the same rule, and no 500 for CR/LF.
    again = client.request("/login?" + urllib.parse.urlencode({"next": target}))
    assert again.status == 302 and again.headers["Location"] == "/", target


def test_a_path_on_this_site_is_kept_after_login(locked_server: ServerHandle) -> None:
    client = Client(locked_server.url)
    assert (
        _login(client, next_page="/nights?sort=heart&order=asc").headers["Location"]
        == "/nights?sort=heart&order=asc"
    )


# --- sessions end on logout and on a new password -------------------------------------------


def _replay(url: str, cookie: str, path: str) -> webutil.Reply:
    return Client(url).request(path, headers={"Cookie": cookie})


def test_a_copied_cookie_stops_working_after_logout_even_after_a_restart(
    week: Week, locked_app: Flask
) -> None:
    with start_in_thread(locked_app) as handle:
        client = Client(handle.url)
        assert _login(client).status == 302
        stolen = client.session_cookie()
        assert _replay(handle.url, stolen, "/api/state").status == 200
        assert client.request("/logout", "POST", form={"csrf_token": client.csrf()}).status == 302
        assert _replay(handle.url, stolen, "/api/state").status == 401
        page = _replay(handle.url, stolen, "/nights")
        assert page.status == 302 and page.headers["Location"].startswith("/login")
    # A new web process on the same state directory still refuses it.
    restarted = create_app(app_config(str(week.path), "0.0.0.0"))
    with start_in_thread(restarted) as handle:
        assert _replay(handle.url, stolen, "/api/state").status == 401
        other = Client(handle.url)
        assert _login(other).status == 302 and other.request("/api/state").status == 200


def test_a_new_password_ends_every_existing_session(week: Week, locked_server: ServerHandle) -> None:
    phone, tablet = Client(locked_server.url), Client(locked_server.url)
    assert _login(phone).status == 302 and _login(tablet).status == 302
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    result = subprocess.run(
        [sys.executable, "-m", "service", "set-password", "--db", str(week.path), "--stdin"],
        input="a brand new password\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert phone.request("/api/state").status == 401
    assert tablet.request("/").status == 302
    assert _login(phone, PASSWORD).status == 401
    assert _login(phone, "a brand new password").status == 302 and phone.request("/api/state").status == 200


def test_the_cookie_is_secure_when_the_request_came_over_https(locked_server: ServerHandle) -> None:
    plain = _login(Client(locked_server.url))
    assert "Secure" not in plain.headers["Set-Cookie"]
    client = Client(locked_server.url)
    token = client.form_token("/login")
    # A TLS proxy on the same machine says so with X-Forwarded-Proto (trusted from 127.0.0.1 only).
    tls = client.request(
        "/login",
        "POST",
        form={"csrf_token": token, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert tls.status == 302 and "Secure" in tls.headers["Set-Cookie"]


# --- Host and Origin (DNS rebinding, cross-site writes) ---------------------------------------


def test_an_unknown_host_gets_no_token_and_cannot_write(week: Week) -> None:
    app = create_app(app_config(str(week.path), "127.0.0.1"))  # loopback: no login needed
    with start_in_thread(app) as handle:
        rebinding = Client(handle.url)
        evil = {"Host": f"rebind.evil.example:{handle.port}"}
        refused = rebinding.request("/api/session", headers=evil)
        assert refused.status == 400 and "not a name this dashboard answers to" in refused.json()["error"]
        assert "csrf_token" not in refused.json()
        assert rebinding.request("/", headers=evil).status == 400
        token = rebinding.csrf()  # through the address it works...
        write = rebinding.request(
            "/api/tags",
            "POST",
            json_body={"night_date": "2026-11-20", "tag": "heat"},
            headers={**evil, "X-CSRF-Token": token},
        )
        assert write.status == 400  # ...but not under another name
        hostname = socket.gethostname()
        for host in (
            "127.0.0.1",
            "localhost",
            "[::1]",
            hostname,
            f"{hostname.split('.')[0]}.local",
            "192.168.1.20",
        ):
            assert rebinding.request("/healthz", headers={"Host": f"{host}:{handle.port}"}).status == 200, (
                host
            )


def test_configured_host_names_are_answered(locked_server: ServerHandle) -> None:
    assert (
        Client(locked_server.url).request("/healthz", headers={"Host": "bedside.example.org"}).status == 200
    )
    assert Client(locked_server.url).request("/healthz", headers={"Host": "other.example.org"}).status == 400


def test_a_write_from_another_origin_is_refused(week: Week) -> None:
    app = create_app(app_config(str(week.path), "127.0.0.1"))
    with start_in_thread(app) as handle:
        client = Client(handle.url)
        token = client.csrf()
        body = {"night_date": "2026-11-20", "tag": "heat"}
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{handle.port + 1}"):
            headers = {"X-CSRF-Token": token, "Origin": origin}
            reply = client.request("/api/tags", "POST", json_body=body, headers=headers)
            assert reply.status == 403 and "may not write here" in reply.json()["error"], origin
        same = client.request(
            "/api/tags", "POST", json_body=body, headers={"X-CSRF-Token": token, "Origin": handle.url}
        )
        assert same.status == 201
        # Browsers send "Origin: null" with same-site form posts under Referrer-Policy no-referrer;
        # same-origin keeps the real Origin on the dashboard's own posts (and none for other sites).
        assert client.request("/checkin").headers["Referrer-Policy"] == "same-origin"


# --- the login limits -------------------------------------------------------------------------


def _together(n: int, attempt: object) -> list[int]:
    """Run ``attempt()`` in ``n`` threads released at the same moment; their statuses."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait(timeout=30)
        status = attempt()  # type: ignore[operator]
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return statuses


def test_forty_simultaneous_guesses_from_one_address_get_five_password_checks(
    locked_server: ServerHandle,
) -> None:
    client = Client(locked_server.url)
    token = client.form_token("/login")

    def guess() -> int:
        return client.request(
            "/login", "POST", form={"csrf_token": token, "password": "guess"}, timeout_s=60
        ).status

    statuses = _together(40, guess)
    assert sorted(statuses) == [401] * 5 + [429] * 35


def test_guesses_from_many_addresses_hit_the_global_limit(locked_server: ServerHandle) -> None:
    statuses = []
    for n in range(2, 42):  # 40 loopback addresses, one guess each
        client = Client(locked_server.url, source_ip=f"127.0.0.{n}")
        token = client.form_token("/login")
        statuses.append(
            client.request("/login", "POST", form={"csrf_token": token, "password": "guess"}).status
        )
    assert statuses == [401] * 20 + [429] * 20
    assert http(locked_server.url + "/healthz").status == 200


def _wait_healthy(
    url: str, proc: subprocess.Popen[bytes], why: Callable[[], str], timeout_s: float = 60.0
) -> None:
    """Wait until ``url``/healthz answers 200; fail with ``why()`` if ``proc`` ends or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if http(url + "/healthz", timeout_s=2.0).status == 200:
                return
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, why()
        time.sleep(0.2)


def test_web_allowed_hosts_from_the_config_file_reach_bedside_web(week: Week, tmp_path: Path) -> None:
    config = tmp_path / "bedside.toml"
    config.write_text('[web]\nallowed_hosts = ["bedside.example.org", ".home.arpa"]\n', encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    command = [sys.executable, "-m", "service", "web", "--config", str(config), "--db", str(week.path)]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, lambda: "bedside web did not start")
        client = Client(url)
        for host, status in (("bedside.example.org", 200), ("pi.home.arpa", 200), ("evil.example", 400)):
            assert client.request("/healthz", headers={"Host": host}).status == status, host
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_web_allowed_hosts_reach_the_dashboard_the_daemon_starts(tmp_path: Path) -> None:
    """``bedside run`` starts the dashboard as a child: the config's allowed names must reach it too
    (the child used to get only the listen address, port and password options)."""
    from tests.daemonutil import start_daemon, stop_daemon

    config = tmp_path / "bedside.toml"
    config.write_text('[web]\nallowed_hosts = ["bedside.example.org"]\n', encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--config", str(config), "--db", str(tmp_path / "b.sqlite3"), "--no-mqtt", "--speed", "1",
            "--duration-s", "3600", "--web-port", str(port)]  # fmt: skip
    proc = start_daemon(args, tmp_path / "d.log")
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, lambda: (tmp_path / "d.log").read_text())
        client = Client(url)
        assert client.request("/healthz", headers={"Host": "bedside.example.org"}).status == 200
        assert client.request("/healthz", headers={"Host": "evil.example"}).status == 400
    finally:
        assert stop_daemon(proc) == 0, (tmp_path / "d.log").read_text()
