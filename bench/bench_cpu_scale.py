"""How fast this CPU runs plain Python, on a workload with published Raspberry Pi timings.

The n-body simulation of the Computer Language Benchmarks Game (five planets, symplectic Euler,
``advance(0.01)`` repeated), the classic single-core interpreter benchmark. A published run of
five million steps on a Raspberry Pi 4 (Cortex-A72, 1.5 GHz) took 158.3 s in Python
(docs/performance.md, "Raspberry Pi"): the ratio of that to this machine's time is the scaling
factor used there for the Pi estimates. Run it on a Pi (``make bench-pi`` does) to measure the
real factor instead of estimating it. Prints one line and writes bench/results/cpu_scale.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: Published: 5,000,000 steps in 158.3 s on a Raspberry Pi 4 Model B (performance governor).
PI4_S_PER_5M = 158.3

SOLAR_MASS = 4 * math.pi * math.pi
DAYS_PER_YEAR = 365.24
BODIES = [
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], SOLAR_MASS),
    (
        [4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01],
        [1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
         -6.90460016972063023e-05 * DAYS_PER_YEAR],
        9.54791938424326609e-04 * SOLAR_MASS,
    ),
    (
        [8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01],
        [-2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
         2.30417297573763929e-05 * DAYS_PER_YEAR],
        2.85885980666130812e-04 * SOLAR_MASS,
    ),
    (
        [1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01],
        [2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
         -2.96589568540237556e-05 * DAYS_PER_YEAR],
        4.36624404335156298e-05 * SOLAR_MASS,
    ),
    (
        [1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01],
        [2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
         -9.51592254519715870e-05 * DAYS_PER_YEAR],
        5.15138902046611451e-05 * SOLAR_MASS,
    ),
]  # fmt: skip


def energy(bodies: list[tuple[list[float], list[float], float]]) -> float:
    e = 0.0
    for i, (r1, v1, m1) in enumerate(bodies):
        e += 0.5 * m1 * (v1[0] ** 2 + v1[1] ** 2 + v1[2] ** 2)
        for r2, _v2, m2 in bodies[i + 1 :]:
            d = math.sqrt((r1[0] - r2[0]) ** 2 + (r1[1] - r2[1]) ** 2 + (r1[2] - r2[2]) ** 2)
            e -= m1 * m2 / d
    return e


def advance(bodies: list[tuple[list[float], list[float], float]], dt: float, steps: int) -> None:
    pairs = [(bodies[i], bodies[j]) for i in range(len(bodies)) for j in range(i + 1, len(bodies))]
    for _ in range(steps):
        for (r1, v1, m1), (r2, v2, m2) in pairs:
            dx, dy, dz = r1[0] - r2[0], r1[1] - r2[1], r1[2] - r2[2]
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** -1.5)
            b1, b2 = m1 * mag, m2 * mag
            v1[0] -= dx * b2
            v1[1] -= dy * b2
            v1[2] -= dz * b2
            v2[0] += dx * b1
            v2[1] += dy * b1
            v2[2] += dz * b1
        for r, v, _m in bodies:
            r[0] += dt * v[0]
            r[1] += dt * v[1]
            r[2] += dt * v[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000, help="n-body steps (published: 5,000,000)")
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu_scale.json")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    bodies = [(list(r), list(v), m) for r, v, m in BODIES]
    px = py = pz = 0.0
    for _r, v, m in bodies:
        px, py, pz = px + v[0] * m, py + v[1] * m, pz + v[2] * m
    sun_v = bodies[0][1]
    sun_v[0], sun_v[1], sun_v[2] = -px / SOLAR_MASS, -py / SOLAR_MASS, -pz / SOLAR_MASS
    e0 = energy(bodies)
    t0, c0 = time.perf_counter(), time.process_time()
    advance(bodies, 0.01, args.steps)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    per_5m_s = cpu_s * 5_000_000 / args.steps
    doc = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "steps": args.steps,
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "cpu_s_per_5m_steps": round(per_5m_s, 1),
        "pi4_published_s_per_5m_steps": PI4_S_PER_5M,
        "pi4_slower_x": round(PI4_S_PER_5M / per_5m_s, 2),
        "energy": [round(e0, 9), round(energy(bodies), 9)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(
        f"n-body, {args.steps:,} steps: {cpu_s:.2f} s CPU ({per_5m_s:.1f} s per 5 M steps) on "
        f"{doc['machine']}, Python {doc['python']}; the published Raspberry Pi 4 run is "
        f"{doc['pi4_slower_x']}x that"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
