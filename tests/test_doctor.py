"""`bedside doctor`: each check against the real parts (gpiozero's MockFactory with the MCP3008
fake on its SPI pins, a real Mosquitto, real SQLite files), and the command end to end.

What is not a Pi here is pointed elsewhere through ``DoctorOptions``: ``dev_dir`` holds the
device nodes a Pi would have, and ``timedatectl``/``systemctl`` are small scripts answering as
those tools do on a Pi (this machine runs no systemd).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from service.config import Config, load_config
from service.doctor import (
    DoctorOptions,
    Finding,
    check_broker,
    check_bus,
    check_clock,
    check_database,
    check_groups,
    check_pins,
    check_sensor,
    check_units,
    failed,
    run_checks,
)
from tests.broker import Broker, free_port
from tests.daemonutil import REPO
from tests.hardware import pins
from tests.hardware.wire_fakes import FakeMCP3008

mock_factory = pins.mock_factory  # the pin factory fixture of the hardware tests


def _config(**sections: dict[str, Any]) -> Config:
    return load_config(None, environ={}, overrides=sections)


def _piezo(tmp_path: Path, broker: Broker | None = None, **mqtt: Any) -> Config:
    sensor = {"kind": "piezo", "adc_chip": "mcp3008", "spi_channel": 0, "rate_hz": 100.0, "block_s": 0.05}
    m = {"host": "127.0.0.1", "port": broker.port if broker else free_port(), **mqtt}
    return _config(sensor=sensor, mqtt=m, storage={"db_path": str(tmp_path / "data" / "bedside.sqlite3")})


def _opts(tmp_path: Path, **kw: Any) -> DoctorOptions:
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    return DoctorOptions(dev_dir=dev, sensor_seconds=0.6, credentials_dir=tmp_path / "creds", **kw)


def _tool(tmp_path: Path, name: str, body: str) -> str:
    """A stand-in for a system tool: a shell script answering as the real one does."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_spi_off_fails_with_the_raspi_config_fix_and_on_passes(tmp_path: Path) -> None:
    cfg, opts = _piezo(tmp_path), _opts(tmp_path)
    off = check_bus(cfg, opts)
    assert off.level == "fail"
    assert "SPI is off" in off.message and "spidev0.0" in off.message
    assert off.fix == "sudo raspi-config nonint do_spi 0 && sudo reboot"
    (opts.dev_dir / "spidev0.0").touch()
    assert check_bus(cfg, opts).level == "ok"


def test_i2c_off_fails_for_the_imu(tmp_path: Path) -> None:
    cfg = _config(sensor={"kind": "imu", "rate_hz": 100.0})
    finding = check_bus(cfg, _opts(tmp_path))
    assert finding.level == "fail"
    assert "i2c-1" in finding.message and "do_i2c 0" in finding.fix


def test_a_simulated_sensor_would_spoil_a_night(tmp_path: Path) -> None:
    finding = check_bus(_config(), _opts(tmp_path))
    assert finding.level == "fail"
    assert 'kind = "piezo"' in finding.fix


def test_a_missing_service_user_and_missing_groups_are_named_with_usermod(tmp_path: Path) -> None:
    cfg = _piezo(tmp_path)
    nobody = check_groups(cfg, _opts(tmp_path, user="no-such-bedside-user"))
    assert nobody.level == "fail" and "install.sh" in nobody.fix
    root = check_groups(cfg, _opts(tmp_path, user="root"))  # root is in neither gpio nor spi here
    assert root.level == "fail"
    assert "gpio" in root.message and "spi" in root.message
    assert "sudo usermod -aG gpio root" in root.fix and "sudo usermod -aG spi root" in root.fix


def test_mock_pins_are_usable_and_said_to_be_mock(mock_factory: MockFactory) -> None:
    findings = check_pins()
    pins = next(f for f in findings if f.check == "pins")
    assert "MockFactory" in pins.message and "mock pins" in pins.message
    assert not failed(findings), findings


def test_the_sensor_check_reads_the_piezo_through_the_real_source(
    mock_factory: MockFactory, tmp_path: Path
) -> None:
    with FakeMCP3008(inputs={0: [500 + n % 20 for n in range(20)]}):
        finding = check_sensor(_piezo(tmp_path), _opts(tmp_path), service_active=False)
    assert finding.level == "ok", finding
    assert "mcp3008 ch0" in finding.message and "range 500..519" in finding.message


def test_a_reading_that_never_varies_fails(mock_factory: MockFactory, tmp_path: Path) -> None:
    with FakeMCP3008(inputs={1: [700]}):  # the film on CH1, CH0 reads a constant 0
        finding = check_sensor(_piezo(tmp_path), _opts(tmp_path), service_active=False)
    assert finding.level == "fail"
    assert "never changes" in finding.message and "bedside probe" in finding.fix


def test_the_sensor_is_left_alone_while_the_daemon_runs(tmp_path: Path) -> None:
    finding = check_sensor(_piezo(tmp_path), _opts(tmp_path), service_active=True)
    assert finding.level == "warn" and "systemctl stop bedside" in finding.fix


def test_the_broker_is_reached_with_the_configured_credentials(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", users={"bedside": "right-horse"})
    broker.workdir.mkdir()
    broker.start()
    try:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "mqtt_password").write_text("right-horse\n")  # as the installer keeps it
        good = check_broker(_piezo(tmp_path, broker, username="bedside"), _opts(tmp_path))
        assert good.level == "ok", good
        assert "as bedside" in good.message
        (creds / "mqtt_password").write_text("wrong\n")
        bad = check_broker(_piezo(tmp_path, broker, username="bedside"), _opts(tmp_path))
        assert bad.level == "fail"
        assert "refused user 'bedside'" in bad.message and "mqtt_password" in bad.fix
        anonymous = check_broker(_piezo(tmp_path, broker), _opts(tmp_path))
        assert anonymous.level == "fail" and "anonymous" in anonymous.message
    finally:
        broker.stop()


