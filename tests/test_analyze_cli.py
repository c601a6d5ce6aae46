"""``bedside analyze``: the JSON contract on real and generated recordings, clear errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hardware.simulated import SimulatedNight
from service.cli import EXIT_INPUT, EXIT_OK, main
from service.timefmt import parse_iso_utc
from tests.conftest import shared_file
from tests.daemonutil import REPO, start_daemon, stored_events

FIBRE = "bed-fibre-optic-50hz/recording.csv"
FIBRE_ARGS = ["--column", "raw_data_sleepMat", "--time-column", "epoch", "--time-unit", "ms"]


def _analyze(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "analyze", *args], capture_output=True, text=True, cwd=REPO
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def fibre_doc() -> dict[str, Any]:
    path = shared_file(FIBRE)
    code, out, err = _analyze(str(path), *FIBRE_ARGS, "--json")
    assert code == EXIT_OK, err
    return dict(json.loads(out))


def test_analyze_json_has_the_documented_shape(fibre_doc: dict[str, Any]) -> None:
    assert set(fibre_doc) >= {"recording", "events", "vitals", "epochs", "summary"}
    rec = fibre_doc["recording"]
    assert rec["rate_hz"] == pytest.approx(50.0) and rec["samples"] == 55850
    assert rec["duration_s"] == pytest.approx(1117.0, abs=0.1)
    for e in fibre_doc["events"]:
        assert {"id", "type", "start_s", "end_s", "duration_s", "intensity", "profile"} <= set(e)
    for v in fibre_doc["vitals"]:
        assert set(v) == {"t_s", "heart_bpm", "breath_bpm"}
    for ep in fibre_doc["epochs"]:
        assert {"t_s", "count", "asleep"} <= set(ep)


def _movements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = {"jerk", "limb_movement", "spasm", "large_movement"}
    return [e for e in doc["events"] if e["type"] in kinds]


def test_real_movements_at_start_and_near_1090_s_are_found(fibre_doc: dict[str, Any]) -> None:
    moves = _movements(fibre_doc)
    assert any(e["start_s"] < 15 for e in moves), "movement in the first 15 s"
    assert any(1080 <= e["start_s"] <= 1100 or 1080 <= e["end_s"] <= 1100 for e in moves), (
        "movement ~1086-1100 s"
    )


def test_quiet_minutes_between_give_at_most_one_movement(fibre_doc: dict[str, Any]) -> None:
    quiet = [e for e in _movements(fibre_doc) if e["start_s"] >= 30 and e["end_s"] <= 1075]
    assert len(quiet) <= 1, quiet


def test_glitch_samples_near_the_end_are_a_sensor_fault_not_movement(fibre_doc: dict[str, Any]) -> None:
    faults = [e for e in fibre_doc["events"] if e["type"] == "sensor_fault"]
    assert any(e["start_s"] > 1100 for e in faults)
    assert not [e for e in _movements(fibre_doc) if e["start_s"] > 1101]


def test_npy_recording_needs_and_takes_a_rate(tmp_path: Path) -> None:
    night = SimulatedNight(seed=5, rate_hz=100.0, duration_s=900.0)
    path = tmp_path / "night.npy"
    np.save(path, night.render_all())
    code, out, err = _analyze(str(path), "--rate-hz", "100", "--json")
    assert code == EXIT_OK, err
    doc = json.loads(out)
    assert doc["recording"]["samples"] == 90000
    assert doc["events"], "a simulated quarter hour with movements gives events"
    code, _, err = _analyze(str(path))
    assert code == EXIT_INPUT and "rate" in err.lower() and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "args", "words"),
    [
        (None, [], "not found"),
        ("", [], "empty"),
        ("t,x\n", ["--time-column", "t"], "no data"),
        ("t,x\n0,1\n20,abc\n40,3\n", ["--time-column", "t"], "numeric"),
        ("t,x\n0,1\n20,2\n", ["--column", "y", "--time-column", "t"], "column"),
    ],
)
def test_bad_recordings_give_a_clear_error_and_exit_4(
    tmp_path: Path, content: str | None, args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rec.csv"
    if content is not None:
        path.write_text(content)
    assert main(["analyze", str(path), *args]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert words in err.lower(), err


def test_version_is_printed() -> None:
    proc = subprocess.run([sys.executable, "-m", "service", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("bedside ")


@pytest.mark.slow
def test_live_daemon_and_analyze_find_the_same_events_on_the_same_recording(
    fibre_doc: dict[str, Any], tmp_path: Path
) -> None:
    path = shared_file(FIBRE)
    cfg = tmp_path / "replay.toml"
    cfg.write_text(
        "[sensor]\nkind = 'replay'\nspeed = 0.0\nblock_s = 0.1\n"
        f"replay_path = '{path}'\nreplay_column = 'raw_data_sleepMat'\n"
        "replay_time_column = 'epoch'\nreplay_time_unit = 'ms'\n"
        "[mqtt]\nenabled = false\n[web]\nenabled = false\n"
    )
    db = tmp_path / "replay.sqlite3"
    proc = start_daemon(["--config", str(cfg), "--db", str(db)], tmp_path / "d.log")
    assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()
    live = stored_events(db)
    nights = {e["night_id"] for e in live}
    assert len(nights) == 1
    recording_start = 1473817327.008  # first epoch-ms of the file
    live_view = [
        (e["event_type"], round(parse_iso_utc(e["start_at"]).timestamp() - recording_start, 1)) for e in live
    ]
    offline_view = [(e["type"], round(e["start_s"], 1)) for e in fibre_doc["events"]]
    assert sorted(live_view) == sorted(offline_view)


def test_json_into_a_pipe_that_closes_early_ends_quietly(tmp_path: Path) -> None:
    """``bedside analyze ... --json | head`` used to end in a BrokenPipeError traceback."""
    night = SimulatedNight(seed=5, rate_hz=50.0, duration_s=3600.0)
    path = tmp_path / "night.npy"
    np.save(path, night.render_all())  # its JSON (about 80 KB) is more than a pipe holds
    analyze = subprocess.Popen(
        [sys.executable, "-m", "service", "analyze", str(path), "--rate-hz", "50", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert analyze.stdout is not None and analyze.stderr is not None
    assert analyze.stdout.read(10)
    analyze.stdout.close()  # as `head -c 10` does
    err = analyze.stderr.read().decode()
    analyze.stderr.close()
    assert analyze.wait(60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_column_that_is_no_raw_signal_is_analysed_with_a_warning_a_sensor_column_without(
    tmp_path: Path,
) -> None:
    """The recording's oximeter column (a heart rate updated every 2 s) gave an intensity in the
    hundreds of millions with no word that it is not a bed signal."""
    path = shared_file(FIBRE)
    code, out, err = _analyze(str(path), *FIBRE_ARGS[2:], "--column", "PulseOximeter_results", "--json")
    assert code == EXIT_OK and json.loads(out)["recording"]["samples"] == 55850
    assert "warning" in err and "repeat the one before" in err
    code, _, err = _analyze(str(path), *FIBRE_ARGS, "--json")
    assert code == EXIT_OK and "warning" not in err
