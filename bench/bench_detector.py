"""Detector throughput: samples/s and real-time factor for an 8-h night, peak memory, vs. a reference.

For each rate (50, 250, 1000 Hz) a simulated 8-h night (hardware.simulated, rendered before
timing) is analysed in one pass (one ``process`` call with the whole night, and
``analyze_array``, which feeds 10-min chunks to bound memory) and in live-size blocks (0.1 s,
the daemon's default block; over the first ``--live-hours`` of the night, 1 by default, to keep
the run short: the real-time factor is per block, not per night). At ``--reference-rates``
(default 250 Hz) the same night also goes through ``bench/reference_detector.py`` (scipy
filtfilt + pandas rolling windows, the way a researcher would write it) in the same run, and
through our own stages 1-3 alone (the same job as the reference); both lists of movements
are scored against the simulator's truth (any movement type, overlapping spans, one-to-one)
so the speed ratio is between implementations of comparable quality. The reference is also
timed with heart and breathing rate every 5 s and epoch activity counts added
(``reference_analysis``, the same plain style), nearer the full detector's outputs; both
sets of vitals are scored against the simulator's true rates. Three ratios are reported:
full detector vs. stages-1-3 reference, full detector vs. reference with vitals, and
stages 1-3 vs. stages 1-3.

Times are the best of ``--repeat`` runs, wall clock and CPU time of this process (the machine
is shared, so wall figures are noisy; the ratios to the reference use CPU time); peak memory
is tracemalloc's peak of Python/numpy allocations during one run, beyond the input array.
Prints a table and writes bench/results/detector.json.

Usage: ``python bench/bench_detector.py [--hours 8] [--rates 50 250 1000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.reference_detector import reference_analysis, reference_movements  # noqa: E402
from hardware.simulated import SimulatedNight  # noqa: E402
from service.detect import Detector, analyze_array  # noqa: E402
from service.detect.baseline import Baseline  # noqa: E402
from service.detect.condition import Conditioner  # noqa: E402
from service.detect.envelope import FrameEnvelope  # noqa: E402
from service.detect.params import DetectorParams  # noqa: E402
from service.detect.segments import Segment, Segmenter  # noqa: E402
from service.detect.types import MOVEMENT_TYPES, Event, Output, Vitals  # noqa: E402

GOAL_REALTIME_X = 20000
GOAL_VS_REFERENCE = 3.0


def run_ours(x: np.ndarray, rate: float, block: int) -> list[Output]:
    """The streaming detector: block < 0 one process() call, 0 analyze_array, else blocks."""
    if block < 0:
        det = Detector(rate)
        return det.process(x) + det.flush()
    if block == 0:
        return analyze_array(x, rate)
    det = Detector(rate)
    out: list[Output] = []
    for i in range(0, x.size, block):
        out += det.process(x[i : i + block])
    return out + det.flush()


def run_stages_1_to_3(x: np.ndarray, rate: float) -> list[Segment]:
    """Only the stages the reference does (band-pass, envelope, baseline, segments), in 10-min
    chunks: the like-for-like half of the comparison (the full detector also repairs faults,
    classifies, tracks series, presence, sleep and vitals)."""
    p = DetectorParams()
    cond = Conditioner(rate, p)
    frame_n = max(1, round(p.frame_s * cond.internal_hz))
    frame_s = frame_n * cond.factor / rate
    env, base, seg = FrameEnvelope(frame_n), Baseline(frame_s, p), Segmenter(frame_s, p)
    out: list[Segment] = []
    step = round(600 * rate)
    for i in range(0, x.size, step):
        chunk = np.asarray(x[i : i + step], dtype=np.float64)
        bands = cond.process(chunk, np.zeros(chunk.size, bool), [])
        e, f = env.process(bands.move, bands.fault)
        renv, rf, rb = base.process(e, f)
        if renv.size:
            out += seg.process(renv, rb, rf).finished
    renv, rf, rb = base.flush()
    if renv.size:
        out += seg.process(renv, rb, rf).finished
    return out + seg.flush()


def timed(fn: Callable[[], Any], repeat: int, trace: bool) -> tuple[float, float, float | None, Any]:
    """Best wall time and best CPU time (this process) of ``repeat`` calls, tracemalloc peak
    (MiB) of one more (if ``trace``: it slows many small calls badly, so live blocks are not
    traced), and the last result. CPU time is steadier than wall time on a shared machine."""
    best = best_cpu = float("inf")
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    if not trace:
        return best, best_cpu, None, result
    tracemalloc.start()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, best_cpu, peak / 2**20, result


def score(det: list[tuple[float, float]], truth: list[tuple[float, float]]) -> dict[str, float]:
    """Precision and recall of movement spans: one-to-one, greedy by overlap (any overlap counts)."""
    pairs = sorted(
        (-(min(b, d) - max(a, c)), i, j)
        for i, (a, b) in enumerate(det)
        for j, (c, d) in enumerate(truth)
        if min(b, d) > max(a, c)
    )
    used_d: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in pairs:
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    return {
        "precision": round(len(used_d) / len(det), 3) if det else float("nan"),
        "recall": round(len(used_t) / len(truth), 3) if truth else float("nan"),
        "detected": len(det),
        "truth": len(truth),
    }


def vitals_error(
    vitals: list[tuple[float, float | None, float | None]], night: SimulatedNight
) -> dict[str, Any]:
    """Mean absolute error of reported heart / breathing rates against the simulator's truth,
    over windows ending while the sleeper is in bed, and how many windows reported one."""
    hr = [abs(h - tb) for t, h, _ in vitals if h is not None and (tb := night.heart_bpm_at(t)) is not None]
    br = [abs(b - tb) for t, _, b in vitals if b is not None and (tb := night.breath_bpm_at(t)) is not None]
    return {
        "heart_mae_bpm": round(float(np.mean(hr)), 2) if hr else None,
        "heart_n": len(hr),
        "breath_mae_bpm": round(float(np.mean(br)), 2) if br else None,
        "breath_n": len(br),
        "in_bed_windows": sum(night.heart_bpm_at(t) is not None for t, _, _ in vitals),
    }


def outside(
    spans: list[tuple[float, float]], motions: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Spans that do not touch a bed entry/exit motion (the simulator lists those apart)."""
    return [(a, b) for a, b in spans if not any(a < m1 and b > m0 for m0, m1 in motions)]


