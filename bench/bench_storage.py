"""Database growth per night: what one 8-hour night adds, with and without its whole raw signal.

Nights are simulated and detected as ``service.demo_history`` stores them (the same rows, the same
q16dz codec the daemon uses). Prints a table and writes bench/results/storage.json.

    .venv/bin/python bench/bench_storage.py [--rate-hz 250] [--nights 2]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from service.demo_history import build_history

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


def measure(rate_hz: float, nights: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, object] = {"rate_hz": rate_hz, "nights": nights}
        for label, raw_days in (("with_raw", nights), ("snippets_only", 0)):
            db = Path(tmp) / f"{label}.sqlite3"
            t = time.perf_counter()
            build_history(db, nights=nights, rate_hz=rate_hz, raw_days=raw_days, seed=3)
            out[f"{label}_build_s"] = round(time.perf_counter() - t, 1)
            out[f"{label}_bytes_per_night"] = _size(db) // nights
            out[f"{label}_tables"] = {k: v // nights for k, v in _table_bytes(db).items() if v > 8192}
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate-hz", type=float, nargs="+", default=[250.0, 1000.0])
    ap.add_argument("--nights", type=int, default=2)
    args = ap.parse_args()
    results = [measure(r, args.nights) for r in args.rate_hz]
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
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "storage.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