def test_an_anonymous_broker_passes_and_one_that_is_down_fails(tmp_path: Path, broker: Broker) -> None:
    assert check_broker(_piezo(tmp_path, broker), _opts(tmp_path)).level == "ok"
    down = check_broker(_piezo(tmp_path), _opts(tmp_path))  # a port nobody listens on
    assert down.level == "fail"
    assert "cannot be reached" in down.message and "mqtt.host" in down.fix


def test_the_database_folder_must_exist_and_be_writable(tmp_path: Path) -> None:
    cfg, opts = _piezo(tmp_path), _opts(tmp_path, user=Path.home().owner())
    missing = check_database(cfg, opts)
    assert missing[0].level == "fail" and "does not exist" in missing[0].message
    (tmp_path / "data").mkdir()
    findings = check_database(cfg, opts)
    assert [f.level for f in findings] == ["ok", "ok"], findings
    import sqlite3

    sqlite3.connect(tmp_path / "data" / "bedside.sqlite3").close()
    assert check_database(cfg, opts)[0].message.endswith("is writable.")


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the ownership check runs only as root (as `sudo bedside doctor`)"
)
def test_run_as_root_a_database_the_service_user_does_not_own_fails(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    finding = check_database(_piezo(tmp_path), _opts(tmp_path, user="nobody"))[0]
    assert finding.level == "fail"
    assert "not owned by nobody" in finding.message and finding.fix.startswith("sudo chown nobody:nobody")


def test_the_clock_check_reads_timedatectl(tmp_path: Path) -> None:
    yes = _tool(tmp_path, "td-yes", 'test "$*" = "show --property=NTPSynchronized --value" && echo yes\n')
    no = _tool(tmp_path, "td-no", "echo no\n")
    assert check_clock(_opts(tmp_path, timedatectl=yes)).level == "ok"
    unsynced = check_clock(_opts(tmp_path, timedatectl=no))
    assert unsynced.level == "fail" and "set-ntp true" in unsynced.fix
    unknown = check_clock(_opts(tmp_path, timedatectl=str(tmp_path / "absent")))
    assert unknown.level == "warn"


def test_units_disabled_or_stopped_are_named_with_the_command(tmp_path: Path) -> None:
    states = tmp_path / "states"
    states.write_text("bedside.service enabled failed\nbedside-web.service disabled inactive\n")
    systemctl = _tool(
        tmp_path,
        "systemctl",
        f'line=$(grep "^$2 " "{states}")\n'
        'case "$1" in is-enabled) field=2 ;; is-active) field=3 ;; esac\n'
        'echo "$line" | cut -d" " -f$field\n',
    )
    findings = check_units(_opts(tmp_path, systemctl=systemctl))
    assert [(f.check, f.level) for f in findings] == [("bedside", "fail"), ("bedside-web", "warn")]
    assert "bedside.service is failed" in findings[0].message
    assert "journalctl -u bedside" in findings[0].fix
    assert findings[1].fix == "sudo systemctl enable --now bedside-web.service"
    states.write_text("bedside.service enabled active\nbedside-web.service enabled active\n")
    assert not failed(check_units(_opts(tmp_path, systemctl=systemctl)))


def test_a_wired_unit_passes_every_check_but_the_groups(
    mock_factory: MockFactory, tmp_path: Path, broker: Broker
) -> None:
    """The whole run on a 'Pi' whose only problem is a user outside gpio and spi."""
    (tmp_path / "data").mkdir()
    opts = _opts(
        tmp_path,
        user="root",
        timedatectl=_tool(tmp_path, "timedatectl", "echo yes\n"),
        systemctl=_tool(
            tmp_path, "systemctl", 'case "$1" in is-enabled) echo enabled;; *) echo inactive;; esac\n'
        ),
    )
    (opts.dev_dir / "spidev0.0").touch()
    with FakeMCP3008(inputs={0: [500 + n % 20 for n in range(20)]}):
        findings = run_checks(_piezo(tmp_path, broker), opts)
    by_check: dict[str, Finding] = {f.check: f for f in findings}
    assert by_check["spi"].level == "ok"
    assert by_check["sensor"].level == "ok", by_check["sensor"]
    assert by_check["broker"].level == "ok"
    assert by_check["database"].level == "ok", by_check["database"]
    assert by_check["clock"].level == "ok"
    assert by_check["bedside"].level == "fail"  # enabled but inactive
    assert by_check["groups"].level == "fail"
    assert failed(findings)


def test_bedside_doctor_command_exits_1_and_prints_json_naming_each_problem(
    tmp_path: Path, broker: Broker
) -> None:
    cfg = tmp_path / "bedside.toml"
    cfg.write_text(
        f'[sensor]\nkind = "piezo"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'[storage]\ndb_path = "{tmp_path / "db.sqlite3"}"\n'
    )
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    proc = subprocess.run(
        [sys.executable, "-m", "service", "doctor", "--config", str(cfg), "--json", "--seconds", "0.3"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["broker"]["level"] == "ok"
    assert checks["database"]["level"] == "ok"
    assert checks["pins"]["message"].startswith("gpiozero's pin factory is MockFactory")
    assert "Traceback" not in proc.stderr
    for c in doc["checks"]:
        assert c["message"].endswith("."), c
        assert c["level"] == "ok" or c["fix"] or c["check"] in ("lgpio", "pins"), c  # mock pins: no fix
