"""Shared fixtures: a real Mosquitto per test, paths to the shared recordings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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
