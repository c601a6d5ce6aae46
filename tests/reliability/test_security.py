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


# --- links planted in the state folder (issue 18, finding 2) ------------------------------------
# The state folder belongs to the service user; root runs `bedside set-password` in it (the docs
# say so). The service user must not be able to make root write, truncate or chown anything else.

NOBODY = 65534
SECRET = b"root's own file: untouched\n"


def _state_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A state folder owned by an unprivileged user (when the test runs as root), and a root file
    outside it that a planted link points at."""
    state = tmp_path / "state"
    state.mkdir()
    if os.geteuid() == 0:
        os.chown(state, NOBODY, NOBODY)
    outside = tmp_path / "outside" / "root-file"
    outside.parent.mkdir()
    outside.write_bytes(SECRET)
    outside.chmod(0o644)
    return state, outside


def _set_password(db: Path, password: str = "correct horse battery") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "set-password", "--db", str(db), "--stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_clean_env(),
        timeout=60,
    )


def _untouched(outside: Path) -> None:
    st = outside.lstat()
    assert outside.read_bytes() == SECRET, "the file the link points at was written"
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o644), "it was chowned or chmodded"


def test_set_password_never_writes_or_chowns_through_a_link_planted_as_its_temporary_file(
    tmp_path: Path,
) -> None:
    state, outside = _state_folder(tmp_path)
    for name in ("web-password.tmp", ".web-password.tmp"):  # the old fixed name, and a guess
        (state / name).symlink_to(outside)
    done = _set_password(state / "bedside.sqlite3")
    assert done.returncode == 0, done.stderr
    _untouched(outside)
    pw = state / "web-password"
    st = pw.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert pw.read_text().startswith("scrypt:"), "the hash is stored"
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), "run as root, it goes to the folder's owner"
    assert all(not n.endswith(".tmp") or (state / n).is_symlink() for n in os.listdir(state)), "no temp left"


def test_set_password_refuses_a_password_file_or_database_that_is_a_link(tmp_path: Path) -> None:
    state, outside = _state_folder(tmp_path)
    (state / "web-password").symlink_to(outside)
    done = _set_password(state / "bedside.sqlite3")
    assert done.returncode == 1 and "symbolic link" in done.stderr and "nothing changed" in done.stderr
    assert "Traceback" not in done.stderr
    assert (state / "web-password").is_symlink(), "the link is left for the administrator to see"
    _untouched(outside)

    (state / "web-password").unlink()
    elsewhere = tmp_path / "outside" / "bedside.sqlite3"
    (state / "bedside.sqlite3").symlink_to(elsewhere)  # would move the password file beside it
    done = _set_password(state / "bedside.sqlite3")
    assert done.returncode == 5 and "symbolic link" in done.stderr, done.stderr
    assert not (tmp_path / "outside" / "web-password").exists()
    assert not (state / "web-password").exists()


def test_the_store_never_opens_chmods_or_migrates_through_a_link(tmp_path: Path) -> None:
    import asyncio
    import sqlite3

    from service.errors import StoreError
    from service.store.migrations import MIGRATIONS
    from service.store.store import Store

    state, outside = _state_folder(tmp_path)
    outside.write_bytes(b"")  # an empty file SQLite would happily make a database of
    outside.chmod(0o644)
    (state / "bedside.sqlite3").symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        asyncio.run(Store.open(state / "bedside.sqlite3"))
    assert outside.read_bytes() == b"" and stat.S_IMODE(outside.stat().st_mode) == 0o644

    # A database of schema 1 whose migration backup name is a planted link.
    outside.write_bytes(SECRET)
    db = state / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(f"BEGIN;{MIGRATIONS[0]}\nPRAGMA user_version=1;COMMIT;")
    conn.close()
    (state / "old.sqlite3.bak-v1").symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        asyncio.run(Store.open(db))
    _untouched(outside)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1, "not migrated without its backup"
    conn.close()
