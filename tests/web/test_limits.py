"""The dashboard stays up under load a LAN client can make: huge bodies, many live streams, idle sockets.

All over real HTTP to the real app under waitress (``web.serve.start_in_thread``, the settings
``bedside web`` uses). Other client addresses are other loopback addresses (127.0.0.N).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests import webutil
from tests.webutil import Client, Week, create_database, http
from web import MAX_BODY_BYTES, create_app
from web.security import write_password_file
from web.serve import MAX_BODY_BYTES_SERVER, ServerHandle, app_config, start_in_thread

week_template = webutil.week_template
week = webutil.week

PASSWORD = "correct horse battery"


def _raw_request(port: int, head: str, source_ip: str = "127.0.0.1", timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=(source_ip, 0))
    sock.sendall(head.encode())
    return sock


def _read_head(sock: socket.socket) -> tuple[int, str]:
    """The status code and the text received up to the end of the headers (and maybe more)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    text = received.decode("utf-8", "replace")
    return int(text.split(" ", 2)[1]), text


def _read_body(sock: socket.socket, head_and_more: str) -> str:
    """The rest of a small non-streaming answer with a Content-Length (the body as text)."""
    head, _, body = head_and_more.partition("\r\n\r\n")
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length:")
    )
    data = body.encode()
    while len(data) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


# --- request bodies --------------------------------------------------------------------------


@pytest.fixture
def locked_server(week: Week) -> Iterator[ServerHandle]:
    write_password_file(week.path.parent / "web-password", PASSWORD)
    with start_in_thread(create_app(app_config(str(week.path), "0.0.0.0"))) as handle:
        yield handle


def test_a_256_mb_login_post_is_refused_with_413_before_its_body_is_read(locked_server: ServerHandle) -> None:
    claimed = 256 * 1024 * 1024
    sock = _raw_request(
        locked_server.port,
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {claimed}\r\n\r\n",
    )
    try:
        sock.sendall(b"password=" + b"a" * 65536)  # the start of the body; the rest never comes
        started = time.monotonic()
        status, _ = _read_head(sock)
        assert status == 413
        assert time.monotonic() - started < 3.0  # answered without waiting for 256 MB
    finally:
        sock.close()
    assert http(locked_server.url + "/healthz").status == 200


def test_a_body_over_the_app_limit_is_a_json_413_under_the_api(open_server: ServerHandle) -> None:
    assert MAX_BODY_BYTES < 200 * 1024 < MAX_BODY_BYTES_SERVER
    client = Client(open_server.url)
    token = client.csrf()
    body = {"night_date": "2026-11-20", "tag": "medication", "detail": "x" * 200 * 1024}
    reply = client.request("/api/tags", "POST", json_body=body, headers={"X-CSRF-Token": token})
    assert reply.status == 413
    assert reply.headers["Content-Type"] == "application/json"
    assert "too large" in reply.json()["error"].lower()
    form = client.request("/login", "POST", form={"csrf_token": token, "password": "p" * 200 * 1024})
    assert form.status == 413
    ok = client.request(
        "/api/tags",
        "POST",
        json_body={"night_date": "2026-11-20", "tag": "heat"},
        headers={"X-CSRF-Token": token},
    )
    assert ok.status == 201  # an ordinary write still works


open_app = webutil.open_app
open_server = webutil.open_server


# --- live streams ----------------------------------------------------------------------------


@pytest.fixture
def stream_server(tmp_path: Path) -> Iterator[ServerHandle]:
    path = tmp_path / "bedside.sqlite3"
    create_database(path)
    app: Flask = create_app(
        {"DATABASE": str(path), "LOGIN_REQUIRED": False, "STREAM_TICK_S": 0.25, "STREAM_MAX_S": 60.0}
    )
    with start_in_thread(app) as handle:  # the thread count `bedside web` uses
        yield handle


def _open_stream(port: int, source_ip: str) -> tuple[socket.socket, int, str]:
    sock = _raw_request(
        port, "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", source_ip
    )
    status, text = _read_head(sock)
    return sock, status, text


def _fast(url: str) -> float:
    started = time.monotonic()
    reply = http(url, timeout_s=5.0)
    assert reply.status == 200, url
    return time.monotonic() - started


def test_streams_are_bounded_per_client_and_in_total_and_pages_still_answer(
    stream_server: ServerHandle,
) -> None:
    port = stream_server.port
    opened: list[socket.socket] = []
    try:
        for _ in range(3):
            sock, status, text = _open_stream(port, "127.0.0.1")
            opened.append(sock)
            assert status == 200 and "text/event-stream" in text
        sock, status, text = _open_stream(port, "127.0.0.1")
        opened.append(sock)
        assert status == 429 and "Retry-After:" in text
        assert "too many live streams from 127.0.0.1" in json.loads(_read_body(sock, text))["error"]

        # Eight more addresses, one stream each (the old server had 8 threads in all): 3 fit.
        statuses = []
        for n in range(2, 10):
            sock, status, text = _open_stream(port, f"127.0.0.{n}")
            opened.append(sock)
            statuses.append(status)
            if status == 503:
                assert "at most 6 live streams" in json.loads(_read_body(sock, text))["error"]
        assert statuses == [200] * 3 + [503] * 5

        # Six streams hold six threads; the others serve pages and health checks at once.
        assert _fast(stream_server.url + "/healthz") < 1.0
        assert _fast(stream_server.url + "/") < 2.0
        assert _fast(stream_server.url + "/api/state") < 1.0

        # A closed stream gives its place back (found on its next write, within a heartbeat or two).
        opened[0].close()
        deadline = time.monotonic() + 20.0
        while True:
            sock, status, _ = _open_stream(port, "127.0.0.20")
            opened.append(sock)
            if status == 200:
                break
            assert time.monotonic() < deadline, "a closed stream's place was not given back within 20 s"
            time.sleep(0.5)
    finally:
        for sock in opened:
            sock.close()


# --- idle connections ------------------------------------------------------------------------


def test_idle_connections_neither_lock_out_clients_nor_stay_open(stream_server: ServerHandle) -> None:
    idle = [socket.create_connection(("127.0.0.1", stream_server.port), timeout=5) for _ in range(150)]
    try:
        # Waitress used to stop accepting at 100 connections: health checks then hung for minutes.
        assert _fast(stream_server.url + "/healthz") < 2.0
        # And idle sockets are closed by the server (20 s without a byte, checked every 5 s).
        deadline = time.monotonic() + 45.0
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                assert sock.recv(1) == b""
            except TimeoutError:
                pytest.fail("an idle connection was still open 45 s later")
    finally:
        for sock in idle:
            sock.close()


def test_a_closed_tab_is_not_logged_at_info_but_other_waitress_lines_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """waitress's "Client disconnected while serving /api/stream" came at INFO for every closed tab."""
    import web.serve  # noqa: F401  (installs the filter on waitress's logger)

    waitress_log = logging.getLogger("waitress")
    with caplog.at_level(logging.INFO, logger="waitress"):
        waitress_log.info("Client disconnected while serving /api/stream")
        waitress_log.info("Serving on http://127.0.0.1:8080")
    messages = [r.getMessage() for r in caplog.records if r.name == "waitress"]
    assert messages == ["Serving on http://127.0.0.1:8080"]
    with caplog.at_level(logging.DEBUG, logger="waitress"):
        waitress_log.info("Client disconnected while serving /api/stream")
    assert any(r.getMessage().startswith("Client disconnected") for r in caplog.records)
