"""A real Mosquitto broker for tests: its own process on a free loopback port, with optional auth/TLS."""

from __future__ import annotations

import atexit
import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

#: Every broker started and not yet stopped: ``stop_leftover_brokers`` (after each test, from
#: tests/conftest.py, and at exit) stops them, so a test that fails before its own ``stop()`` leaves
#: no mosquitto behind.
_RUNNING: set[Broker] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass(eq=False)
class Broker:
    """One mosquitto process. ``stop()`` and ``start()`` again keep the same port (outage tests)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"user {getpass.getuser()}",
        ]
        if self.users:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("")
            for user, password in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), user, password], check=True)
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls_cert and self.tls_key:
            lines += [f"certfile {self.tls_cert}", f"keyfile {self.tls_key}"]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        conf = self._write_config()
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _RUNNING.add(self)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else "(no log)"
            raise RuntimeError(f"mosquitto did not start:\n{log}") from None

    def stop(self) -> None:
        _RUNNING.discard(self)
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def running_brokers() -> set[Broker]:
    """The brokers started and not yet stopped."""
    return set(_RUNNING)


def stop_leftover_brokers(keep: set[Broker] | frozenset[Broker] = frozenset()) -> int:
    """Stop every broker started and not stopped (its test failed first) but those in ``keep`` (a
    module's broker, which outlives a test); how many there were."""
    left = [b for b in _RUNNING if b not in keep]
    for broker in left:
        broker.stop()
    return len(left)


atexit.register(stop_leftover_brokers)
