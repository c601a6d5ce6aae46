"""Secrets and file permissions: the MQTT password never appears in the log, the database or on the
wire; the database the daemon creates is not readable by other users.

(MQTT with TLS and a password, and a wrong password failing clearly:
tests/test_mqtt_contract.py ``test_password_and_tls_broker_works_and_a_wrong_password_is_a_clear_error``.)
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.daemonutil import REPO, stored_events
from tests.mqttutil import Subscriber, wait_until
from tests.reliability.conftest import run_daemon

UNIT = "rel-secret"
PASSWORD = "Tr0ub4dor-and-3-horses-9f1c"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}


@pytest.mark.slow
def test_the_mqtt_password_is_in_no_log_no_database_file_and_no_message(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", users={"bedside": PASSWORD})
    broker.workdir.mkdir()
    broker.start()
    pw = tmp_path / "mqtt.pw"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    cfg = tmp_path / "secure.toml"
    cfg.write_text(f"[mqtt]\nusername = 'bedside'\npassword_file = '{pw}'\n[logging]\nlevel = 'DEBUG'\n")
    db = tmp_path / "b.sqlite3"
    sub = Subscriber(broker.host, broker.port, "#", username="bedside", password=PASSWORD)
    args = ["--config", str(cfg), "--db", str(db), "--mqtt-host", "127.0.0.1",
            "--mqtt-port", str(broker.port), "--unit-id", UNIT, "--seed", "1", "--no-web",
            "--speed", "0", "--duration-s", "600"]  # fmt: skip
    try:
        proc = run_daemon(args, tmp_path / "d.log")
        assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()
        stored = stored_events(db)
        wait_until(lambda: len(sub.messages) > len(stored), what="the night on the wire")
        status = subprocess.run(
            [sys.executable, "-m", "service", "status", "--config", str(cfg), "--db", str(db), "--json"],
            capture_output=True,
            cwd=REPO,
            env=_clean_env(),
        )
    finally:
        sub.close()
        broker.stop()
    assert stored, "the night was recorded with a password-protected broker"
    secret = PASSWORD.encode()
    log = (tmp_path / "d.log").read_bytes()
    assert b"MQTT: connected" in log and b"DEBUG" in log
    assert secret not in log, "the password is not logged, even at DEBUG"
    for f in tmp_path.glob("b.sqlite3*"):
        assert secret not in f.read_bytes(), f"the password is not stored in {f.name}"
    assert all(secret not in m.payload for m in sub.messages), "the password is not published"
    assert secret not in status.stdout + status.stderr, "bedside status does not show it"


def _created_modes(tmp_path: Path, umask: int) -> dict[str, int]:
    db = tmp_path / f"u{umask:o}" / "b.sqlite3"
    code = subprocess.run(
        [sys.executable, "-c",
         f"import os, sys; os.umask(0o{umask:o}); from service.cli import main; sys.exit(main(sys.argv[1:]))",
         "run", "--db", str(db), "--no-mqtt", "--no-web", "--speed", "0", "--duration-s", "300"],
        cwd=REPO,
        capture_output=True,
        env=_clean_env() | {"BEDSIDE_SESSIONS__MODE": "run"},
    ).returncode  # fmt: skip
    assert code == 0
    return {f.name: stat.S_IMODE(f.stat().st_mode) for f in db.parent.iterdir()}


@pytest.mark.slow
def test_under_the_units_umask_the_database_is_not_readable_by_others(tmp_path: Path) -> None:
    modes = _created_modes(tmp_path, 0o027)  # systemd/bedside.service: UMask=0027
    assert "b.sqlite3" in modes
    for name, mode in modes.items():
        assert mode & 0o007 == 0, f"{name} is {mode:o}: readable by other users"


@pytest.mark.slow
def test_under_a_permissive_umask_the_database_is_still_not_readable_by_others(tmp_path: Path) -> None:
    modes = _created_modes(tmp_path, 0o022)
    for name, mode in modes.items():
        assert mode & 0o007 == 0, f"{name} is {mode:o}: readable by other users"
