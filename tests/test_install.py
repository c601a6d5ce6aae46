"""systemd/install.sh in staging mode (``--root DIR --no-start``): files, modes, idempotence, uninstall.

The installer runs as a subprocess without root. ``--root`` mode never calls pip (unless
``BEDSIDE_INSTALL_PIP=1``, which these tests leave unset so they stay fast): the example config
comes from ``$BEDSIDE_INSTALL_PYTHON -m service validate-config --explain``, here the test's own
interpreter. ``PATH`` starts with stubs of systemctl, useradd, usermod, userdel, apt-get, pip and
chown that record any call and fail, so a test would notice the real system being touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "systemd" / "install.sh"
SYSTEM_COMMANDS = ("systemctl", "useradd", "usermod", "userdel", "apt-get", "pip", "pip3", "chown")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _stub_bin(where: Path) -> Path:
    """A directory of failing stubs that log their name and arguments to ``where/calls.log``."""
    bin_dir = where / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    log = where / "calls.log"
    for name in SYSTEM_COMMANDS:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 1\n')
        stub.chmod(0o755)
    return bin_dir


def run_installer(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installer staged into ``root``; fail the test on a non-zero exit or a system call."""
    scratch = root.parent / f"{root.name}-scratch"
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "BEDSIDE_INSTALL_PIP"}
    env["PATH"] = f"{_stub_bin(scratch)}{os.pathsep}{env.get('PATH', '')}"
    env["BEDSIDE_INSTALL_PYTHON"] = sys.executable
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"installer failed:\n{proc.stdout}\n{proc.stderr}"
    assert not (scratch / "calls.log").exists(), (scratch / "calls.log").read_text()
    return proc


class Staged:
    """Paths of one staged install."""

    def __init__(self, root: Path, output: str) -> None:
        self.root = root
        self.output = output
        self.config = root / "etc/bedside/bedside.toml"
        self.creds = root / "etc/bedside/credentials"
        self.password = self.creds / "mqtt_password"
        self.state = root / "var/lib/bedside"
        self.units = [root / "etc/systemd/system" / u for u in ("bedside.service", "bedside-web.service")]
        self.opt = root / "opt/bedside"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    """One fresh staged install, shared read-only by the tests of this module."""
    root = tmp_path_factory.mktemp("pristine") / "root"
    return Staged(root, run_installer(root, "--no-start").stdout)


@pytest.fixture
def staged(pristine: Staged, tmp_path: Path) -> Staged:
    """A private copy of the fresh install (modes kept) that a test may change."""
    root = tmp_path / "root"
    shutil.copytree(pristine.root, root, symlinks=True)
    return Staged(root, pristine.output)


def test_install_creates_units_config_credentials_and_state_dir_with_tight_modes(
    pristine: Staged,
) -> None:
    for unit in pristine.units:
        assert unit.read_text() == (REPO / "systemd" / unit.name).read_text()
    assert pristine.config.is_file()
    assert _mode(pristine.creds) == 0o700
    assert pristine.password.read_text() == ""
    assert _mode(pristine.password) == 0o600
    assert _mode(pristine.state) == 0o750
    assert _mode(pristine.config) == 0o640


