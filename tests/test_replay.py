"""Tests of loading recordings (CSV, .npy), their error messages, and ReplaySource."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hardware.block import Block, SampleSource
from hardware.errors import BedsideError, RecordingError
from hardware.replay import MAX_RECORDING_BYTES, Recording, ReplaySource, load_recording

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIBRE = SHARED_DATA / "bed-fibre-optic-50hz" / "recording.csv"
IMU = SHARED_DATA / "imu-night" / "night-2017-11-29.csv"


def shared(path: Path) -> Path:
    """The shared recording at ``path``, or skip: a user's clone has no ../shared/data."""
    if not path.is_file():
        pytest.skip(f"shared recording {path} is absent (expected beside the repo in ../shared/data)")
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def epoch_csv(tmp_path: Path, n: int = 100, step_ms: int = 20) -> Path:
    t0 = 1_700_000_000_000
    rows = "".join(f"{t0 + k * step_ms},{2000 + k % 7},{60}\n" for k in range(n))
    return write(tmp_path, "rec.csv", "epoch,raw,pulse\n" + rows)


async def collect(source: ReplaySource) -> list[Block]:
    return [block async for block in source]


# ------------------------------------------------------------------ loading CSV


def test_csv_with_an_epoch_ms_column_gives_rate_and_utc_start(tmp_path: Path) -> None:
    rec = load_recording(epoch_csv(tmp_path))
    assert rec.column == "raw"
    assert rec.rate_hz == pytest.approx(50.0)
    assert rec.start == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert rec.samples.dtype == np.float32 and rec.samples.shape == (100,)
    assert rec.samples[:3].tolist() == [2000.0, 2001.0, 2002.0]
    assert rec.duration_s == pytest.approx(2.0)
    assert "rec.csv" in rec.source and "raw" in rec.source


def test_csv_time_in_seconds_from_zero_gives_rate_but_no_start(tmp_path: Path) -> None:
    rows = "".join(f"{k * 0.004:.3f},{k}\n" for k in range(50))
    rec = load_recording(write(tmp_path, "s.csv", "time_s,value\n" + rows), time_unit="s")
    assert rec.rate_hz == pytest.approx(250.0)
    assert rec.start is None


def test_named_column_and_time_column_and_explicit_rate(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", "Clock,A,B\n0,1,10\n100,2,20\n200,3,30\n")
    rec = load_recording(path, column="b", time_column="clock")  # names match case-insensitively
    assert rec.column == "B" and rec.samples.tolist() == [10, 20, 30]
    assert rec.rate_hz == pytest.approx(10.0)
    rec = load_recording(path, column=1, rate_hz=3.0)
    assert rec.column == "A" and rec.rate_hz == 3.0


def test_an_explicit_rate_wins_but_a_disagreeing_time_column_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="hardware.replay"):
        rec = load_recording(epoch_csv(tmp_path), rate_hz=250.0)
    assert rec.rate_hz == 250.0
    assert "time column 'epoch' says 50 Hz" in caplog.text


def test_default_column_skips_counters_and_text(tmp_path: Path) -> None:
    path = write(tmp_path, "y.csv", "id,label,signal\n1,a,5\n2,b,6\n")
    rec = load_recording(path, rate_hz=1.0)
    assert rec.column == "signal" and rec.samples.tolist() == [5, 6]


