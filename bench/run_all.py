"""Run every bench script and print their tables, then one summary table (`make bench`).

Each script prints its own table and writes its JSON (bench/results/, bench/evaluate_detector.json).
CPU-bound scripts run one at a time; the two paced at real time (latency, live daemon cost) run
side by side, which keeps the whole run under 10 minutes (their figures then include each
other's load, a few % of a core). Nothing here passes or fails: the figures are for the README
and docs/performance.md. tests/bench/ runs each script with tiny settings (a smoke test).
``--pi`` runs a subset sized for a Raspberry Pi (``make bench-pi``, docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

# (title, script and arguments); a list inside the list runs side by side
Step = tuple[str, list[str]]
PLAN: list[Step | list[Step]] = [
    ("detector throughput (8-h night) and the reference", ["bench_detector.py", "--repeat", "3"]),
    ("detector accuracy (real recordings and simulated nights)", ["evaluate_detector.py"]),
    ("sampling with the mock MCP3008", ["bench_sampling.py"]),
    [
        ("latency through a real Mosquitto", ["bench_latency.py", "--movements", "20", "--awakenings", "3"]),
        ("live daemon CPU and memory", ["bench_live.py", "--live-minutes", "3"]),
    ],
    ("fleet: 100 units, one Mosquitto", ["bench_fleet.py"]),
    ("dashboard page timings", ["bench_dashboard.py"]),
]

#: `--pi` (`make bench-pi`): sized for a Raspberry Pi Zero 2 W by the estimate in
#: docs/performance.md (about 12 s of CPU on the CI machine, some 20x that there, plus the live
#: bench's 75 s in real time): plain Python speed against a published Pi 4 run, the detector on a
#: 3-min night (offline and in live 0.1-s blocks), the live daemon for one minute at 250 Hz and the
#: two dashboard pages on a small history (Night page with 1,000 events, Trends with 30 nights,
#: 5 requests each after a warm-up).
PI_PLAN: list[Step | list[Step]] = [
    (
        "CPU scale: n-body against the published Raspberry Pi 4 run",
        ["bench_cpu_scale.py", "--steps", "200000"],
    ),
    (
        "detector throughput (3-min night at 250 Hz)",
        ["bench_detector.py", "--hours", "0.05", "--rates", "250", "--reference-rates", "--repeat", "1"],
    ),
    ("live daemon CPU and memory at 250 Hz", ["bench_live.py", "--live-minutes", "1", "--rates", "250"]),
    (
        "dashboard page timings (small history)",
        ["bench_dashboard.py", "--requests", "5", "--events", "1000", "--nights", "30", "--real-nights", "1"],
    ),
]


def launch(step: Step) -> tuple[str, list[str], subprocess.Popen[str]] | None:
    title, args = step
    if not (BENCH / args[0]).exists():
        print(f"\n=== {title}: {args[0]} not present, skipped", flush=True)
        return None
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / args[0]), *args[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return title, args, proc


def finish(title: str, args: list[str], proc: subprocess.Popen[str], t0: float) -> int:
    out, _ = proc.communicate()
    print(f"\n=== {title}: {' '.join(args)}")
    print(out.rstrip())
    print(f"--- {time.monotonic() - t0:.0f} s, exit {proc.returncode}", flush=True)
    return proc.returncode


#: Results written before this run began are not summarised (a script that failed leaves the old file).
RUN_STARTED = time.time()


def load(name: str) -> Any:
    path = RESULTS / name
    try:
        if path.stat().st_mtime < RUN_STARTED:
            print(f"(summary: {name} is from an earlier run, left out)")
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary() -> list[tuple[str, str, str, str]]:
    """(what, figure, goal, met) rows from the JSON the scripts wrote."""
    rows: list[tuple[str, str, str, str]] = []
    det = load("detector.json")
    if det:
        for r in det["rows"]:
            if r["mode"] in ("analyze_array", "reference (scipy/pandas)") or "blocks" in r["mode"]:
                peak = "" if r["peak_mib"] is None else f", {r['peak_mib']} MiB peak"
                rows.append(
                    (f"{r['rate_hz']:g} Hz {r['mode']}", f"{r['realtime_x']:,}x real time{peak}", "", "")
                )
        for g in det["goals"]:
            rows.append(("detector", f"{g['value']:,}", g["goal"], "met" if g["met"] else "MISSED"))
        for q in det["quality"]:
            for who in ("ours", "reference"):
                s = q[who]
                rows.append((f"movement spans, {who}", f"P {s['precision']} R {s['recall']}", "", ""))
    lat = load("latency.json")
    if lat:
        mv = lat["movement"]
        g = lat["goals_p99_ms"]
        for key, label, goal in (
            ("moving_on_ms", "onset -> moving ON", g["moving_on"]),
            ("event_after_end_ms", "physical end -> event", g["event"]),
            ("event_after_scored_end_ms", "scored (AASM) end -> event", g["event"]),
        ):
            st = mv.get(key) or {}
            met = st.get("p99") is not None and st["p99"] <= goal
            rows.append((label, f"p50 {st.get('p50')} ms, p99 {st.get('p99')} ms", f"p99 <= {goal} ms",
                         "met" if met else "MISSED"))  # fmt: skip
        aw = lat.get("awakening") or {}
        if aw.get("found"):
            st = aw["after_rule_met_ms"]
            met = st["p99"] is not None and st["p99"] <= g["awakening"]
            fig = f"p50 {st['p50']} ms, p99 {st['p99']} ms (n={aw['found']})"
            rows.append(
                (
                    "awakening rule met -> event",
                    fig,
                    f"p99 <= {g['awakening']} ms",
                    "met" if met else "MISSED",
                )
            )
    live = load("live.json")
    if live:
        for r in live["rows"]:
            ok_cpu = r["goal_cpu_pct"] is None or r["daemon_cpu_pct"] <= r["goal_cpu_pct"]
            ok = ok_cpu and r["daemon_rss_mb_max"] <= r["goal_rss_mb"]
            rows.append((f"live daemon {r['rate_hz']:g} Hz ({live['minutes']:g} min)",
                         f"CPU {r['daemon_cpu_pct']} % of a core, RSS {r['daemon_rss_mb_max']} MB",
                         f"<= {r['goal_cpu_pct']} %, <= {r['goal_rss_mb']:g} MB",
                         "met" if ok else "MISSED"))  # fmt: skip
    fleet = load("fleet.json")
    if fleet:
        rows.append((f"fleet {fleet['units']} units, night in {fleet['compressed_into_s']:g} s",
                     f"{fleet['events_received_unique']}/{fleet['events_expected']} events, broker CPU "
                     f"{fleet['broker_cpu_pct']} %", "every event delivered",
                     "met" if fleet["all_delivered"] else "MISSED"))  # fmt: skip
    dash = load("dashboard.json")
    if dash:
        for t in dash["timings"]:
            if t["via"] == "http":
                rows.append((f"dashboard {t['page']} page (http)",
                             f"median {t['median_ms']:.0f} ms, p95 {t['p95_ms']:.0f} ms",
                             f"median <= {t['goal_ms']:g} ms",
                             "met" if t["median_ms"] <= t["goal_ms"] else "MISSED"))  # fmt: skip
    scale = load("cpu_scale.json")
    if scale:
        rows.append(("plain Python (n-body)", f"{scale['cpu_s_per_5m_steps']} s per 5 M steps",
                     f"Pi 4 published: {scale['pi4_published_s_per_5m_steps']} s", ""))  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pi", action="store_true", help="the subset for a Raspberry Pi (under 5 min on a Zero 2 W)"
    )
    args = ap.parse_args()
    cpus = Path("/proc/cpuinfo").read_text().count("processor")
    start = time.monotonic()
    print(
        f"bedside bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"Python {platform.python_version()}, {cpus} CPUs",
        flush=True,
    )
    failed = 0
    for item in PI_PLAN if args.pi else PLAN:
        group = item if isinstance(item, list) else [item]
        t0 = time.monotonic()
        running = [r for r in (launch(step) for step in group) if r is not None]
        for title, args, proc in running:
            failed += finish(title, args, proc, t0) != 0
    rows = summary()
    if rows:
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        print(f"\n=== summary ({time.monotonic() - start:.0f} s in all)")
        for r in rows:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    print(f"\nbench finished in {time.monotonic() - start:.0f} s; {failed} script(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
