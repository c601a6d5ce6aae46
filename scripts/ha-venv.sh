#!/usr/bin/env bash
# Create or update the Home Assistant venv the HA tests (tests/ha) start `hass` from.
#
# Home Assistant lives in its own venv because its mqtt integration pins paho-mqtt 1.6.x while
# Bedside needs paho-mqtt 2.x. Idempotent: a stamp file records what was installed, so a second
# run with the same pins returns at once. Uses `python3 -m venv` and pip from PyPI only.
#
#   scripts/ha-venv.sh            # creates ./.venv-ha (override with HA_VENV=/path)
#   PYTHON=python3.11 scripts/ha-venv.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
HA_VENV="${HA_VENV:-.venv-ha}"
STAMP="$HA_VENV/.ha-venv-stamp"

# The pins, and why:
# - homeassistant 2024.3.3: the newest release that supports Python 3.11; has the MQTT event platform.
# - josepy<2: acme (pulled in by HA's http stack) imports josepy APIs removed in 2.0; without the
#   pin every HTTP request fails inside acme.
# - the rest are the `requirements` of the built-in integrations HA 2024.3.3 sets up for the
#   minimal configuration in tests/ha/harness.py (its always-on default integrations, frontend
#   among them, plus mqtt, api, config, onboarding and what they depend on), copied from their
#   manifest.json, so `hass --skip-pip` never has to install anything at run time.
# Every package is also held to homeassistant/package_constraints.txt of the same release (what HA
# itself installs against), so transitive dependencies don't drift to versions it never ran with.
HA_VERSION="2024.3.3"
REQUIREMENTS=(
  "homeassistant==$HA_VERSION"
  "josepy<2"
  "paho-mqtt==1.6.1"                     # mqtt
  "home-assistant-frontend==20240307.0"  # frontend (always set up; its failure means recovery mode)
  "securetar==2024.2.1"                  # backup
  "janus==1.0.0"                         # file_upload (an mqtt dependency)
  "psutil-home-assistant==0.0.1"         # hardware
  "Pillow==10.2.0"                       # image_upload (a person dependency)
  "SQLAlchemy==2.0.27"                   # recorder: analytics (an onboarding dependency) imports
  "fnv-hash-fast==0.5.0"                 #   recorder's modules, though recorder is never set up
  "PyTurboJPEG==1.7.1"                   # camera (the mqtt entry sets up all its platforms; numpy)
)

want="$("$PYTHON" --version 2>&1) ${REQUIREMENTS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$HA_VENV/bin/hass" ]; then
  echo "HA venv $HA_VENV is up to date (${REQUIREMENTS[0]})"
  exit 0
fi

start=$(date +%s)
# A venv made by another Python (or half made) is replaced, not patched.
if [ -e "$HA_VENV" ] && [ "$("$HA_VENV/bin/python" --version 2>&1)" != "$("$PYTHON" --version 2>&1)" ]; then
  echo "replacing $HA_VENV (made by another Python, or incomplete)"
  rm -rf "$HA_VENV"
fi
if [ ! -x "$HA_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$HA_VENV"
fi
# Keep the venv out of git, ruff and other tools that honour .gitignore.
echo '*' >"$HA_VENV/.gitignore"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip=("$HA_VENV/bin/python" -m pip)
"${pip[@]}" install --quiet --upgrade pip
# Step 1: HA alone, to read the constraints file it ships; step 2: everything against it.
"${pip[@]}" install --quiet --no-deps "homeassistant==$HA_VERSION"
constraints="$("$HA_VENV/bin/python" -c 'import homeassistant, pathlib
print(pathlib.Path(homeassistant.__file__).parent / "package_constraints.txt")')"
"${pip[@]}" install --quiet --constraint "$constraints" "${REQUIREMENTS[@]}"
"${pip[@]}" check
echo "$want" >"$STAMP"
echo "HA venv $HA_VENV ready in $(($(date +%s) - start)) s: ${REQUIREMENTS[*]}"