def test_semicolon_separated_quoted_values_load(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", '"t";"v"\n"0";"1.5"\n"10";"2.5"\n\n"20";"3.5"\n')
    rec = load_recording(path, time_column="t")
    assert rec.samples.tolist() == [1.5, 2.5, 3.5]
    assert rec.rate_hz == pytest.approx(100.0)


def test_a_real_night_loads_quickly_with_its_start_and_glitches() -> None:
    path = shared(FIBRE)
    begun = time.perf_counter()
    rec = load_recording(path)
    took = time.perf_counter() - begun
    assert took < 1.0  # about 0.03 s on a laptop
    assert rec.column == "raw_data_sleepMat"
    assert rec.n == 55_850
    assert rec.rate_hz == pytest.approx(50.0)
    assert rec.start == datetime(2016, 9, 14, 1, 42, 7, 8000, tzinfo=UTC)
    glitches = int(np.count_nonzero((rec.samples == 0) | (rec.samples > 60_000)))
    assert glitches == 5  # kept: a real device must survive them


def test_the_imu_night_loads_with_an_explicit_rate_and_column() -> None:
    path = shared(IMU)
    rec = load_recording(path, column="z Accel", rate_hz=1.6)
    assert rec.column == "z Accel" and rec.start is None
    assert rec.n > 30_000
    assert 14_000 < float(np.median(rec.samples)) < 19_000  # about 1 g at 16384 LSB/g


# ------------------------------------------------------------------ loading .npy


def test_npy_one_and_two_dimensional(tmp_path: Path) -> None:
    one = tmp_path / "one.npy"
    np.save(one, np.arange(10, dtype=np.int16))
    rec = load_recording(one, rate_hz=100)
    assert rec.samples.dtype == np.float32 and rec.samples.tolist() == list(range(10))
    two = tmp_path / "two.npy"
    np.save(two, np.arange(20.0).reshape(10, 2))
    rec = load_recording(two, column=1, rate_hz=100)
    assert rec.column == "1" and rec.samples[:3].tolist() == [1.0, 3.0, 5.0]


def test_npy_structured_array_by_field_name(tmp_path: Path) -> None:
    path = tmp_path / "s.npy"
    np.save(path, np.array([(1, 2.5), (2, 3.5)], dtype=[("i", "i4"), ("piezo", "f8")]))
    assert load_recording(path, column="piezo", rate_hz=10).samples.tolist() == [2.5, 3.5]


# ------------------------------------------------------------------ errors


def test_recording_error_is_a_bedside_error_and_a_value_error() -> None:
    assert issubclass(RecordingError, BedsideError) and issubclass(RecordingError, ValueError)


@pytest.mark.parametrize(
    ("name", "text", "kwargs", "words"),
    [
        ("e.csv", "", {}, "file is empty"),
        ("blank.csv", "\n \n\n", {}, "empty"),
        ("h.csv", "time,value\n", {}, "header row but no data"),
        ("h2.csv", "time,value\n\n\n", {}, "header row but no data"),
        ("nohdr.csv", "1,2\n3,4\n", {"rate_hz": 1.0}, "not a header"),
        (
            "c.csv",
            "time,value\n0,1\n",
            {"column": "piezo"},
            "unknown column 'piezo'; columns are 'time', 'value'",
        ),
        ("ci.csv", "a,b\n0,1\n", {"column": 5, "rate_hz": 1.0}, "no column 5"),
        ("tc.csv", "a,b\n0,1\n", {"time_column": "clock"}, "no time column 'clock'"),
        ("n.csv", "time,value\n0,1\n20,2\n40,abc\n60,4\n", {}, "non-numeric value 'abc' at line 4"),
        ("r.csv", "time,value\n0,1\n20\n40,3\n", {}, "line 3 has 1 field"),
        (
            "nan.csv",
            "time,value\n0,1\n20,nan\n40,inf\n60,2\n",
            {},
            "2 NaN/inf value(s), the first at data row 2",
        ),
        ("nr.csv", "a,b\n1,2\n3,4\n", {}, "no sample rate: pass rate_hz"),
        ("z.csv", "time,value\n0,1\n0,2\n0,3\n", {}, "cannot infer the sample rate"),
        (
            "mono.csv",
            "time,value\n0,1\n20,2\n10,3\n30,4\n",
            {},
            "not monotonic: it goes backwards at data row 3",
        ),
        ("tnan.csv", "time,value\n0,1\nnan,2\n", {}, "time column 'time': 1 NaN/inf"),
        ("x.edf", "whatever", {}, "unsupported file type '.edf'"),
        ("noext", "whatever", {}, "unsupported file type '(no extension)'"),
        ("abs.csv", "a,b\n0,1\n", {"rate_hz": 0.0}, "absurd sample rate"),
        ("abs2.csv", "a,b\n0,1\n", {"rate_hz": float("inf")}, "absurd sample rate"),
        ("abs3.csv", "a,b\n0,1\n", {"rate_hz": 1e9}, "absurd sample rate"),
        ("unit.csv", "time,value\n0,1\n1,2\n", {"time_unit": "us"}, "absurd sample rate"),
        ("badunit.csv", "time,value\n0,1\n", {"time_unit": "minutes"}, "unknown time_unit"),
    ],
)
def test_bad_csv_files_raise_recording_errors_that_name_the_problem(
    tmp_path: Path, name: str, text: str, kwargs: dict[str, object], words: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(RecordingError) as info:
        load_recording(path, **kwargs)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_missing_file_and_directory_are_recording_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="not found"):
        load_recording(tmp_path / "absent.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(RecordingError, match="not a regular file"):
        load_recording(tmp_path / "dir.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_a_recording_error(tmp_path: Path) -> None:
    path = epoch_csv(tmp_path)
    path.chmod(0)
    with pytest.raises(RecordingError, match="cannot read"):
        load_recording(path)


def test_binary_file_with_csv_name_is_a_recording_error(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage\x80\x81\n\x00\x9f")
    with pytest.raises(RecordingError, match="not a UTF-8 text file"):
        load_recording(path, rate_hz=1.0)


def test_files_over_the_size_limit_are_refused_without_reading_them(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as f:
        f.truncate(MAX_RECORDING_BYTES + 1)  # sparse: takes no disk space
    with pytest.raises(RecordingError, match="too large"):
        load_recording(path, rate_hz=1.0)


@pytest.mark.parametrize(
    ("array", "kwargs", "words"),
    [
        (np.arange(5.0), {}, "pass rate_hz"),
        (np.arange(10.0).reshape(5, 2), {"rate_hz": 1.0}, "pass column= an integer index from 0 to 1"),
        (np.arange(10.0).reshape(5, 2), {"rate_hz": 1.0, "column": 2}, "from 0 to 1 (got 2)"),
        (np.arange(8.0).reshape(2, 2, 2), {"rate_hz": 1.0}, "3 dimensions"),
        (np.zeros(0), {"rate_hz": 1.0}, "array is empty"),
        (
            np.array([1.0, np.nan, np.inf, 2.0]),
            {"rate_hz": 1.0},
            "2 NaN/inf value(s), the first at data row 2",
        ),
        (np.array(["a", "b"]), {"rate_hz": 1.0}, "not numeric"),
        (np.arange(5.0), {"rate_hz": 1.0, "column": 3}, "single column"),
    ],
)
def test_bad_npy_files_raise_recording_errors(
    tmp_path: Path, array: np.ndarray, kwargs: dict[str, object], words: str
) -> None:
    path = tmp_path / "a.npy"
    np.save(path, array)
    with pytest.raises(RecordingError) as info:
        load_recording(path, **kwargs)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_object_npy_and_corrupt_npy_are_refused(tmp_path: Path) -> None:
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RecordingError, match="not a plain numeric"):
        load_recording(obj, rate_hz=1.0)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy at all")
    with pytest.raises(RecordingError, match=r"\.npy"):
        load_recording(bad, rate_hz=1.0)


# ------------------------------------------------------------------ ReplaySource


def test_replay_at_speed_0_yields_the_whole_recording_contiguously(tmp_path: Path) -> None:
    rec = load_recording(epoch_csv(tmp_path, n=1003))
    source = ReplaySource(rec, block_s=0.2)
    assert isinstance(source, SampleSource)
    assert source.channels == 1 and source.rate_hz == pytest.approx(50.0)
    blocks = asyncio.run(collect(source))
    assert [b.n for b in blocks] == [10] * 100 + [3]
    index = 0
    for block in blocks:
        assert block.index == index
        assert rec.start is not None
        assert block.t0 == rec.start + timedelta(seconds=index / rec.rate_hz)
        index += block.n
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), rec.samples)


def test_replay_blocks_are_copies(tmp_path: Path) -> None:
    rec = load_recording(epoch_csv(tmp_path))
    blocks = asyncio.run(collect(ReplaySource(rec)))
    blocks[0].samples[:] = -1
    assert rec.samples[0] == 2000


def test_replay_start_defaults_to_the_recordings_own_else_now(tmp_path: Path) -> None:
    rec = load_recording(epoch_csv(tmp_path))
    assert ReplaySource(rec).start == rec.start
    given = datetime(2026, 3, 1, tzinfo=UTC)
    assert ReplaySource(rec, start=given).start == given
    timeless = Recording(np.zeros(3, np.float32), 10.0, None, "test", "0")
    before = datetime.now(UTC)
    assert before <= ReplaySource(timeless).start <= datetime.now(UTC)


def test_replay_in_real_time_is_paced_and_closes_promptly() -> None:
    rec = Recording(np.arange(1000, dtype=np.float32), 100.0, None, "ramp", "0")

    async def main() -> tuple[list[Block], float, float]:
        source = ReplaySource(rec, speed=1.0, block_s=0.1)
        blocks: list[Block] = []
        three = asyncio.Event()
        begun = time.monotonic()

        async def consume() -> None:
            async for block in source:
                blocks.append(block)
                if len(blocks) == 3:
                    three.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(three.wait(), timeout=5)
        after_three = time.monotonic() - begun
        closing = time.monotonic()
        await source.close()
        await asyncio.wait_for(task, timeout=1)
        return blocks, after_three, time.monotonic() - closing

    blocks, after_three, took = asyncio.run(main())
    assert len(blocks) == 3  # 10 s of samples, stopped after 0.3 s
    assert after_three >= 0.29
    assert took < 0.5


def test_shared_recording_replays_through_the_source() -> None:
    rec = load_recording(shared(FIBRE))
    blocks = asyncio.run(collect(ReplaySource(rec, speed=0, block_s=1.0)))
    assert sum(b.n for b in blocks) == rec.n
    assert blocks[-1].t_end == rec.start + timedelta(seconds=rec.duration_s)  # type: ignore[operator]
