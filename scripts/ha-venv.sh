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
# - the rest are the `requirements` of the built-in integrations HA sets up for our minimal
#   configuration (see tests/ha/harness.py), copied from their manifest.json in 2024.3.3, so
#   `hass --skip-pip` never needs to install anything at run time.
REQUIREMENTS=(
  "homeassistant==2024.3.3"
  "josepy<2"
  "paho-mqtt==1.6.1"
)

want="$("$PYTHON" --version 2>&1) ${REQUIREMENTS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$HA_VENV/bin/hass" ]; then
  echo "HA venv $HA_VENV is up to date (${REQUIREMENTS[0]})"
  exit 0
fi

start=$(date +%s)
if [ ! -x "$HA_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$HA_VENV"
fi
# Keep the venv out of git, ruff and other tools that honour .gitignore.
echo '*' >"$HA_VENV/.gitignore"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$HA_VENV/bin/python" -m pip install --quiet --upgrade pip
"$HA_VENV/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}"
echo "$want" >"$STAMP"
echo "HA venv $HA_VENV ready in $(($(date +%s) - start)) s (${REQUIREMENTS[*]})"
