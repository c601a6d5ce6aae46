"""A real Home Assistant on loopback for tests, connected to a real Mosquitto broker.

``HomeAssistant(workdir, broker_host, broker_port)`` writes a minimal ``configuration.yaml`` in
``workdir``, starts ``hass --skip-pip`` from the separate HA venv (``scripts/ha-venv.sh`` makes it;
HA pins paho-mqtt 1.6 and Bedside needs 2.x) on a free port, onboards an owner over the REST API,
takes a long-lived token and adds the MQTT config entry for the broker. ``start()`` returns once
the mqtt integration is loaded, connected and subscribed to the discovery topics.

Everything the tests need is stdlib: REST over ``urllib`` and the registries over a minimal
websocket client (``_WebSocket``), so the test process stays in the project venv.

A missing HA venv skips the test, except under CI (``CI`` set), where it is an error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

from tests.broker import Broker, free_port

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO / ".venv-ha"

#: Seconds to wait for HA to answer HTTP, reach RUNNING and load mqtt (a cold start takes ~3 s here).
START_TIMEOUT_S = 120.0
#: Seconds ``stop()`` waits after SIGTERM before it kills HA.
STOP_TIMEOUT_S = 30.0

USERNAME = "bedside-test"
PASSWORD = "bedside-test-password"  # a throwaway owner of a loopback-only test instance

_LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\((?P<thread>[^)]*)\) \[(?P<logger>[^\]]+)\] (?P<message>.*)$"
)
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
DISCOVERY_ERROR = re.compile(r"Error .* when processing MQTT discovery message")
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ha_venv() -> Path:
    """The HA venv: ``$HA_VENV`` if set (relative to the repo), else ``.venv-ha`` in the repo."""
    env = os.environ.get("HA_VENV")
    return (REPO / env).resolve() if env else DEFAULT_VENV


def in_ci() -> bool:
    """Whether ``CI`` is set to something other than empty, 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_hass() -> Path:
    """The ``hass`` executable of the HA venv.

    Missing: ``pytest.skip`` on a developer's machine, but a RuntimeError (a test error) under CI,
    where the HA tests must run.
    """
    hass = ha_venv() / "bin" / "hass"
    if hass.exists():
        return hass
    message = f"Home Assistant venv not found ({hass} is missing): run `bash scripts/ha-venv.sh` first"
    if in_ci():
        raise RuntimeError(f"{message} (CI is set, so this is an error, not a skip)")
    pytest.skip(message)


@dataclass(frozen=True)
class LogRecord:
    """One record of HA's log file; ``text`` is the whole record, traceback lines included."""

    time: str
    level: str
    logger: str
    message: str
    text: str

    @property
    def levelno(self) -> int:
        return _LEVELS[self.level]


def parse_log(text: str) -> list[LogRecord]:
    """Split HA's log file into records (lines that don't start a record continue the previous one)."""
    records: list[LogRecord] = []
    current: list[str] = []
    head: re.Match[str] | None = None

    def flush() -> None:
        if head is not None:
            records.append(
                LogRecord(
                    head["time"],
                    head["level"],
                    head["logger"],
                    "\n".join([head["message"], *current[1:]]),
                    "\n".join(current),
                )
            )

    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            flush()
            head, current = match, [line]
        elif head is not None:
            current.append(line)
    flush()
    return records


class HomeAssistantError(RuntimeError):
    """HA did not start, answered an HTTP or websocket call with an error, or timed out."""


