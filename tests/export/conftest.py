"""Each export test module builds its ``history`` once; every test gets a private copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def db(history: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    """A private copy of the module's ``history`` database (tests change it), with its night ids."""
    src, ids = history
    dst = tmp_path / "bedside.sqlite3"
    shutil.copy(src, dst)
    return dst, ids
