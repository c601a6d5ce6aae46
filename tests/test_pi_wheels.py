"""Every package the installer hands pip has a wheel for a Raspberry Pi (aarch64, CPython 3.11).

The pip command is taken from the installer's own staged output (``--root``, arm64), so this
checks what a Pi would run. pip resolves it against PyPI alone (``--isolated``: no local index
or constraints of this machine) for manylinux aarch64 and cp311, wheels only, as a dry run: pip
reads each wheel's metadata (PEP 658) without downloading the wheels, so this takes seconds,
not the ~60 MB of numpy and scipy. A package with no such wheel fails pip's resolution, and the
test names it. Needs PyPI (reachable here and in CI).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "systemd" / "install.sh"

#: Raspberry Pi OS Bookworm has glibc 2.36: it runs manylinux wheels up to 2_36.
GLIBC_MINOR = 36
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, GLIBC_MINOR + 1)]


def _installer_pip_args(tmp_path: Path) -> list[str]:
    """The arguments after ``pip`` that the staged arm64 installer says it would run."""
    root = tmp_path / "root"
    (root / "etc/bedside").mkdir(parents=True)
    (root / "etc/bedside/bedside.toml").write_text("")  # skip generating the example
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_INSTALL_")}
    env["BEDSIDE_INSTALL_ARCH"] = "arm64"
    proc = subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root), "--no-start"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [
        line.removeprefix("would run: /opt/bedside/venv/bin/pip ")
        for line in proc.stdout.splitlines()
        if line.startswith("would run: /opt/bedside/venv/bin/pip install") and "--upgrade pip" not in line
    ]
    assert len(lines) == 1, proc.stdout
    return shlex.split(lines[0])


def _dry_run(pip_args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "report.json"
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    extra = ["--isolated", "--dry-run", "--ignore-installed", "--report", str(report)]
    extra += [*platform_args, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    extra += ["--target", str(tmp_path / "target")]
    # pip install <installer's options> <dry-run and target options> <the requirement>
    options, requirement = pip_args[:-1], pip_args[-1]
    return subprocess.run(
        [sys.executable, "-m", "pip", *options, *extra, requirement],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )


def _missing_package(stderr: str) -> str:
    found = re.search(r"No matching distribution found for (\S+)", stderr)
    return found.group(1) if found else "(see pip's output)"


def test_every_requirement_the_installer_hands_pip_has_an_aarch64_cp311_wheel(tmp_path: Path) -> None:
    pip_args = _installer_pip_args(tmp_path)
    assert pip_args[0] == "install"
    assert "--only-binary=:all:" in pip_args, "the installer must never let pip compile"
    assert pip_args[-1] == f"{REPO}[pi]"
    proc = _dry_run(pip_args, tmp_path)
    if proc.returncode != 0:
        pytest.fail(
            f"{_missing_package(proc.stderr)} has no wheel for aarch64 / CPython 3.11 on PyPI: "
            f"a Raspberry Pi would need a compiler for it.\n{proc.stderr[-2000:]}"
        )
    report = json.loads((tmp_path / "report.json").read_text())
    files = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["download_info"]["url"]
        for item in report["install"]
    }
    for name in ("numpy", "scipy", "pydantic-core", "pyedflib", "smbus2", "gpiozero"):
        assert name in files, f"{name} not in the resolution: {sorted(files)}"
    for name, url in files.items():
        if name == "bedside":
            continue  # the checkout itself: pure Python, built by setuptools on the Pi
        wheel = url.rsplit("/", 1)[1]
        assert wheel.endswith(".whl"), f"{name}: {wheel} is not a wheel"
        tags = wheel[: -len(".whl")].split("-")[-3:]
        assert tags[2] in ("any",) or "aarch64" in tags[2], f"{name}: {wheel} is not for aarch64"
        assert tags[0] in ("py3", "py2.py3", "cp311") or tags[1] == "abi3", f"{name}: {wheel} not for 3.11"


def test_the_resolution_names_a_package_without_an_aarch64_wheel(tmp_path: Path) -> None:
    """The check itself can fail: spidev (the old pi extra's) has no wheel at all on PyPI."""
    proc = _dry_run(["install", "--only-binary=:all:", "spidev>=3.6"], tmp_path)
    assert proc.returncode != 0
    assert _missing_package(proc.stderr).startswith("spidev")
