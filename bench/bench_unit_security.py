"""Print the ``systemd-analyze security --offline=yes`` exposure of both units; write the JSON.

Exposure runs from 0.0 (locked down) to 10.0 (fully exposed). Offline mode scores the unit file
as written, so this runs on any machine with systemd-analyze (no install, no root). Results go
to bench/results/unit_security.json, with every item still counted against each unit.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
UNITS = [REPO / "systemd" / "bedside.service", REPO / "systemd" / "bedside-web.service"]
RESULTS = REPO / "bench" / "results" / "unit_security.json"

_EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?) (\S+)")
# A counted item: "✗ Name=   description   0.2" (the weight is the last field).
_ITEM = re.compile(r"^✗ (\S+)\s+(.*?)\s+([0-9]+\.[0-9]+)\s*$")


def analyze(analyzer: str, unit: Path) -> dict[str, Any]:
    """The overall exposure, its rating and the items counted against ``unit``."""
    proc = subprocess.run(
        [analyzer, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"LANG": "C.UTF-8"},
    )
    out = proc.stdout + proc.stderr
    match = _EXPOSURE.search(out)
    if match is None:
        raise RuntimeError(f"no exposure line for {unit.name}:\n{out}")
    items = [
        {"setting": m.group(1), "why": m.group(2), "weight": float(m.group(3))}
        for line in out.splitlines()
        if (m := _ITEM.match(line.strip()))
    ]
    return {"exposure": float(match.group(1)), "rating": match.group(2), "exposed": items}


def main(argv: list[str] | None = None) -> int:
    """Print one line per unit (and its exposed items with --verbose); write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every item counted against a unit")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output file")
    args = parser.parse_args(argv)
    analyzer = shutil.which("systemd-analyze")
    if analyzer is None:
        print("systemd-analyze not found: nothing to measure", file=sys.stderr)
        return 1
    version = subprocess.run(
        [analyzer, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.splitlines()[0]
    units = {unit.name: analyze(analyzer, unit) for unit in UNITS}
    print(f"{'unit':<22} {'exposure':>8}  rating   ({version}, --offline=yes)")
    for name, result in units.items():
        print(f"{name:<22} {result['exposure']:>8.1f}  {result['rating']}")
        if args.verbose:
            for item in result["exposed"]:
                print(f"    {item['weight']:.1f}  {item['setting']:<45} {item['why']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "systemd": version,
        "command": "systemd-analyze security --offline=yes <unit file>",
        "units": units,
    }
    args.out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
