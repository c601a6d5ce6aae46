"""Each bench script runs end to end with tiny settings and writes sensible JSON (no thresholds on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.reference_detector import reference_movements
from hardware.simulated import SimulatedNight
from service.detect.types import MOVEMENT_TYPES

REPO = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str, timeout_s: float = 240.0) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_reference_finds_most_movements_of_a_simulated_hour_and_few_false_ones() -> None:
    night = SimulatedNight(seed=2, rate_hz=250.0, duration_s=3600.0)
    found = reference_movements(night.render_all(), 250.0)
    truth = [e for e in night.truth if e.type in MOVEMENT_TYPES]
    assert truth, "the simulated hour should hold movements"
    hit = [t for t in truth if any(s < t.end_s and e > t.start_s for s, e, _ in found)]
    real = [f for f in found if any(f[0] < t.end_s and f[1] > t.start_s for t in night.truth)]
    assert len(hit) >= 0.8 * len(truth)
    assert len(real) >= 0.8 * len(found)
    assert all(peak > 1.0 for _, _, peak in found)


def test_reference_refuses_an_empty_signal_and_a_too_low_rate() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        reference_movements(np.zeros(0), 250.0)
    with pytest.raises(ValueError, match="at least 10 Hz"):
        reference_movements(np.zeros(100), 5.0)


def test_bench_detector_times_every_mode_and_scores_ours_and_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "detector.json"
    bench("bench_detector.py", "--hours", "0.2", "--rates", "250", "--repeat", "1", "--json", str(out))
    doc = json.loads(out.read_text())
    modes = {r["mode"] for r in doc["rows"]}
    assert {"single call", "analyze_array", "0.1-s blocks (live)", "reference (scipy/pandas)"} <= modes
    assert all(r["realtime_x"] > 0 and r["outputs"] > 0 for r in doc["rows"])
    (q,) = doc["quality"]
    assert q["ours"]["truth"] == q["reference"]["truth"] > 0
    assert {g["goal"].split(" ")[1] for g in doc["goals"]} == {"20,000x", "3x"}


def test_bench_fleet_delivers_every_event_of_a_few_units(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    bench("bench_fleet.py", "--units", "3", "--seconds", "3", "--nights", "1", "--out", str(out))
    doc = json.loads(out.read_text())
    assert doc["events_expected"] > 0
    assert doc["events_received_unique"] == doc["events_expected"]
    assert doc["all_delivered"] is True


def test_bench_live_measures_a_running_daemon(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    bench("bench_live.py", "--live-minutes", "0.1", "--rates", "250", "--out", str(out))
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["rate_hz"] == 250.0
    assert 0 < row["daemon_cpu_pct"] < 100
    assert row["daemon_rss_mb_max"] > 10  # a Python process with numpy and scipy loaded


def test_bench_latency_times_one_movement_through_a_real_broker(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    bench("bench_latency.py", "--movements", "1", "--awakenings", "0", "--out", str(out))
    mv = json.loads(out.read_text())["movement"]
    assert mv["moving_on_found"] == 1 and mv["event_found"] == 1
    assert 0 < mv["moving_on_ms"]["p50"] < 5000
    assert mv["event_after_end_ms"]["p50"] > mv["event_after_end_rule_met_ms"]["p50"]
    # the detector's end comes before its event, which waits the rule's 0.5 s of quiet after it
    assert mv["detected_end_after_end_ms"]["p50"] < mv["event_after_end_ms"]["p50"]
    assert mv["event_after_scored_end_ms"]["p50"] > 450 > mv["event_after_end_rule_met_ms"]["p50"]


def test_bench_dashboard_times_both_pages_both_ways_with_every_night_on_trends(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    bench("bench_dashboard.py", "--requests", "2", "--events", "300", "--nights", "5", "--real-nights", "2",
          "--out", str(out))  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["databases"]["night"]["events"] == 300
    assert doc["databases"]["trends"]["nights"] == doc["databases"]["trends"]["shown"] == 5
    rows = {(t["page"], t["via"]): t for t in doc["timings"]}
    pages = ("night", "zoom", "trends")
    assert set(rows) == {(page, via) for page in pages for via in ("http", "client")}
    assert rows[("trends", "http")]["url"] == "/trends?range=all"
    assert "from=" in rows[("zoom", "http")]["url"] and "to=" in rows[("zoom", "http")]["url"]
    for t in rows.values():
        assert t["requests"] == 2 and 0 < t["median_ms"] <= t["max_ms"] and t["bytes"] > 0
        assert t["verdict"] in ("ok", "SLOW", "BIG", "SLOW BIG")
        assert t["goal_ms"] == {"night": 50, "zoom": 50, "trends": 500}[t["page"]]
        assert t["goal_kib"] == {"night": 200, "zoom": 200, "trends": None}[t["page"]]
    for page in pages:  # the same page both ways
        assert rows[(page, "http")]["bytes"] == rows[(page, "client")]["bytes"]


def test_bench_storage_measures_growth_with_and_without_the_raw_signal(tmp_path: Path) -> None:
    out = tmp_path / "storage.json"
    bench("bench_storage.py", "--rate-hz", "250", "--nights", "1", "--hours", "0.1", "--out", str(out))
    (row,) = json.loads(out.read_text())
    assert (row["rate_hz"], row["nights"], row["hours"]) == (250.0, 1, 0.1)
    assert row["with_raw_bytes_per_night"] > row["snippets_only_bytes_per_night"] > 0
    assert row["with_raw_tables"]["raw_chunks"] > 0 and "raw_chunks" not in row["snippets_only_tables"]
    assert row["with_raw_tables"]["snippets"] > 0 and row["snippets_only_tables"]["snippets"] > 0


def test_bench_scripts_refuse_bad_options() -> None:
    for script, args in (
        ("bench_latency.py", ["--movements", "0"]),
        ("bench_live.py", ["--live-minutes", "0"]),
        ("bench_fleet.py", ["--units", "0"]),
        ("bench_detector.py", ["--hours", "0"]),
        ("bench_dashboard.py", ["--requests", "0"]),
        ("bench_storage.py", ["--nights", "0"]),
        ("bench_storage.py", ["--hours", "0"]),
    ):
        proc = subprocess.run(
            [sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, (script, proc.stderr)
        assert "must be" in proc.stderr