class HomeAssistant:
    """One ``hass`` process with its own config dir under ``workdir``, bound to 127.0.0.1.

    Use as a context manager, or call ``start()`` and ``stop()``. After ``start()``:
    ``url``, ``token`` (long-lived), ``mqtt_entry_id``, ``timings`` (seconds per start phase).
    """

    def __init__(
        self,
        workdir: Path,
        broker_host: str,
        broker_port: int,
        *,
        log_levels: dict[str, str] | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        extra_yaml: str = "",
        files: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.host = "127.0.0.1"
        self.port = 0
        self.start_timeout_s = start_timeout_s
        self.extra_yaml = extra_yaml  # appended to configuration.yaml (e.g. automations)
        self.files = dict(files or {})  # config-dir-relative path -> text (e.g. blueprints)
        # mqtt.client at DEBUG logs "Subscribing to <topic>", which wait_for_subscription() reads.
        self.log_levels = {"homeassistant.components.mqtt": "debug", **(log_levels or {})}
        self.token = ""
        self.mqtt_entry_id = ""
        self.timings: dict[str, float] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None

    # ---------------------------------------------------------------- paths and lifecycle

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def log_path(self) -> Path:
        return self.workdir / "home-assistant.log"

    @property
    def stdout_path(self) -> Path:
        """HA's stdout and stderr (the console log, and anything printed before logging is set up)."""
        return self.workdir / "hass.stdout"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> HomeAssistant:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        logs = "".join(f"    {name}: {level}\n" for name, level in self.log_levels.items())
        # No default_config: only HA's always-on integrations plus api, config (via frontend) and
        # mqtt (added as a config entry). Location, units and zone are fixed so HA detects nothing.
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: Bedside test\n"
            "  latitude: 52.37\n"
            "  longitude: 4.89\n"
            "  elevation: 0\n"
            "  unit_system: metric\n"
            "  time_zone: UTC\n"
            "  country: NL\n"
            "  currency: EUR\n"
            "  language: en\n"
            "http:\n"
            f"  server_host: {self.host}\n"
            f"  server_port: {self.port}\n"
            "api:\n"
            "logger:\n"
            "  default: info\n"
            "  logs:\n" + logs + self.extra_yaml
        )
        for rel, text in self.files.items():
            target = self.config_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def start(self) -> None:
        """Start HA, onboard, add the MQTT entry; HomeAssistantError (with the log) on failure."""
        hass = require_hass()
        if self.proc is not None:
            raise HomeAssistantError("already started")
        self.port = free_port()
        self._write_config()
        t0 = time.monotonic()
        self._stdout = self.stdout_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(hass),
                "--config",
                str(self.config_dir),
                "--skip-pip",
                "--log-no-color",
                "--log-file",
                str(self.log_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        try:
            deadline = t0 + self.start_timeout_s
            self._wait(lambda: self._http_ok("/api/onboarding"), deadline, "HA's HTTP API")
            self.timings["http"] = time.monotonic() - t0
            self._onboard()
            self._wait(lambda: self.config().get("state") == "RUNNING", deadline, "HA state RUNNING")
            self.timings["running"] = time.monotonic() - t0
            self._add_mqtt_entry()
            self._wait(self._mqtt_connected, deadline, "the mqtt integration to connect")
            for topic in ("homeassistant/+/+/config", "homeassistant/+/+/+/config"):
                self.wait_for_subscription(topic, timeout_s=max(0.0, deadline - time.monotonic()))
            self.timings["ready"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL. Safe to call twice."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    def _wait(self, predicate: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise HomeAssistantError(
                    f"hass exited (code {code}) while waiting for {what}\n{self.log_tail()}"
                )
            if "Activating recovery mode" in self.log_text():
                raise HomeAssistantError(
                    "HA fell back to recovery mode (an always-on integration failed to set up; "
                    f"rerun scripts/ha-venv.sh?)\n{self.log_tail()}"
                )
            if predicate():
                return
            if time.monotonic() > deadline:
                raise HomeAssistantError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.05)

    # ---------------------------------------------------------------- REST

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        form: bool = False,
        auth: bool = True,
        timeout_s: float = 10.0,
    ) -> Any:
        """One HTTP call to HA; the decoded JSON answer (None for an empty one).

        HomeAssistantError for an HTTP error status, with the answer's body in the message.
        """
        headers: dict[str, str] = {}
        data: bytes | None = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            with err:
                detail = err.read().decode(errors="replace")
            raise HomeAssistantError(f"{method} {path}: HTTP {err.code} {detail}") from None
        return json.loads(raw) if raw else None

    def _http_ok(self, path: str) -> bool:
        try:
            self.request("GET", path, auth=False, timeout_s=2.0)
        except (OSError, HomeAssistantError):
            return False
        return True

    def _onboard(self) -> None:
        client_id = f"{self.url}/"
        user = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "Bedside test",
                "username": USERNAME,
                "password": PASSWORD,
                "language": "en",
            },
            auth=False,
        )
        tokens = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id},
            form=True,
            auth=False,
        )
        self.token = tokens["access_token"]  # 30 minutes; swapped for a long-lived one next
        self.token = self.ws(
            {"type": "auth/long_lived_access_token", "client_name": "bedside-tests", "lifespan": 365}
        )

    def _add_mqtt_entry(self) -> None:
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("type") != "form" or flow.get("step_id") != "broker":
            raise HomeAssistantError(f"unexpected MQTT config flow step: {flow}")
        done = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": self.broker_host, "port": self.broker_port},
        )
        if done.get("type") != "create_entry":
            raise HomeAssistantError(f"MQTT config flow did not create an entry: {done}")
        self.mqtt_entry_id = done["result"]["entry_id"]

    def _mqtt_connected(self) -> bool:
        entries = self.request("GET", "/api/config/config_entries/entry?domain=mqtt")
        if not any(e["entry_id"] == self.mqtt_entry_id and e["state"] == "loaded" for e in entries):
            return False
        return bool(self.mqtt_diagnostics().get("connected"))

    def config(self) -> dict[str, Any]:
        """``GET /api/config``: HA's core config, with ``state`` (NOT_RUNNING, STARTING, RUNNING...)."""
        result: dict[str, Any] = self.request("GET", "/api/config")
        return result

    def mqtt_diagnostics(self) -> dict[str, Any]:
        """The mqtt entry's diagnostics: ``connected``, ``devices`` (with their entities and states)
        and ``mqtt_debug_info`` (each entity's subscriptions, recent messages and discovery payload)."""
        result = self.request("GET", f"/api/diagnostics/config_entry/{self.mqtt_entry_id}")
        data: dict[str, Any] = result["data"]
        return data

    # ---------------------------------------------------------------- states

    def states(self) -> list[dict[str, Any]]:
        """Every entity's state object (``entity_id``, ``state``, ``attributes``, ...)."""
        result: list[dict[str, Any]] = self.request("GET", "/api/states")
        return result

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """One entity's state object, or None when HA has no such entity."""
        try:
            result: dict[str, Any] = self.request("GET", f"/api/states/{entity_id}")
        except HomeAssistantError as err:
            if "HTTP 404" in str(err):
                return None
            raise
        return result

    def wait_for_state(
        self,
        entity_id: str,
        predicate: Callable[[dict[str, Any]], bool] | str,
        timeout_s: float = 20.0,
    ) -> dict[str, Any]:
        """Poll until the entity exists and ``predicate(state_object)`` holds (a str: the state
        equals it); the matching state object. TimeoutError with the last state and mqtt problems."""
        check = (lambda s: s["state"] == predicate) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while True:
            last = self.state(entity_id)
            if last is not None and check(last):
                return last
            if time.monotonic() > deadline:
                problems = "\n".join(r.text for r in self.mqtt_problems()) or "(none)"
                raise TimeoutError(
                    f"{entity_id}: condition {predicate!r} not met in {timeout_s} s; last state: {last}\n"
                    f"mqtt warnings and errors in HA's log:\n{problems}"
                )
            time.sleep(0.05)

    def wait_for_subscription(self, topic: str, timeout_s: float = 20.0) -> None:
        """Wait until HA's MQTT client has sent SUBSCRIBE for ``topic`` (the exact filter string).

        Entities subscribe about a second after discovery (HA batches subscriptions); wait on this
        before publishing a payload that must not be retained, such as an event.
        """
        needle = f"Subscribing to {topic}, mid:"
        deadline = time.monotonic() + timeout_s
        while needle not in self.log_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"HA did not subscribe to {topic!r} in {timeout_s} s")
            time.sleep(0.05)

    # ---------------------------------------------------------------- registries (websocket)

    def ws(self, command: dict[str, Any], timeout_s: float = 10.0) -> Any:
        """Send one websocket API command (without ``id``); its ``result``.

        HomeAssistantError when HA answers ``success: false``.
        """
        with _WebSocket.connect(self.host, self.port, timeout_s) as sock:
            greeting = sock.recv_json()
            if greeting.get("type") != "auth_required":
                raise HomeAssistantError(f"unexpected websocket greeting: {greeting}")
            sock.send_json({"type": "auth", "access_token": self.token})
            auth = sock.recv_json()
            if auth.get("type") != "auth_ok":
                raise HomeAssistantError(f"websocket auth failed: {auth}")
            sock.send_json({"id": 1, **command})
            while True:
                answer = sock.recv_json()
                if answer.get("id") == 1 and answer.get("type") == "result":
                    break
        if not answer.get("success"):
            raise HomeAssistantError(f"websocket {command['type']} failed: {answer.get('error')}")
        return answer.get("result")

    def devices(self) -> list[dict[str, Any]]:
        """The device registry (``config/device_registry/list``): name, manufacturer, model,
        sw_version, identifiers ([[domain, id], ...]), config_entries, id, ..."""
        result: list[dict[str, Any]] = self.ws({"type": "config/device_registry/list"})
        return result

    def entities(self) -> list[dict[str, Any]]:
        """The entity registry (``config/entity_registry/list``): entity_id, unique_id, platform,
        device_id, original_name, entity_category, disabled_by, ..."""
        result: list[dict[str, Any]] = self.ws({"type": "config/entity_registry/list"})
        return result

    # ---------------------------------------------------------------- log

    def log_text(self) -> str:
        """HA's whole log file so far ('' before HA created it)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the log file and of HA's stdout, for failure messages."""
        out = ""
        if self.stdout_path.exists():
            out = "\n".join(self.stdout_path.read_text(errors="replace").splitlines()[-15:])
        log = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- {self.log_path} (tail)\n{log}\n--- {self.stdout_path} (tail)\n{out}"

    def log_records(self, min_level: str = "WARNING", logger_prefix: str = "") -> list[LogRecord]:
        """Log records at ``min_level`` or above from loggers named ``logger_prefix``*."""
        floor = _LEVELS[min_level.upper()]
        return [
            r for r in parse_log(self.log_text()) if r.levelno >= floor and r.logger.startswith(logger_prefix)
        ]

    def discovery_errors(self) -> list[LogRecord]:
        """Rejected or unusable discovery messages and mqtt errors: every record matching
        ``Error ... when processing MQTT discovery message``, every WARNING or worse from
        ``homeassistant.components.mqtt.discovery`` (bad JSON, unsupported component, bad origin)
        and every ERROR or worse from ``homeassistant.components.mqtt``*."""
        return [
            r
            for r in parse_log(self.log_text())
            if DISCOVERY_ERROR.search(r.message)
            or (r.levelno >= _LEVELS["WARNING"] and r.logger == "homeassistant.components.mqtt.discovery")
            or (r.levelno >= _LEVELS["ERROR"] and r.logger.startswith("homeassistant.components.mqtt"))
        ]

    def setup_failures(self) -> list[LogRecord]:
        """ERROR records of ``homeassistant.setup`` (an integration or platform that failed to set
        up, usually a requirement missing from scripts/ha-venv.sh, since HA runs with --skip-pip)."""
        return self.log_records("ERROR", "homeassistant.setup")

    def mqtt_problems(self) -> list[LogRecord]:
        """Every WARNING or worse from ``homeassistant.components.mqtt``* (discovery errors, and
        payloads an entity rejected, such as an event_type not in ``event_types``)."""
        return self.log_records("WARNING", "homeassistant.components.mqtt")


