"""`bedside status` and the systemd handshake: READY, watchdog pings fed by the pump, STOPPING."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hardware.block import Block
from hardware.simulated import SimulatedNight
from service.app import Daemon
from service.config import load_config
from service.status import health
from tests.daemonutil import REPO, start_daemon, stop_daemon
from tests.mqttutil import wait_until


def _status(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "status", "--db", str(db)], capture_output=True, text=True, cwd=REPO
    )


def test_status_without_a_database_is_unhealthy_and_says_why(tmp_path: Path) -> None:
    proc = _status(tmp_path / "none.sqlite3")
    assert proc.returncode == 1
    assert "no database" in proc.stdout


def test_status_is_healthy_while_the_daemon_runs_and_stale_after(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    proc = start_daemon(
        ["--db", str(db), "--no-mqtt", "--no-web", "--speed", "5", "--seed", "1"], tmp_path / "d.log"
    )
    try:
        wait_until(lambda: _status(db).returncode == 0, timeout_s=60, what="healthy status")
        out = _status(db).stdout
        assert "healthy" in out and "detector" in out
    finally:
        stop_daemon(proc)
    later = datetime.now(UTC) + timedelta(minutes=5)
    doc = health(str(db), "bedside", now=later)
    assert not doc["healthy"] and any("stopped or stalled" in p for p in doc["problems"])


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()


def _drain(sock: socket.socket, until: float) -> list[tuple[float, str]]:
    got: list[tuple[float, str]] = []
    while time.monotonic() < until:
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue
    return got


def test_daemon_says_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "1000000"}
    proc = start_daemon(
        ["--db", str(tmp_path / "b.sqlite3"), "--no-mqtt", "--no-web", "--speed", "1"],
        tmp_path / "d.log",
        env=env,
    )
    try:
        got = _drain(notify_socket, time.monotonic() + 8)
        proc.send_signal(signal.SIGTERM)
        got += _drain(notify_socket, time.monotonic() + 3)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    texts = [t for _, t in got]
    assert texts[0].startswith("READY=1")
    pings = [t for t in texts if t == "WATCHDOG=1"]
    assert len(pings) >= 4, texts
    assert texts[-1] == "STOPPING=1"


class StallingSource:
    """Delivers 3 s of a simulated night in real time, then never another block (a hung sensor)."""

    rate_hz = 50.0
    channels = 1

    def __init__(self) -> None:
        self.night = SimulatedNight(seed=1, rate_hz=50.0, duration_s=60.0)
        self.closed = asyncio.Event()

    async def _blocks(self) -> AsyncIterator[Block]:
        start = datetime.now(UTC)
        for k in range(30):
            yield Block(start + timedelta(seconds=k / 10), k * 5, 50.0, self.night.render(k * 5, 5))
            await asyncio.sleep(0.1)
        await self.closed.wait()

    def __aiter__(self) -> AsyncIterator[Block]:
        return self._blocks()

    async def close(self) -> None:
        self.closed.set()


def test_a_stalled_pump_stops_the_watchdog_pings(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    cfg = load_config(
        environ={},
        overrides={"storage": {"db_path": str(tmp_path / "b.sqlite3")}, "mqtt": {"enabled": False},
                   "sessions": {"mode": "run"}, "web": {"enabled": False}},
    )  # fmt: skip
    daemon = Daemon(cfg, StallingSource(), "test")
    got: list[tuple[float, str]] = []
    until = time.monotonic() + 6.0

    async def scenario() -> None:
        run = asyncio.create_task(daemon.run())
        got.extend(await asyncio.to_thread(_drain, notify_socket, until))
        daemon.request_stop("test over")
        await asyncio.wait_for(run, 30)

    asyncio.run(scenario())
    pings = [t for t, text in got if text == "WATCHDOG=1"]
    assert len(pings) >= 5, "pings while blocks flow"
    assert until - pings[-1] >= 2.0, "no ping for seconds once the pump stalled"