def row(rate: float, mode: str, n: int, secs: float, peak: float | None, outputs: int) -> dict[str, Any]:
    dur = n / rate
    return {
        "rate_hz": rate,
        "mode": mode,
        "samples": n,
        "seconds": round(secs, 3),
        "samples_per_s": round(n / secs),
        "realtime_x": round(dur / secs),
        "peak_mib": None if peak is None else round(peak, 1),
        "outputs": outputs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[50.0, 250.0, 1000.0])
    ap.add_argument("--reference-rates", type=float, nargs="*", default=[250.0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--block-s", type=float, default=0.1, help="live block length, seconds")
    ap.add_argument(
        "--live-hours", type=float, default=1.0, help="hours of the night fed in live blocks (the first ones)"
    )
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "detector.json")
    a = ap.parse_args()
    if a.hours <= 0 or a.repeat < 1 or a.block_s <= 0 or a.live_hours <= 0:
        ap.error("--hours, --live-hours and --block-s must be > 0 and --repeat >= 1")
    print(
        f"Detector throughput, {a.hours:g}-h simulated night (seed 1); python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.machine()}; best of {a.repeat}, shared machine: noisy"
    )
    print(
        f"{'rate':>7} {'mode':<24} {'samples':>11} {'time s':>8} {'CPU s':>7} {'samples/s':>12} "
        f"{'x real time':>12} {'peak MiB':>9} {'outputs':>8}"
    )
    rows: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    for rate in a.rates:
        night = SimulatedNight(seed=1, rate_hz=rate, duration_s=a.hours * 3600.0)
        x = night.render_all()
        block = max(1, round(a.block_s * rate))
        n_live = min(x.size, round(a.live_hours * 3600 * rate))
        modes: list[tuple[str, Callable[[], Any]]] = [
            ("single call", lambda x=x, rate=rate: run_ours(x, rate, -1)),
            ("analyze_array", lambda x=x, rate=rate: run_ours(x, rate, 0)),
            (
                f"{a.block_s:g}-s blocks (live)",
                lambda x=x[:n_live], rate=rate, block=block: run_ours(x, rate, block),
            ),
        ]
        if rate in a.reference_rates:
            modes.append(("stages 1-3 only", lambda x=x, rate=rate: run_stages_1_to_3(x, rate)))
            modes.append(("reference (scipy/pandas)", lambda x=x, rate=rate: reference_movements(x, rate)))
            modes.append(("reference + vitals", lambda x=x, rate=rate: reference_analysis(x, rate)))
        got: dict[str, Any] = {}
        for mode, fn in modes:
            live = "blocks" in mode
            secs, cpu, peak, result = timed(fn, 1 if live else a.repeat, not live)
            got[mode] = result
            n_out = (
                len(result["movements"]) + len(result["vitals"]) if isinstance(result, dict) else len(result)
            )
            r = row(rate, mode, n_live if live else int(x.size), secs, peak, n_out)
            r["cpu_seconds"] = round(cpu, 3)
            rows.append(r)
            print(
                f"{r['rate_hz']:>6g}  {r['mode']:<24} {r['samples']:>11} {r['seconds']:>8.3f} {cpu:>7.3f} "
                f"{r['samples_per_s']:>12,} {r['realtime_x']:>12,} {r['peak_mib']!s:>9} {r['outputs']:>8}",
                flush=True,
            )
        if "reference (scipy/pandas)" in got:
            motions = [(e.start_s, e.end_s) for e in night.truth if e.type in ("bed_entry", "bed_exit")]
            truth = [(e.start_s, e.end_s) for e in night.truth if e.type in MOVEMENT_TYPES]
            ours_mv = [
                (o.start_s, o.end_s)
                for o in got["analyze_array"]
                if isinstance(o, Event) and o.type in MOVEMENT_TYPES
            ]
            ref = [(s, e) for s, e, _ in got["reference (scipy/pandas)"]]
            q = {
                "rate_hz": rate,
                "ours": score(outside(ours_mv, motions), truth),
                "reference": score(outside(ref, motions), truth),
            }
            if "reference + vitals" in got:
                ours_v = [
                    (o.t_s, o.heart_bpm, o.breath_bpm) for o in got["analyze_array"] if isinstance(o, Vitals)
                ]
                q["vitals_ours"] = vitals_error(ours_v, night)
                q["vitals_reference"] = vitals_error(got["reference + vitals"]["vitals"], night)
            quality.append(q)
    print("\nmovement spans vs. the simulator's truth (any movement type, overlap, one-to-one):")
    for q in quality:
        for who in ("ours", "reference"):
            s = q[who]
            print(
                f"{q['rate_hz']:>6g} Hz  {who:<10} precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
                f"({s['detected']} detected, {s['truth']} true)"
            )
    for q in quality:
        for who in ("ours", "reference"):
            v = q.get(f"vitals_{who}")
            if v:
                print(
                    f"{q['rate_hz']:>6g} Hz  {who:<10} vitals vs. truth (in bed): heart MAE "
                    f"{v['heart_mae_bpm']} bpm on {v['heart_n']} windows, breathing MAE "
                    f"{v['breath_mae_bpm']} /min on {v['breath_n']} (of {v['in_bed_windows']})"
                )
    goals = []

    def pick(rate: float, mode: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["rate_hz"] == rate and r["mode"] == mode), None)

    one = pick(250.0, "analyze_array")
    ref = pick(250.0, "reference (scipy/pandas)")
    if one:
        rt = int(one["realtime_x"])
        goals.append({"goal": f">= {GOAL_REALTIME_X:,}x real time at 250 Hz (analyze_array)",
                      "value": rt, "met": rt >= GOAL_REALTIME_X})  # fmt: skip
    if one and ref:
        ratio = round(float(ref["cpu_seconds"]) / float(one["cpu_seconds"]), 1)
        goals.append({"goal": f">= {GOAL_VS_REFERENCE:g}x faster (CPU s) than the reference at 250 Hz",
                      "value": ratio, "met": ratio >= GOAL_VS_REFERENCE})  # fmt: skip
    full_ref = pick(250.0, "reference + vitals")
    if one and full_ref:
        ratio = round(float(full_ref["cpu_seconds"]) / float(one["cpu_seconds"]), 1)
        goal = f">= {GOAL_VS_REFERENCE:g}x faster (CPU s) than the reference with vitals and counts at 250 Hz"
        goals.append({"goal": goal, "value": ratio, "met": ratio >= GOAL_VS_REFERENCE})
    same = pick(250.0, "stages 1-3 only")
    if same and ref:
        ratio = round(float(ref["cpu_seconds"]) / float(same["cpu_seconds"]), 1)
        goal = f">= {GOAL_VS_REFERENCE:g}x faster (CPU s) than the reference at 250 Hz, same stages only"
        goals.append({"goal": goal, "value": ratio, "met": ratio >= GOAL_VS_REFERENCE})
    for g in goals:
        print(f"goal: {g['goal']} -> {g['value']:,} ({'MET' if g['met'] else 'MISSED'})")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"rows": rows, "quality": quality, "goals": goals}, indent=1))


if __name__ == "__main__":
    main()
