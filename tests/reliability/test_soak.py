"""The soak's short CI variant: three 20-minute nights in a row through one daemon process, with the
bounds of ``bench/soak.py`` (the full run is 30 nights of 8 h: ``.venv/bin/python bench/soak.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_soak", REPO / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_nights_in_a_row_stay_within_the_memory_file_and_database_bounds(tmp_path: Path) -> None:
    soak = _soak_module()
    result = soak.soak(3, 1200.0, 250.0, tmp_path / "soak")
    assert result.problems == [], result.problems
    assert len(result.per_night) == 3, "every night was measured"
    assert result.events_stored >= 20 and result.events_on_wire == result.events_stored
    first, last = result.per_night[0], result.per_night[-1]
    print(
        f"soak CI: rss {first.rss_mib} -> {last.rss_mib} MiB, fds {first.fds} -> {last.fds}, "
        f"db {first.db_mib} -> {last.db_mib} MiB, {result.events_stored} events"
    )
