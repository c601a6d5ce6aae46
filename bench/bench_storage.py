"""Database growth per night: what one 8-hour night adds, with and without its whole raw signal.

Nights are simulated and detected as ``service.demo_history`` stores them (the same rows, the same
q16dz codec the daemon uses). Prints a table and writes bench/results/storage.json.

    .venv/bin/python bench/bench_storage.py [--rate-hz 250] [--nights 2] [--hours 8] [--out FILE]

``--hours`` shortens the nights (the smoke test uses a few minutes); the README's figures are
for the default 8-hour nights.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.demo_history import build_history  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _size(db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db.stat().st_size


def _table_bytes(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        return {}
    finally:
        conn.close()
    return {str(name): int(size) for name, size in rows}


def measure(rate_hz: float, nights: int, hours: float = 8.0) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, object] = {"rate_hz": rate_hz, "nights": nights, "hours": hours}
        for label, raw_days in (("with_raw", nights), ("snippets_only", 0)):
            db = Path(tmp) / f"{label}.sqlite3"
            t = time.perf_counter()
            build_history(db, nights=nights, rate_hz=rate_hz, raw_days=raw_days, seed=3, duration_h=hours)
            out[f"{label}_build_s"] = round(time.perf_counter() - t, 1)
            out[f"{label}_bytes_per_night"] = _size(db) // nights
            out[f"{label}_tables"] = {k: v // nights for k, v in _table_bytes(db).items() if v > 8192}
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate-hz", type=float, nargs="+", default=[250.0, 1000.0])
    ap.add_argument("--nights", type=int, default=2)
    ap.add_argument("--hours", type=float, default=8.0, help="length of each simulated night (default 8)")
    ap.add_argument("--out", type=Path, default=RESULTS / "storage.json", help="JSON results file")
    args = ap.parse_args()
    if args.nights < 1:
        ap.error("--nights must be at least 1")
    if not args.hours > 0:
        ap.error("--hours must be more than 0")
    if any(not r > 0 for r in args.rate_hz):
        ap.error("--rate-hz must be more than 0")
    results = [measure(r, args.nights, args.hours) for r in args.rate_hz]
    print(f"({args.nights} simulated nights of {args.hours:g} h per rate)")
    print("| rate | per night, with whole raw signal | per night, snippets only | raw chunks | snippets |")
    print("|---|---|---|---|---|")
    for r in results:
        tables = r["with_raw_tables"]
        with_raw, snippets_only = r["with_raw_bytes_per_night"], r["snippets_only_bytes_per_night"]
        assert isinstance(tables, dict) and isinstance(with_raw, int) and isinstance(snippets_only, int)
        print(
            f"| {r['rate_hz']} Hz | {with_raw / 2**20:.1f} MiB | {snippets_only / 2**20:.2f} MiB "
            f"| {tables.get('raw_chunks', 0) / 2**20:.1f} MiB | {tables.get('snippets', 0) / 2**20:.2f} MiB |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
