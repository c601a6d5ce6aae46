#!/usr/bin/env bash
# Run the detector's tests (tests/detect) on arm64 under QEMU user emulation (`make qemu-arm64-test`).
#
# What a Pi runs, as closely as this machine can: Debian Bookworm's arm64 python3 (3.11, the
# Python of Raspberry Pi OS Bookworm) unpacked from Debian's packages, with numpy and scipy from
# their manylinux aarch64 wheels on PyPI (the ones the installer's pip takes on a Pi). No chroot,
# no binfmt_misc: qemu-aarch64-static runs the arm64 interpreter with -L pointing at the unpacked
# root, so it needs no privileges beyond apt-get for its two tools. Not part of `make test` (it
# downloads about 100 MB the first time and is slow: every instruction is emulated).
#
#   scripts/qemu-arm64-test.sh [pytest args]     # default: tests/detect -q
#   QEMU_ROOT=/path scripts/qemu-arm64-test.sh    # where the arm64 root is kept (default .qemu-arm64)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="${QEMU_ROOT:-.qemu-arm64}"
SITE="$ROOT/opt/site"
PYTHON_HOST="${PYTHON:-python3}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

need=()
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${need[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# python3, and libstdc++ that numpy's and scipy's manylinux wheels expect from the system (as
# Raspberry Pi OS has it).
PACKAGES="python3,libstdc++6"
if [ ! -x "$ROOT/usr/bin/python3" ] || [ "$(cat "$ROOT/.packages" 2>/dev/null)" != "$PACKAGES" ]; then
  echo "unpacking Debian $SUITE arm64 python3 into $ROOT (packages only: nothing runs in it yet)"
  rm -rf "$ROOT"
  # extract: the listed packages and what they depend on are unpacked, no maintainer script runs.
  mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$PACKAGES" \
    "$SUITE" "$ROOT" "$MIRROR"
  echo '*' >"$ROOT/.gitignore"
  echo "$PACKAGES" >"$ROOT/.packages"
fi

# Bedside's own requirements (the tests' conftest imports the config, hence pydantic and the
# rest) and pytest, from aarch64 wheels, as pip on a Pi would take them. The checkout itself
# comes first on PYTHONPATH, so the tests run the code of this tree.
WANT="$(sha256sum pyproject.toml | cut -c1-16) pytest>=8 pytest-timeout>=2.2"
if [ "$(cat "$SITE/.stamp" 2>/dev/null)" != "$WANT" ]; then
  echo "installing Bedside's requirements and pytest from aarch64 wheels into $SITE"
  rm -rf "$SITE"
  platforms=(--platform manylinux2014_aarch64)
  for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
  "$PYTHON_HOST" -m pip install --isolated --quiet --disable-pip-version-check --only-binary=:all: \
    "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 --target "$SITE" \
    "$PWD[pi]" "pytest>=8" "pytest-timeout>=2.2"
  echo "$WANT" >"$SITE/.stamp"
fi

run() {
  PYTHONPATH="$PWD:$SITE" PYTHONDONTWRITEBYTECODE=1 \
    qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3" "$@"
}

run -c 'import platform, sys, numpy, scipy
print(f"under QEMU: {platform.machine()} Python {sys.version.split()[0]}, numpy {numpy.__version__}, scipy {scipy.__version__}")'
if [ $# -eq 0 ]; then
  # One test starts a child Python (sys.executable): without binfmt_misc the kernel cannot exec
  # an arm64 binary, so it is left out here (it runs in `make test`).
  set -- tests/detect -q \
    --deselect tests/detect/test_stage_condition.py::test_the_daemon_side_detector_does_not_import_scipy_signal
fi
start=$(date +%s)
run -m pytest -p no:cacheprovider --rootdir "$PWD" -c pyproject.toml "$@"
echo "tests on arm64 under QEMU took $(($(date +%s) - start)) s"