def test_example_config_passes_validate_config_and_points_at_the_state_dir(pristine: Staged) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "validate-config", str(pristine.config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'db_path = "/var/lib/bedside/bedside.sqlite3"' in pristine.config.read_text()


def test_staged_install_only_says_what_it_would_run_on_the_system(pristine: Staged) -> None:
    assert "would run: systemctl daemon-reload" in pristine.output
    assert "would run: useradd --system" in pristine.output
    assert "would run: /opt/bedside/venv/bin/pip install" in pristine.output
    assert "would run: systemctl enable" not in pristine.output


def test_staged_install_without_no_start_would_enable_and_start_both_services(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/bedside").mkdir(parents=True)
    (root / "etc/bedside/bedside.toml").write_text("")  # skip generating the example: fast
    out = run_installer(root).stdout
    assert "would run: systemctl enable --now bedside.service bedside-web.service" in out


def test_second_run_keeps_a_changed_config_and_password(staged: Staged) -> None:
    staged.config.write_text('unit_id = "bedroom"\n')
    staged.password.write_text("s3cret\n")
    run_installer(staged.root, "--no-start")
    run_installer(staged.root, "--no-start")
    assert staged.config.read_text() == 'unit_id = "bedroom"\n'
    assert staged.password.read_text() == "s3cret\n"
    assert _mode(staged.password) == 0o600
    assert _mode(staged.creds) == 0o700


def test_rerun_tightens_an_existing_database_to_0640(staged: Staged) -> None:
    db = staged.state / "bedside.sqlite3"
    db.write_bytes(b"")
    db.chmod(0o666)
    run_installer(staged.root, "--no-start")
    assert _mode(db) == 0o640


def test_uninstall_removes_units_and_venv_but_keeps_data_and_config(staged: Staged) -> None:
    (staged.state / "bedside.sqlite3").write_bytes(b"nights")
    out = run_installer(staged.root, "--uninstall").stdout
    assert not any(unit.exists() for unit in staged.units)
    assert not staged.opt.exists()
    assert (staged.state / "bedside.sqlite3").read_bytes() == b"nights"
    assert staged.config.is_file()
    assert staged.password.is_file()
    assert "would run: systemctl disable --now bedside.service bedside-web.service" in out


def test_uninstall_with_purge_removes_data_and_config_too(staged: Staged) -> None:
    (staged.state / "bedside.sqlite3").write_bytes(b"nights")
    out = run_installer(staged.root, "--uninstall", "--purge").stdout
    assert not staged.state.exists()
    assert not (staged.root / "etc/bedside").exists()
    assert not any(unit.exists() for unit in staged.units)
    assert "would run: userdel bedside" in out


def test_purge_without_uninstall_is_refused_and_changes_nothing(staged: Staged) -> None:
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(staged.root), "--purge"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--purge only goes with --uninstall" in proc.stderr
    assert staged.config.is_file()


# --- issue 20: no compiler on a Pi; issue 18 (finding 2): no link followed in the state dir ----


def _staged_env(scratch: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_INSTALL_")}
    env["PATH"] = f"{_stub_bin(scratch)}{os.pathsep}{env.get('PATH', '')}"
    env["BEDSIDE_INSTALL_PYTHON"] = sys.executable
    env.update(extra)
    return env


def test_staged_install_for_arm64_asks_apt_for_the_pi_bindings_and_pip_for_wheels_only(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "etc/bedside").mkdir(parents=True)
    (root / "etc/bedside/bedside.toml").write_text("")
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root), "--no-start"],
        capture_output=True,
        text=True,
        env=_staged_env(tmp_path, BEDSIDE_INSTALL_ARCH="arm64"),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "would run: apt-get install -y -q --no-install-recommends python3-lgpio python3-spidev" in out
    assert "would run: python3 -m venv --system-site-packages /opt/bedside/venv" in out
    pip = "would run: /opt/bedside/venv/bin/pip install --quiet --disable-pip-version-check"
    assert f"{pip} --only-binary=:all: {REPO}[pi]" in out


def test_32_bit_raspberry_pi_os_is_refused_before_anything_is_changed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root), "--no-start"],
        capture_output=True,
        text=True,
        env=_staged_env(tmp_path, BEDSIDE_INSTALL_ARCH="armhf"),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "32-bit system (armhf)" in proc.stderr
    assert "Raspberry Pi OS Lite (64-bit)" in proc.stderr
    assert "numpy and scipy publish no 32-bit ARM wheels" in proc.stderr
    assert not root.exists()


def test_a_database_link_planted_in_the_state_dir_is_refused_and_its_target_untouched(
    staged: Staged, tmp_path: Path
) -> None:
    """The service user owns /var/lib/bedside: a link there to a root file must not be chmod'ed."""
    target = tmp_path / "shadow"
    target.write_text("root:secret\n")
    target.chmod(0o600)
    db = staged.state / "bedside.sqlite3"
    db.symlink_to(target)
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(staged.root), "--no-start"],
        capture_output=True,
        text=True,
        env=_staged_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout
    assert "is a symbolic link" in proc.stderr
    assert _mode(target) == 0o600
    assert target.read_text() == "root:secret\n"
    assert db.is_symlink()
    assert not (tmp_path / "calls.log").exists(), "no chown was attempted"


