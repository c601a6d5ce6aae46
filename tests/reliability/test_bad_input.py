"""Bad input never crashes anything: config files and variables, MQTT commands (parsed, and sent to a
running daemon through a real broker), and recordings for ``bedside analyze``.

Each gets a clear error naming the problem: ConfigError naming the key, CommandError (logged and
ignored by the daemon), exit code 4 with one line on stderr for a recording.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.publish as publish
import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, main
from service.commands import CommandError, MarkCommand, NightCommand, ProfileCommand, parse_command
from service.config import Config, load_config
from service.errors import ConfigError
from tests.broker import Broker
from tests.daemonutil import query, stop_daemon
from tests.mqttutil import Subscriber, wait_until
from tests.reliability.conftest import run_daemon

SECTIONS: dict[str, list[str]] = {
    name: list(field.annotation.model_fields)  # type: ignore[union-attr]
    for name, field in Config.model_fields.items()
    if hasattr(field.annotation, "model_fields")
}
KNOWN_KEYS = [(s, k) for s, keys in SECTIONS.items() for k in keys]

toml_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(), max_size=2),
    st.datetimes(),
    st.sampled_from(["", "auto", "replay", "piezo", "imu", "simulated", "23:59", "25:00", "-1", "1e309"]),
)
key_names = st.one_of(
    st.sampled_from(KNOWN_KEYS), st.tuples(st.sampled_from(list(SECTIONS)), st.text(min_size=1, max_size=12))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=key_names, value=toml_values)
def test_any_value_of_any_key_in_a_config_file_is_accepted_or_a_config_error_naming_the_key(
    tmp_path: Path, where: tuple[str, str], value: Any
) -> None:
    section, key = where
    path = tmp_path / "fuzz.toml"
    path.write_text(tomli_w.dumps({section: {key: value}}))
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        message = str(exc)
        assert key in message or f"{section}." in message, f"{message!r} does not name {section}.{key}"


@settings(max_examples=200, deadline=None)
@given(where=key_names, raw=st.text(max_size=40))
def test_any_environment_override_is_accepted_or_a_config_error_naming_the_variable(
    where: tuple[str, str], raw: str
) -> None:
    section, key = where
    name = f"BEDSIDE_{section.upper()}__{key.upper()}"
    if "\0" in raw or "\0" in name:
        return  # an environment cannot hold NUL
    try:
        load_config(environ={name: raw})
    except ConfigError as exc:
        message = str(exc)
        named = name.split("__", 1)[1].lower()  # what the variable names, as the loader reads it
        assert named in message or name in message, f"{message!r} does not name {name}"


@settings(max_examples=500, deadline=None)
@given(
    name=st.one_of(st.sampled_from(["night", "mark", "profile"]), st.text(max_size=80)),
    payload=st.one_of(
        st.binary(max_size=2048),
        st.text(max_size=600).map(str.encode),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=8,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"action": st.text(max_size=8), "kind": st.text(max_size=40), "note": st.text(max_size=600)}
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_any_command_payload_parses_or_is_a_command_error(name: str, payload: bytes) -> None:
    try:
        command = parse_command(name, payload)
    except CommandError as exc:
        assert str(exc), "the error says what is wrong"
        return
    assert isinstance(command, NightCommand | MarkCommand | ProfileCommand)


@pytest.mark.slow
def test_garbage_commands_through_a_real_broker_are_logged_and_ignored(
    broker: Broker, tmp_path: Path
) -> None:
    unit = "rel-input"
    root = f"bedside/{unit}"
    db = tmp_path / "b.sqlite3"
    args = ["--db", str(db), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--unit-id", unit,
            "--seed", "2", "--no-web", "--speed", "20"]  # fmt: skip
    sub = Subscriber(broker.host, broker.port, f"{root}/availability")
    proc = run_daemon(args, tmp_path / "d.log")
    rng = np.random.default_rng(11)
    garbage: list[tuple[str, bytes]] = [
        ("night", bytes(rng.integers(0, 256, 300, dtype=np.uint8))),
        ("mark", b"\x00" * 1024),
        ("mark", b"{" * 100_000),
        ("night", os.urandom(1_000_000)),
        ("profile", json.dumps({"profile": ["aasm"]}).encode()),
        ("mark", json.dumps({"kind": "spasm", "note": 5}).encode()),
        ("mark", json.dumps({"kind": "x" * 100}).encode()),
        ("night", json.dumps({"action": None}).encode()),
        ("night", b'"start"'),
        ("mark", json.dumps([1, 2, 3]).encode()),
        ("profile", b"\xed\xa0\x80"),  # a UTF-16 surrogate, invalid UTF-8
        ("mark", ("\u202e" * 200).encode()),
        ("night/extra/levels", b"start"),
        ("\u00e9\u00e9\u00e9", b"stop"),
        ("", b"stop"),
    ]
    try:
        sub.wait_for(lambda: [m.text for m in sub.messages][-1:] == ["online"], what="online")
        for name, payload in garbage:
            publish.single(f"{root}/cmd/{name}", payload, qos=1, hostname=broker.host, port=broker.port)
        publish.single(f"{root}/cmd/mark", '{"kind": "spasm", "note": "still alive"}', qos=1,
                       hostname=broker.host, port=broker.port)  # fmt: skip
        wait_until(lambda: len(query(db, "SELECT * FROM annotations")) >= 1, what="the good command after")
        assert proc.poll() is None, "garbage never stops the daemon"
    finally:
        code = stop_daemon(proc)
        sub.close()
    log = (tmp_path / "d.log").read_text()
    assert code == 0 and "Traceback" not in log
    assert log.count("MQTT command on cmd/") >= len(garbage) - 1, "each bad command is logged"
    assert [r["note"] for r in query(db, "SELECT note FROM annotations")] == ["still alive"]


def _npy_claiming(shape: str) -> bytes:
    header = ("{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }").encode()
    header += b" " * (118 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 1000


def _good_npy() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.linspace(0, 1, 50_000, dtype=np.float32))
    return buf.getvalue()


RECORDINGS: list[tuple[str, str, bytes | None, list[str], str]] = [
    ("empty file", "rec.csv", b"", [], "empty"),
    ("header only", "rec.csv", b"t,x\n", ["--time-column", "t"], "no data"),
    ("cut mid-line", "rec.csv", b"t,x\n0,1\n4,2\n8,", ["--time-column", "t"], "numeric"),
    ("wrong column", "rec.csv", b"t,x\n0,1\n4,2\n", ["--column", "y", "--time-column", "t"], "column"),
    ("a NaN", "rec.csv", b"t,x\n0,1\n4,2\n8,nan\n12,1\n", ["--time-column", "t"], "nan"),
    ("an inf", "rec.csv", b"t,x\n0,1\n4,inf\n8,1\n", ["--time-column", "t"], "inf"),
    ("words", "rec.csv", b"t,x\n0,one\n4,two\n", ["--time-column", "t"], "numeric"),
    ("binary noise", "rec.csv", bytes(range(256)) * 20, [], "utf-8"),
    ("time going back", "rec.csv", b"t,x\n0,1\n8,2\n4,3\n12,4\n", ["--time-column", "t"], "time"),
    ("truncated npy", "rec.npy", _good_npy()[:5000], ["--rate-hz", "250"], "npy"),
    ("npy header only", "rec.npy", _good_npy()[:100], ["--rate-hz", "250"], "npy"),
    ("npy claiming 10^11 samples", "rec.npy", _npy_claiming("(100000000000,)"), ["--rate-hz", "250"], "npy"),
    ("text npy", "rec.npy", None, ["--rate-hz", "250"], "numeric"),
    ("a zero rate", "rec.npy", _good_npy(), ["--rate-hz", "0"], "rate"),
    ("a NaN rate", "rec.npy", _good_npy(), ["--rate-hz", "nan"], "rate"),
    ("unknown type", "rec.wav", b"RIFF", [], "unsupported"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "name", "content", "args", "words"), RECORDINGS, ids=[r[0] for r in RECORDINGS]
)
def test_a_bad_recording_is_one_clear_error_and_exit_4(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    name: str,
    content: bytes | None,
    args: list[str],
    words: str,
) -> None:
    path = tmp_path / name
    if content is None:
        np.save(path, np.array(["a", "b"] * 100))
    else:
        path.write_bytes(content)
    assert main(["analyze", str(path), *args]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert words in err.lower() and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, f"one line, not a dump: {err!r}"


def test_a_gigantic_recording_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.truncate(3 * 2**30)  # sparse: 3 GiB that take no disk
    assert main(["analyze", str(path)]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "too large" in err and "GiB" in err, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(st.sampled_from("0123456789,.-eE naif\t;x"), max_size=30), max_size=60))
def test_any_csv_text_is_analysed_or_refused_with_exit_4(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text("t,x\n" + "\n".join(lines) + "\n")
    code = main(["analyze", str(path), "--time-column", "t", "--time-unit", "ms", "--json"])
    assert code in (EXIT_OK, EXIT_INPUT)


# --- inputs that used to end in a traceback or a hang (issue 18, finding 9) ---------------------

LONG_FIELD = "7" * 140_000  # over the csv module's field limit of 131,072 characters
LONG_CSVS: list[tuple[str, str, list[str], str]] = [
    ("a long header", "t,x" + "y" * 140_000 + "\n0,1\n4,2\n", [], "line 1"),
    ("a long quoted value", f't,x\n0,1\n4,"{LONG_FIELD}"\n8,2\n', ["--time-column", "t"], "line 3"),
]


@pytest.mark.parametrize(("what", "text", "args", "line"), LONG_CSVS, ids=[c[0] for c in LONG_CSVS])
@pytest.mark.parametrize("command", ["analyze", "run"])
def test_a_csv_field_over_the_csv_limit_is_an_unreadable_recording_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, what: str, text: str,
    args: list[str], line: str,
) -> None:  # fmt: skip
    path = tmp_path / "long.csv"
    path.write_text(text)
    if command == "analyze":
        argv = ["analyze", str(path), *args]
    else:
        argv = ["run", "--sensor", f"replay:{path}", "--db", str(tmp_path / "r.sqlite3"), "--no-mqtt",
                "--no-web", "--speed", "0"]  # fmt: skip
        if args:
            os.environ["BEDSIDE_SENSOR__REPLAY_TIME_COLUMN"] = "t"
    try:
        assert main(argv) == EXIT_INPUT
    finally:
        os.environ.pop("BEDSIDE_SENSOR__REPLAY_TIME_COLUMN", None)
    err = capsys.readouterr().err
    assert line in err and "longer than 131072" in err and "Traceback" not in err, err


def test_a_counts_csv_with_an_over_long_field_is_an_unreadable_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "counts.csv"
    path.write_text(f"count\n1\n{LONG_FIELD}\n2\n")
    assert main(["score-sleep", str(path), "--column", "count", "--epoch-s", "60"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "line 3" in err and "field limit" in err, err


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["validate-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_config_nested_50000_deep_or_with_a_4301_digit_integer_is_a_config_error_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[sensor]\nseed = " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert "line 2 (sensor.seed)" in _validate(path, capsys)
    path.write_text("[sensor]\nspeed = 1.0\n\n[mqtt]\nport = " + "1" * 4301 + "\n")
    assert "line 5 (mqtt.port)" in _validate(path, capsys)
    for name, raw in (("BEDSIDE_SENSOR__SEED", "[" * 50_000 + "]" * 50_000),
                      ("BEDSIDE_MQTT__PORT", "9" * 5000)):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            load_config(environ={name: raw})
        message = str(caught.value)
        assert name.split("__")[1].lower() in message and len(message) < 400, message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    when=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offset_min=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    via_env=st.booleans(),
)
@example(when=datetime(1, 1, 1), offset_min=14 * 60, via_env=False)  # before UTC's first day
@example(when=datetime(9999, 12, 31, 23, 0), offset_min=-14 * 60, via_env=True)  # after its last
def test_any_sim_start_with_any_offset_loads_or_is_a_config_error_naming_it(
    tmp_path: Path, when: datetime, offset_min: int, via_env: bool
) -> None:
    text = when.replace(tzinfo=timezone(timedelta(minutes=offset_min))).isoformat()
    path = tmp_path / "start.toml"
    path.write_text(f'[sensor]\nsim_start = "{text}"\n')
    try:
        if via_env:
            load_config(environ={"BEDSIDE_SENSOR__SIM_START": text})
        else:
            load_config(path, environ={})
    except ConfigError as exc:
        assert "sim_start" in str(exc), str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digits=st.integers(1, 6000), key=st.sampled_from(KNOWN_KEYS))
def test_an_integer_of_any_length_for_any_key_loads_or_is_a_config_error(
    tmp_path: Path, digits: int, key: tuple[str, str]
) -> None:
    path = tmp_path / "long-int.toml"
    path.write_text(f"[{key[0]}]\n{key[1]} = {'9' * digits}\n")
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert f"{key[0]}.{key[1]}" in str(exc) or key[1] in str(exc), str(exc)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom", "2 MiB", "directory"])
def test_validate_config_refuses_what_is_not_a_small_regular_file_at_once(tmp_path: Path, kind: str) -> None:
    import subprocess
    import sys
    import time

    from tests.daemonutil import REPO

    path = tmp_path / "bedside.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind.startswith("/dev/"):
        path.symlink_to(kind)
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("# padding\n" * (2 * 2**20 // 10))
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "service", "validate-config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert time.monotonic() - t0 < 30
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert str(path) in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_password_file_that_is_a_fifo_or_a_device_is_a_config_error(tmp_path: Path) -> None:
    from service.config import read_secret

    fifo = tmp_path / "pw"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="FIFO"):
        read_secret(str(fifo), "mqtt_password")
    with pytest.raises(ConfigError, match="character device"):
        read_secret("/dev/zero", "mqtt_password")
