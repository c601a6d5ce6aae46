#!/usr/bin/env bash
# Install the Debian packages the demo and the tests need, where missing: mosquitto (the real
# broker the tests start on their own ports), python3-venv, openssl; with --browser also chromium
# and chromium-driver (about 440 MB, for the dashboard's browser tests only: `make test` and CI ask
# for them, `make demo`, `make setup` and a Pi install do not). Idempotent; needs root or sudo only
# when something is missing.
set -euo pipefail

browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    *) echo "system-packages.sh: unknown option $arg (known: --browser)" >&2; exit 2 ;;
  esac
done

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/bin/mosquitto_passwd ] || missing+=(mosquitto)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the TLS broker test makes its own CA
# The dashboard's browser tests drive Debian's own headless Chromium (never a downloaded browser).
if [ "$browser" -eq 1 ]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing system packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian package starts a broker on port 1883; the tests never use it (they start their own).
