"""The Tonight page's live stream (server-sent events) over real HTTP."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from tests.webutil import add_event, add_night, create_database, set_live_state
from web import create_app
from web.serve import start_in_thread


def _read_messages(
    sock: socket.socket, want: int, timeout_s: float
) -> tuple[list[dict[str, Any]], list[float]]:
    """Read SSE ``tonight`` messages until ``want`` arrived; their data and arrival times."""
    sock.settimeout(timeout_s)
    buffer = b""
    found: list[dict[str, Any]] = []
    times: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < want and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = block.decode().splitlines()
            if "event: tonight" in lines:
                data = next(line[len("data: ") :] for line in lines if line.startswith("data: "))
                found.append(json.loads(data))
                times.append(time.monotonic())
    return found, times


def _open_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def test_the_stream_sends_the_state_at_once_and_a_change_within_two_seconds(tmp_path: Path) -> None:
    path = tmp_path / "bedside.sqlite3"
    create_database(path)
    add_night(path, "n1", "2026-11-22T22:00:00.000Z")
    set_live_state(path, {"in_bed": True, "asleep": False, "night_id": "n1"}, "2026-11-22T22:00:01.000Z")
    app = create_app(
        {"DATABASE": str(path), "LOGIN_REQUIRED": False, "STREAM_TICK_S": 0.25, "STREAM_MAX_S": 20}
    )
    with start_in_thread(app) as handle:
        sock = _open_stream(handle.port)
        try:
            first, _ = _read_messages(sock, 1, 5.0)
            assert first and first[0]["state"]["asleep"] is False and first[0]["events"] == []
            changed_at = time.monotonic()
            add_event(path, "e1", "n1", "spasm", "2026-11-22T23:00:00.000Z", "2026-11-22T23:00:03.000Z", 3.0)
            set_live_state(
                path, {"in_bed": True, "asleep": True, "night_id": "n1"}, "2026-11-22T23:00:04.000Z"
            )
            later, times = _read_messages(sock, 1, 5.0)
            assert later, "no message after the change"
            assert times[0] - changed_at < 2.0
            assert later[0]["state"]["asleep"] is True
            assert [e["id"] for e in later[0]["events"]] == ["e1"]
            assert later[0]["night"]["counts"]["spasm"] == 1
        finally:
            sock.close()


def test_the_stream_ends_after_its_maximum_so_threads_are_freed(tmp_path: Path) -> None:
    path = tmp_path / "bedside.sqlite3"
    create_database(path)
    app = create_app(
        {"DATABASE": str(path), "LOGIN_REQUIRED": False, "STREAM_TICK_S": 0.2, "STREAM_MAX_S": 1.0}
    )
    with start_in_thread(app) as handle:
        sock = _open_stream(handle.port)
        try:
            sock.settimeout(5.0)
            started = time.monotonic()
            received = b""
            while not received.endswith(b"0\r\n\r\n"):  # the chunked body's last chunk
                chunk = sock.recv(65536)
                assert chunk, "connection closed before the stream ended cleanly"
                received += chunk
            assert time.monotonic() - started < 4.0
            assert b"retry: 1000" in received and b"text/event-stream" in received
        finally:
            sock.close()


def test_tonight_page_points_its_script_at_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "bedside.sqlite3"
    create_database(path)
    page = create_app({"DATABASE": str(path), "LOGIN_REQUIRED": False}).test_client().get("/")
    text = page.get_data(as_text=True)
    assert 'data-stream-url="/api/stream"' in text and 'data-live="static"' in text