@contextmanager
def broker_and_home_assistant(workdir: Path, **ha_options: Any) -> Iterator[tuple[Broker, HomeAssistant]]:
    """A fresh Mosquitto and an HA connected to it, both under ``workdir``; stopped on exit.

    Skips (or errors under CI) before starting anything when the HA venv is missing.
    """
    require_hass()
    broker = Broker(workdir / "broker")
    broker.workdir.mkdir(parents=True)
    broker.start()
    try:
        with HomeAssistant(workdir / "ha", broker.host, broker.port, **ha_options) as ha:
            yield broker, ha
    finally:
        broker.stop()


class _WebSocket:
    """Just enough of RFC 6455 for HA's websocket API: text frames, ping/pong, close."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    @classmethod
    @contextmanager
    def connect(cls, host: str, port: int, timeout_s: float) -> Iterator[_WebSocket]:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        ws = cls(sock)
        try:
            ws._handshake(host, port)
            yield ws
        finally:
            ws._close()

    def _handshake(self, host: str, port: int) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            (
                "GET /api/websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                "Upgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in f"{lines[0]} ":
            raise HomeAssistantError(f"websocket upgrade refused: {lines[0]}")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("sec-websocket-accept") != accept:
            raise HomeAssistantError("websocket upgrade: bad Sec-WebSocket-Accept")

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("HA closed the websocket connection")
        self._buf += chunk

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def send_json(self, obj: dict[str, Any]) -> None:
        self._send_frame(0x1, json.dumps(obj).encode())

    def recv_json(self) -> dict[str, Any]:
        """The next text message (fragments joined), answering pings on the way."""
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read(2)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError(f"HA closed the websocket: {payload[2:].decode(errors='replace')}")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if fin:
                    message: dict[str, Any] = json.loads(b"".join(parts))
                    return message

    def _close(self) -> None:
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        finally:
            self._sock.close()
