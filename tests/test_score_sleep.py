"""`bedside score-sleep` on actigraphy counts: AWD and CSV input, the JSON contract, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware.actigraphy import read_awd, read_counts_csv
from hardware.errors import RecordingError
from service.cli import EXIT_INPUT, EXIT_OK, main
from tests.conftest import shared_file
from tests.daemonutil import REPO


def _night_counts(epoch_s: float = 60.0) -> np.ndarray:
    """Evening activity, eight quiet hours with one 20-minute awakening at 3 h, morning activity."""
    per_h = int(3600 / epoch_s)
    rng = np.random.default_rng(1)
    day = rng.integers(150, 400, 2 * per_h)
    night = rng.integers(0, 3, 8 * per_h)
    wake = 3 * per_h
    night[wake : wake + int(1200 / epoch_s)] = rng.integers(150, 300, int(1200 / epoch_s))
    return np.concatenate([day, night, day]).astype(float)


def test_thirty_second_epochs_find_the_same_night(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = _night_counts(30.0)
    f = tmp_path / "counts.csv"
    f.write_text("count\n" + "\n".join(str(int(c)) for c in counts))
    assert main(["score-sleep", str(f), "--epoch-s", "30", "--column", "count", "--json"]) == EXIT_OK
    s = json.loads(capsys.readouterr().out)["summary"]
    assert abs(s["sleep_onset_s"] - 2 * 3600) <= 20 * 60 and abs(s["sleep_offset_s"] - 10 * 3600) <= 20 * 60
    assert s["awakenings"] == 1


def test_score_sleep_json_contract_on_csv(tmp_path: Path) -> None:
    counts = _night_counts(60.0)
    f = tmp_path / "counts.csv"
    f.write_text("count\n" + "\n".join(str(int(c)) for c in counts))
    proc = subprocess.run(
        [sys.executable, "-m", "service", "score-sleep", str(f),
         "--epoch-s", "60", "--column", "count", "--json"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["epochs"]) == counts.size and set(doc["epochs"][0]) == {"t_s", "asleep"}
    s = doc["summary"]
    assert abs(s["sleep_onset_s"] - 2 * 3600) <= 20 * 60, s
    assert abs(s["sleep_offset_s"] - 10 * 3600) <= 20 * 60, s
    assert s["awakenings"] == 1 and len(doc["awakenings"]) == 1
    aw = doc["awakenings"][0]
    assert abs(aw["start_s"] - 5 * 3600) <= 10 * 60 and aw["end_s"] > aw["start_s"]
    assert 10 <= s["waso_min"] <= 40


def test_awd_files_are_read_with_their_epoch_and_markers() -> None:
    data = read_awd(shared_file("actigraphy-awd/example_01.AWD"))
    assert data.epoch_s == 60.0 and data.counts.size == 18401
    assert data.start is not None and data.start.year == 1918
    assert data.markers.size > 0


def test_awd_nights_put_the_main_sleep_near_the_diary(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_file("actigraphy-awd/example_01.AWD")
    assert main(["score-sleep", str(path), "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    nights = [n for n in doc["nights"] if n["main_sleep"]]
    assert len(nights) >= 10
    # The diary's night of 1918-01-24 runs 23:00 to 07:00: offset within 30 min, onset within 2 h.
    start = read_awd(path).start
    assert start is not None
    from datetime import timedelta

    n = next(n for n in nights if n["night"] == "1918-01-24")
    onset = start + timedelta(seconds=n["main_sleep"]["sleep_onset_s"])
    offset = start + timedelta(seconds=n["main_sleep"]["sleep_offset_s"])
    assert abs((offset - offset.replace(hour=7, minute=0)).total_seconds()) <= 30 * 60
    assert abs((onset - onset.replace(hour=23, minute=0)).total_seconds()) <= 2 * 3600


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x\n", "too short"),
        ("a\n99-Foo-1918\n13:58\n 4 \n0\nV\nX\n1\n", "date and time"),
        ("a\n23-Jan-1918\n13:58\n 7 \n0\nV\nX\n1\n", "unknown epoch code"),
        ("a\n23-Jan-1918\n13:58\n 4 \n0\nV\nX\n1\nabc\n", "line 9"),
    ],
)
def test_bad_awd_files_are_clear_errors(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "bad.AWD"
    f.write_text(text)
    with pytest.raises(RecordingError, match=words):
        read_awd(f)
    assert main(["score-sleep", str(f)]) == EXIT_INPUT


def test_csv_errors_name_the_column_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("count\n1\n-3\n")
    with pytest.raises(RecordingError, match="line 3"):
        read_counts_csv(f, "count", 60.0)
    with pytest.raises(RecordingError, match="columns are count"):
        read_counts_csv(f, "activity", 60.0)
