"""`bedside probe`: live signal level, achieved rate and jitter, for checking the wiring."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.block import SampleSource
from service.signal_check import measure, problems

logger = logging.getLogger(__name__)


def _full_scale(source: SampleSource) -> float | None:
    bits = getattr(source, "bits", None)
    return float(2**bits - 1) if isinstance(bits, int) else None


async def probe(
    source: SampleSource,
    seconds: float,
    *,
    report: Callable[[dict[str, Any]], None],
    interval_s: float = 1.0,
) -> dict[str, Any]:
    """Read ``source`` for ``seconds`` of wall time; ``report`` each interval; return the final figures.

    The achieved rate is samples received over wall time. A source with ``stats()`` (the piezo
    and IMU sources) adds its own jitter and overrun figures.
    """
    rate = source.rate_hz
    full_scale = _full_scale(source)
    window: list[np.ndarray] = []
    total = 0
    started = last = time.monotonic()
    final: dict[str, Any] = {}
    try:
        async for block in source:
            window.append(np.asarray(block.samples, dtype=np.float64).reshape(block.n, -1)[:, 0])
            total += block.n
            now = time.monotonic()
            if now - last >= interval_s or now - started >= seconds:
                x = np.concatenate(window)
                level = measure(x, rate, full_scale)
                final = {
                    "elapsed_s": round(now - started, 2),
                    "rate_hz": rate,
                    "achieved_rate_hz": round(total / max(now - started, 1e-9), 2),
                    "level": level.as_dict(),
                    "problems": problems(level),
                }
                stats = getattr(source, "stats", None)
                if callable(stats):
                    st = stats()
                    final["sampling"] = st.as_dict() if hasattr(st, "as_dict") else st
                report(final)
                window, last = [], now
            if now - started >= seconds:
                break
    finally:
        await source.close()
    return final


def print_report(doc: dict[str, Any]) -> None:
    """One human line per interval."""
    lv = doc["level"]
    line = (
        f"{doc['elapsed_s']:6.1f} s  level {lv['median']:8.1f}"
        f"  range {lv['minimum']:.0f}..{lv['maximum']:.0f}  noise {lv['noise']:7.2f}"
        f"  peak {lv['peak']:7.1f}  rate {doc['achieved_rate_hz']:.1f}/{doc['rate_hz']:g} Hz"
    )
    sampling = doc.get("sampling")
    if isinstance(sampling, dict) and sampling.get("interval_error_p99_ms") is not None:
        line += (
            f"  jitter p99 {sampling['interval_error_p99_ms']:.2f} ms  overruns {sampling.get('overruns', 0)}"
        )
    print(line, flush=True)
    for p in doc["problems"]:
        print(f"        ! {p}", flush=True)


def run_probe(source: SampleSource, seconds: float, as_json: bool) -> int:
    """CLI body: 0 when the signal looks alive, 1 when it shows a problem."""
    report = (lambda d: print(json.dumps(d), flush=True)) if as_json else print_report
    final = asyncio.run(probe(source, seconds, report=report))
    return 1 if not final or final["problems"] else 0
