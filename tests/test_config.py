"""Config: defaults run the demo, strict validation names the key, env overrides, validate-config CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import EXIT_CONFIG, EXIT_OK, main
from service.config import Config, env_overrides, load_config, read_secret
from service.errors import ConfigError


def test_defaults_need_no_file_and_run_the_simulated_demo() -> None:
    cfg = load_config(environ={})
    assert cfg.sensor.kind == "simulated"
    assert cfg.web.port == 8080 and cfg.web.host == "127.0.0.1"
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("localhost", 1883)


def test_file_values_are_read(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('unit_id = "bedroom"\n[mqtt]\nport = 1884\n[detector]\nprofile = "wasm2016"\n')
    cfg = load_config(f, environ={})
    assert cfg.unit_id == "bedroom" and cfg.mqtt.port == 1884
    assert cfg.detector_params().profile == "wasm2016"


def test_unknown_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("[mqtt]\nhots = 'x'\n")
    with pytest.raises(ConfigError, match=r"mqtt\.hots: unknown key"):
        load_config(f, environ={})


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('[mqtt]\nport = "eighteen"\n')
    with pytest.raises(ConfigError, match=r"mqtt\.port: .*'eighteen'"):
        load_config(f, environ={})


def test_out_of_range_value_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("[sensor]\nrate_hz = 5000\n")
    with pytest.raises(ConfigError, match=r"sensor\.rate_hz"):
        load_config(f, environ={})


def test_unknown_detector_threshold_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("[detector]\nk_onn = 3.0\n")
    with pytest.raises(ConfigError, match=r"detector\.k_onn: unknown key"):
        load_config(f, environ={})


def test_replay_without_path_is_a_cross_field_error(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('[sensor]\nkind = "replay"\n')
    with pytest.raises(ConfigError, match="replay_path"):
        load_config(f, environ={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("[mqtt\nport=1\n")
    with pytest.raises(ConfigError, match=r"b\.toml: invalid TOML"):
        load_config(f, environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("[mqtt]\nport = 1884\n")
    cfg = load_config(f, environ={"BEDSIDE_MQTT__PORT": "1999", "BEDSIDE_UNIT_ID": "guest-room"})
    assert cfg.mqtt.port == 1999 and cfg.unit_id == "guest-room"


def test_unknown_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.prot: unknown key"):
        load_config(environ={"BEDSIDE_MQTT__PROT": "1"})


def test_env_values_parse_as_toml_or_plain_strings() -> None:
    assert env_overrides({"BEDSIDE_WEB__ENABLED": "false", "BEDSIDE_MQTT__HOST": "hub.local"}) == {
        "web": {"enabled": False},
        "mqtt": {"host": "hub.local"},
    }


def test_every_field_is_documented() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            ann = info.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                missing += [f"{name}.{m}" for m in walk(ann)]
            elif not info.description:
                missing.append(name)
        return missing

    assert walk(Config) == []


def test_secret_is_read_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt_password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret(None, "mqtt_password") == "s3cret"
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(str(tmp_path / "absent"), "mqtt_password")


def test_validate_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[web]\nport = 8081\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[web]\nprot = 8081\n")
    assert main(["validate-config", str(good)]) == EXIT_OK
    assert main(["validate-config", str(bad)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "web.prot: unknown key" in err


def test_validate_config_runs_as_a_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = -1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "service", "validate-config", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == EXIT_CONFIG
    assert "mqtt.port" in proc.stderr and "Traceback" not in proc.stderr


def test_explain_lists_every_section() -> None:
    from service.config import explain

    text = explain()
    for section in ("[sensor]", "[storage]", "[mqtt]", "[web]", "[detector]"):
        assert section in text


def test_explained_defaults_are_a_valid_config_file(tmp_path: Path) -> None:
    from service.config import explain

    f = tmp_path / "explained.toml"
    f.write_text(explain())
    assert load_config(f, environ={}) == load_config(environ={})


def test_the_variables_the_systemd_units_set_are_accepted() -> None:
    cfg = load_config(
        environ={
            "BEDSIDE_STORAGE__DB_PATH": "/var/lib/bedside/bedside.sqlite3",
            "BEDSIDE_WEB__ENABLED": "false",
            "BEDSIDE_SECRET_KEY": "not-a-config-key",
        }
    )
    assert cfg.storage.db_path == "/var/lib/bedside/bedside.sqlite3" and cfg.web.enabled is False


def test_the_dashboard_may_listen_beyond_loopback_but_the_host_must_be_one_address(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('[web]\nhost = "0.0.0.0"\n')
    assert load_config(f, environ={}).web.host == "0.0.0.0"  # the web process then requires a login
    assert load_config(environ={"BEDSIDE_WEB__HOST": "::1"}).web.host == "::1"
    for bad in ("", "  ", "0.0.0.0 8080"):
        with pytest.raises(ConfigError, match=r"web\.host"):
            load_config(environ={"BEDSIDE_WEB__HOST": f'"{bad}"'})
