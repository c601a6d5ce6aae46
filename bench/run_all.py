"""Run every bench script in turn and print their tables (`make bench`).

Each script prints its own table and writes its JSON (bench/results/, bench/evaluate_detector.json).
Nothing here passes or fails: the figures are for the README and the issue notes.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = [
    ("detector throughput (8-h night)", ["bench_detector.py", "--repeat", "1"]),
    ("detector accuracy (real recordings and simulated nights)", ["evaluate_detector.py"]),
    ("sampling with the mock MCP3008", ["bench_sampling.py"]),
    ("latency through a real Mosquitto", ["bench_latency.py", "--movements", "15"]),
]


def main() -> int:
    cpus = Path("/proc/cpuinfo").read_text().count("processor")
    when = datetime.now(UTC)
    print(
        f"bedside bench, {when:%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"Python {platform.python_version()}, {cpus} CPUs"
    )
    failed = 0
    for title, cmd in SCRIPTS:
        print(f"\n=== {title}: {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, str(BENCH / cmd[0]), *cmd[1:]])
        print(f"--- {time.monotonic() - t0:.0f} s, exit {rc}", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
