"""Detector throughput: samples/s and real-time factor for an 8-h night, peak memory.

For each rate (50, 250, 1000 Hz) a simulated 8-h night (hardware.simulated, rendered before
timing) is analysed in one pass (one ``process`` call with the whole night, and
``analyze_array``, which feeds 10-min chunks to bound memory) and in 0.2-s live blocks.
Times are the best of ``--repeat``
runs (wall clock, this process only); peak memory is tracemalloc's peak of Python/numpy
allocations during one run, beyond the input array. Prints a table; ``--json`` writes it.

Usage: ``python bench/bench_detector.py [--hours 8] [--rates 50 250 1000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.detect import Detector, analyze_array  # noqa: E402


def night_samples(rate: float, hours: float) -> np.ndarray:
    try:
        from hardware.simulated import SimulatedNight
    except ImportError:  # pragma: no cover - the simulator is another helper's module
        rng = np.random.default_rng(0)
        n = round(hours * 3600 * rate)
        return (2048 + rng.normal(0, 2, n)).astype(np.float32)
    return SimulatedNight(seed=1, rate_hz=rate, duration_s=hours * 3600.0).render_all()


def run_once(x: np.ndarray, rate: float, block: int) -> int:
    if block < 0:  # the whole night in a single process() call
        det = Detector(rate)
        return len(det.process(x)) + len(det.flush())
    if block == 0:  # analyze_array: 10-min chunks internally
        return len(analyze_array(x, rate))
    det = Detector(rate)
    n = 0
    for i in range(0, x.size, block):
        n += len(det.process(x[i : i + block]))
    return n + len(det.flush())


MODES = {-1.0: "single call", 0.0: "analyze_array"}


def bench(x: np.ndarray, rate: float, block_s: float, repeat: int) -> dict[str, float | str]:
    block = int(block_s) if block_s <= 0 else max(1, round(block_s * rate))
    best = float("inf")
    outputs = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        outputs = run_once(x, rate, block)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    run_once(x, rate, block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dur = x.size / rate
    return {
        "rate_hz": rate,
        "mode": MODES.get(block_s, f"{block_s:g}-s blocks"),
        "samples": int(x.size),
        "seconds": round(best, 3),
        "samples_per_s": round(x.size / best),
        "realtime_x": round(dur / best),
        "peak_mib": round(peak / 2**20, 1),
        "outputs": outputs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[50.0, 250.0, 1000.0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--block-s", type=float, default=0.2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    print(
        f"Detector throughput, {a.hours:g}-h simulated night; python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.machine()} ({platform.processor() or 'cpu'})"
    )
    print(
        f"{'rate':>7} {'mode':<14} {'samples':>11} {'time s':>8} {'samples/s':>12} {'x real time':>12} "
        f"{'peak MiB':>9} {'outputs':>8}"
    )
    rows = []
    for rate in a.rates:
        x = night_samples(rate, a.hours)
        for block_s in (-1.0, 0.0, a.block_s):
            r = bench(x, rate, block_s, a.repeat)
            rows.append(r)
            print(
                f"{r['rate_hz']:>6g}  {r['mode']:<14} {r['samples']:>11} {r['seconds']:>8.3f} "
                f"{r['samples_per_s']:>12,} {r['realtime_x']:>12,} {r['peak_mib']:>9} {r['outputs']:>8}"
            )
    for mode in ("single call", "analyze_array"):
        goal = next((r for r in rows if r["rate_hz"] == 250.0 and r["mode"] == mode), None)
        if goal:
            rt = int(goal["realtime_x"])
            print(
                f"goal: >= 20,000x real time at 250 Hz in one pass ({mode}) -> {rt:,}x "
                f"({'MET' if rt >= 20000 else 'MISSED'})"
            )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
