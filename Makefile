# Bedside: `make demo` runs the simulated night with dashboard; `make test` sets up and runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench setup clean ha-venv bench-pi qemu-arm64-test browser-packages

$(STAMP): pyproject.toml
	./scripts/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/bedside demo-history --nights 30 --if-empty
	$(BIN)/bedside run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

ha-venv:
	./scripts/ha-venv.sh

# Debian's headless Chromium and its driver, for the dashboard's browser tests only (not the demo).
browser-packages:
	./scripts/system-packages.sh --browser

pytest: $(STAMP) ha-venv browser-packages
	$(BIN)/pytest --durations=20

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# On a Raspberry Pi (64-bit OS), from the checkout: a venv of its own that sees apt's lgpio and
# spidev, wheels only (as systemd/install.sh), then the Pi subset of the benches (< 5 min on a
# Zero 2 W). Needs mosquitto (sudo apt install mosquitto) for the live bench.
PI_VENV ?= .venv-pi
$(PI_VENV)/.stamp: pyproject.toml
	python3 -m venv --system-site-packages $(PI_VENV)
	echo '*' >$(PI_VENV)/.gitignore
	$(PI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PI_VENV)/bin/python -m pip install --quiet --only-binary=:all: -e '.[pi,bench]'
	touch $@

bench-pi: $(PI_VENV)/.stamp
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
		{ echo "bench-pi: the live bench starts its own Mosquitto: sudo apt install mosquitto"; exit 1; }
	$(PI_VENV)/bin/python bench/run_all.py --pi

# The detector's tests on arm64 (Debian's python3 and the aarch64 wheels) under QEMU user
# emulation; not part of `make test` (slow, downloads about 100 MB once).
qemu-arm64-test:
	./scripts/qemu-arm64-test.sh

clean:
	rm -rf $(VENV) build *.egg-info