def test_a_hard_link_in_the_state_dir_is_not_chmodded_either(staged: Staged, tmp_path: Path) -> None:
    target = tmp_path / "other-users-file"
    target.write_text("x")
    target.chmod(0o604)
    os.link(target, staged.state / "bedside.sqlite3")
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(staged.root), "--no-start"],
        capture_output=True,
        text=True,
        env=_staged_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "not a regular file with a single name" in proc.stderr
    assert _mode(target) == 0o604


DEBIAN_PYTHON = Path("/usr/bin/python3")

RECORDING_APT_GET = """#!/bin/sh
# A recording apt-get: logs its arguments; `install` of a Pi binding drops a stand-in module into
# the fake system's dist-packages, where Debian's python3-lgpio / python3-spidev put theirs.
echo "apt-get $*" >> "{log}"
if [ "$1" = install ]; then
  for arg in "$@"; do
    case "$arg" in
      python3-lgpio) echo 'FROM_APT = "python3-lgpio"' > "{dist}/lgpio.py" ;;
      python3-spidev) echo 'FROM_APT = "python3-spidev"' > "{dist}/spidev.py" ;;
    esac
  done
fi
exit 0
"""


def _fake_system_python(where: Path) -> tuple[Path, Path]:
    """Debian's python3 copied under ``where``, with its own (empty) dist-packages.

    The copy finds its standard library through a link to /usr/lib/python3.X and takes
    ``where/lib/python3/dist-packages`` as the system's packages (Debian's site.py derives it from
    the prefix), so a venv made from it with --system-site-packages sees what our apt-get puts
    there, and nothing of the real system's.
    """
    real = DEBIAN_PYTHON.resolve()
    if not real.is_file() or not Path("/usr/lib/python3/dist-packages").is_dir():
        pytest.fail(f"{DEBIAN_PYTHON} is not Debian's python3 (needed to stage the Pi's venv)")
    version = real.name  # python3.11
    bin_dir = where / "bin"
    dist = where / "lib/python3/dist-packages"
    bin_dir.mkdir(parents=True)
    dist.mkdir(parents=True)
    shutil.copy2(real, bin_dir / version)
    (bin_dir / "python3").symlink_to(version)
    (where / "lib" / version).symlink_to(Path("/usr/lib") / version)
    return bin_dir, dist


@pytest.mark.slow
def test_staged_arm64_install_builds_a_venv_that_imports_the_apt_bindings_and_bedside(
    tmp_path: Path,
) -> None:
    """The whole install path with a recording apt-get: real venv, real pip (wheels only)."""
    system_bin, dist = _fake_system_python(tmp_path / "system")
    log = tmp_path / "apt.log"
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    apt = fake_bin / "apt-get"
    apt.write_text(RECORDING_APT_GET.format(log=log, dist=dist))
    apt.chmod(0o755)
    root = tmp_path / "root"
    env = _staged_env(
        tmp_path, BEDSIDE_INSTALL_ARCH="arm64", BEDSIDE_INSTALL_PIP="1", BEDSIDE_INSTALL_APT="1"
    )
    env.pop("BEDSIDE_INSTALL_PYTHON")
    env["PATH"] = os.pathsep.join([str(fake_bin), str(system_bin), "/usr/bin", "/bin"])
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root), "--no-start"],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    calls = log.read_text().splitlines()
    assert calls == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends python3-lgpio python3-spidev",
    ]
    venv = root / "opt/bedside/venv"
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    check = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import lgpio, spidev, gpiozero, smbus2, service; "
            "print(lgpio.FROM_APT, spidev.FROM_APT, service.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: `service` must come from the venv
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[:2] == ["python3-lgpio", "python3-spidev"]
    assert check.stdout.split()[2].startswith(str(venv))
    explain = subprocess.run(
        [str(venv / "bin/bedside"), "validate-config", str(root / "etc/bedside/bedside.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert explain.returncode == 0, explain.stderr
