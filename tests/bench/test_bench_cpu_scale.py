"""bench/bench_cpu_scale.py (the Pi scaling factor) and run_all's Pi subset: smoke tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )


def test_nbody_gives_the_published_energies_and_the_pi4_ratio(tmp_path: Path) -> None:
    out = tmp_path / "cpu_scale.json"
    proc = _run("bench/bench_cpu_scale.py", "--steps", "1000", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["steps"] == 1000 and doc["cpu_s"] >= 0
    # The Benchmarks Game's published output for n = 1000: the same program, step for step.
    assert doc["energy"] == [-0.169075164, -0.169087605]
    # the ratio is computed before cpu_s_per_5m_steps is rounded to 0.1 s: equal within that rounding
    per_5m = doc["cpu_s_per_5m_steps"]
    assert 158.3 / (per_5m + 0.05) - 0.005 <= doc["pi4_slower_x"] <= 158.3 / max(per_5m - 0.05, 1e-9) + 0.005


def test_nbody_refuses_zero_steps() -> None:
    proc = _run("bench/bench_cpu_scale.py", "--steps", "0")
    assert proc.returncode == 2 and "--steps must be at least 1" in proc.stderr


def test_every_script_of_the_pi_subset_exists_and_accepts_its_options() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    steps = [s for item in run_all.PI_PLAN for s in (item if isinstance(item, list) else [item])]
    assert {s[1][0] for s in steps} >= {"bench_cpu_scale.py", "bench_live.py", "bench_dashboard.py"}
    for _title, args in steps:
        assert (REPO / "bench" / args[0]).exists(), args[0]
        proc = _run(f"bench/{args[0]}", "--help")
        assert proc.returncode == 0, proc.stderr
        options = [a for a in args[1:] if a.startswith("--")]
        for option in options:
            assert option in proc.stdout, f"{args[0]} has no {option}"
