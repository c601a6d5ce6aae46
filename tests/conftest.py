"""Shared fixtures: a real Mosquitto per test, paths to the shared recordings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker, running_brokers, stop_leftover_brokers
from tests.daemonutil import kill_leftover_daemons, started_daemons

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """After every test, passed or failed, end the brokers and daemons (with their dashboards) it
    started and did not stop: a failure must not leave processes holding ports for the next ones.
    Those of module fixtures, set up before this one, are left to their own teardown (and to the
    exit handlers of tests/broker.py and tests/daemonutil.py)."""
    brokers, daemons = running_brokers(), started_daemons()
    yield
    kill_leftover_daemons(keep=daemons)
    stop_leftover_brokers(keep=brokers)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh anonymous Mosquitto on a free loopback port, stopped after the test."""
    b = Broker(tmp_path / "broker")
    b.workdir.mkdir()
    b.start()
    try:
        yield b
    finally:
        b.stop()


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test saying the folder is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared recording {path} not present (a user's clone has no ../shared/data)")
    return path
