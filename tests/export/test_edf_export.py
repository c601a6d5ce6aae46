"""EDF+ export: written from a real database, read back with pyedflib and with MNE: signal, rate, start,
annotations."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pytest

from service.export import NightNotFoundError, RawSignalMissingError
from service.export.edf import EVENT_TEXT, GAP_TEXT, SIGNAL_LABEL, write_edf
from service.history.load import connect
from service.history.user_data import relabel
from service.store.migrations import MIGRATIONS
from service.store.signal_codec import decode, encode
from service.timefmt import iso_utc, parse_iso_utc
from tests.export import build_db


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("edf") / "bedside.sqlite3"
    return path, build_db(path, nights=3, raw_days=2)


@pytest.fixture
def edf_reader() -> Iterator[list[pyedflib.EdfReader]]:
    opened: list[pyedflib.EdfReader] = []
    yield opened
    for r in opened:
        r.close()


def _read(path: Path, opened: list[pyedflib.EdfReader]) -> pyedflib.EdfReader:
    r = pyedflib.EdfReader(str(path))
    opened.append(r)
    return r


def _start(reader: pyedflib.EdfReader) -> datetime:
    """The file's start to the 100 ns: header seconds + the EDF+ sub-second (edflib's 100-ns units)."""
    h = reader.getHeader()["startdate"].replace(microsecond=0, tzinfo=UTC)
    return h + timedelta(microseconds=reader.starttime_subsecond / 10)


def _stored_signal(db: Path, night_id: str) -> tuple[float, list[tuple[int, np.ndarray]]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT start_index, rate_hz, encoding, data FROM raw_chunks WHERE night_id = ? "
            "ORDER BY start_index",
            (night_id,),
        ).fetchall()
    finally:
        conn.close()
    return float(rows[0][1]), [(int(r[0]), decode(r[2], r[3])) for r in rows]


def test_round_trip_keeps_signal_rate_start_and_every_event(
    db: tuple[Path, list[str]], tmp_path: Path, edf_reader: list[pyedflib.EdfReader]
) -> None:
    path, ids = db
    night_id = ids[-1]
    rw = connect(path, readonly=False)
    event_id, event_type = rw.execute(
        "SELECT id, event_type FROM events WHERE night_id = ? AND event_type = 'limb_movement' LIMIT 1",
        (night_id,),
    ).fetchone()
    relabel(rw, event_id, "not_an_event", source="test")
    started = parse_iso_utc(
        rw.execute("SELECT started_at FROM nights WHERE id = ?", (night_id,)).fetchone()[0]
    )
    mark_at = started + timedelta(minutes=12, seconds=3.25)
    with rw:
        rw.execute(
            "INSERT INTO annotations (id, night_id, at, kind, source, note) VALUES (?,?,?,?,?,?)",
            (uuid.uuid4().hex, night_id, iso_utc(mark_at), "spasm", "button", "left leg"),
        )
        # One chunk in the middle is lost: the file must fill and mark it.
        lost = rw.execute(
            "SELECT start_index, n FROM raw_chunks WHERE night_id = ? ORDER BY start_index LIMIT 1 OFFSET 10",
            (night_id,),
        ).fetchone()
        rw.execute("DELETE FROM raw_chunks WHERE night_id = ? AND start_index = ?", (night_id, lost[0]))
    events = rw.execute(
        "SELECT event_type, start_at, duration_s, intensity FROM events WHERE night_id = ?", (night_id,)
    ).fetchall()
    rw.close()
    rate, chunks = _stored_signal(path, night_id)

    conn = connect(path)
    result = write_edf(conn, night_id, tmp_path / "night.edf")
    conn.close()
    r = _read(tmp_path / "night.edf", edf_reader)

    assert r.getSampleFrequency(0) == rate
    assert r.getLabel(0) == SIGNAL_LABEL
    assert r.getPhysicalDimension(0) == "counts"
    assert r.getPatientCode() == "" and r.getPatientName() in ("", "X")
    assert abs((_start(r) - started).total_seconds()) < 1e-4
    signal = r.readSignal(0)
    step = (r.getPhysicalMaximum(0) - r.getPhysicalMinimum(0)) / (
        r.getDigitalMaximum(0) - r.getDigitalMinimum(0)
    )
    assert step == pytest.approx(1.0)  # ADC counts: one digital step is one count
    for start_index, block in chunks:
        got = signal[start_index : start_index + block.size]
        assert np.max(np.abs(got - block)) <= step / 2 + 1e-9
    gap = signal[lost[0] : lost[0] + lost[1]]
    assert np.ptp(gap) == 0  # filled with one level
    assert result.gap_s == pytest.approx(lost[1] / rate)

    onsets, durations, texts = r.readAnnotations()
    found = list(zip(onsets.tolist(), durations.tolist(), texts.tolist(), strict=True))

    def near(text: str, onset: float, duration: float | None = None) -> bool:
        return any(
            t == text and abs(o - onset) <= 1 / rate and (duration is None or abs(d - duration) <= 1 / rate)
            for o, d, t in found
        )

    for etype, start_at, duration, intensity in events:
        onset = (parse_iso_utc(start_at) - started).total_seconds()
        text = EVENT_TEXT.format(event_type=etype, intensity=intensity)
        assert near(text, onset, duration), f"missing {text} at {onset:.2f} s"
    ev_onset = next((parse_iso_utc(s) - started).total_seconds() for t, s, *_ in events if t == event_type)
    assert any(t == f"relabel {event_type}->not_an_event" for _, _, t in found)
    assert near("mark spasm: left leg", (mark_at - started).total_seconds(), 0.0)
    assert near(GAP_TEXT, lost[0] / rate, lost[1] / rate)
    assert ev_onset >= 0
    assert len(found) == result.annotations


def _read_mne(path: Path) -> Any:
    """The file as MNE opens it (imported here: mne is slow to import, and in the test extra)."""
    import mne

    return mne.io.read_raw_edf(path, preload=True, verbose="error")


def test_mne_reads_the_same_rate_samples_and_annotations(
    db: tuple[Path, list[str]], tmp_path: Path, edf_reader: list[pyedflib.EdfReader]
) -> None:
    """A second, independent EDF+ reader (the one sleep researchers script with) agrees with the
    database: MNE's own parser, not edflib's."""
    path, ids = db
    night_id = ids[-1]
    conn = connect(path)
    started = parse_iso_utc(
        conn.execute("SELECT started_at FROM nights WHERE id = ?", (night_id,)).fetchone()[0]
    )
    events = conn.execute(
        "SELECT event_type, start_at, duration_s, intensity FROM events WHERE night_id = ?", (night_id,)
    ).fetchall()
    result = write_edf(conn, night_id, tmp_path / "night.edf")
    conn.close()
    rate, chunks = _stored_signal(path, night_id)
    assert events and chunks

    raw = _read_mne(tmp_path / "night.edf")
    assert raw.info["sfreq"] == rate
    assert raw.ch_names == [SIGNAL_LABEL]
    # MNE keeps whole seconds of the start in meas_date (the EDF+ sub-second is in the onsets)
    assert raw.info["meas_date"] == started.replace(microsecond=0)
    # MNE scales known voltage units to volts (a "uV" channel would come back times 1e-6); the
    # dimension "counts" is not one of them, so get_data() must be the stored counts as they are.
    signal = raw.get_data()[0]
    assert signal.size == result.samples
    step = 1.0  # one digital step is one ADC count (see the pyedflib round trip above)
    for start_index, block in chunks:
        got = signal[start_index : start_index + block.size]
        assert np.max(np.abs(got - block)) <= step / 2 + 1e-9, start_index

    ann = raw.annotations
    found = list(
        zip(ann.onset.tolist(), ann.duration.tolist(), [str(t) for t in ann.description], strict=True)
    )
    assert len(found) == result.annotations
    for etype, start_at, duration, intensity in events:
        onset = (parse_iso_utc(start_at) - started).total_seconds()
        text = EVENT_TEXT.format(event_type=etype, intensity=intensity)
        assert any(
            t == text and abs(o - onset) <= 1 / rate and abs(d - duration) <= 1 / rate for o, d, t in found
        ), f"MNE lacks {text} at {onset:.2f} s"
    # and both readers see the very same annotations (MNE sorts by onset with an unstable sort, so
    # two annotations at the same onset, such as a glitch and a movement starting on one sample,
    # may come in either order: compare in one order, onset then text)
    onsets, durations, texts = _read(tmp_path / "night.edf", edf_reader).readAnnotations()
    theirs = sorted(
        zip(onsets.tolist(), durations.tolist(), texts.tolist(), strict=True), key=lambda a: (a[0], a[2])
    )
    ours = sorted(found, key=lambda a: (a[0], a[2]))
    assert [t for _, _, t in ours] == [t for _, _, t in theirs]
    assert np.allclose([o for o, _, _ in ours], [o for o, _, _ in theirs], atol=1e-6)
    assert np.allclose([d for _, d, _ in ours], [d for _, d, _ in theirs], atol=1e-6)


def _hand_night(
    path: Path, *, source: str, rate_hz: float, chunks: list[tuple[int, np.ndarray]], lead_s: float
) -> str:
    """A schema-v3 database with one night whose raw chunks begin ``lead_s`` after its start."""
    conn = sqlite3.connect(path)
    for script in MIGRATIONS:
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    started = datetime(2026, 11, 21, 22, 30, 5, 250000, tzinfo=UTC)
    night_id = "n1"
    conn.execute(
        "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source, night_date, rate_hz) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (night_id, "u", iso_utc(started), iso_utc(started + timedelta(hours=1)), "aasm", source, "2026-11-21",
         rate_hz),
    )  # fmt: skip
    stream0 = started + timedelta(seconds=lead_s)
    for start_index, block in chunks:
        encoding, blob = encode(block)
        at = stream0 + timedelta(seconds=start_index / rate_hz)
        conn.execute(
            "INSERT INTO raw_chunks VALUES (?,?,?,?,?,?,?)",
            (night_id, start_index, iso_utc(at), rate_hz, block.size, encoding, blob),
        )
    conn.execute(
        "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, profile) "
        "VALUES ('e1', ?, 'spasm', ?, ?, 2.5, 31.25, 'aasm')",
        (night_id, iso_utc(started + timedelta(seconds=20.5)), iso_utc(started + timedelta(seconds=23))),
    )
    conn.commit()
    conn.close()
    return night_id


def test_accelerometer_night_at_an_odd_rate_keeps_g_within_one_step(
    tmp_path: Path, edf_reader: list[pyedflib.EdfReader]
) -> None:
    rate = 25.6
    rng = np.random.default_rng(1)
    blocks = [(0, 1.0 + 0.01 * rng.standard_normal(1536)), (1536, 1.0 + 0.01 * rng.standard_normal(1000))]
    db = tmp_path / "imu.sqlite3"
    night_id = _hand_night(db, source="imu(bus 1 0x68, magnitude, rate_hz=25.6)", rate_hz=rate, chunks=blocks,
                           lead_s=2.5)  # fmt: skip
    conn = connect(db)
    write_edf(conn, night_id, tmp_path / "imu.edf")
    conn.close()
    r = _read(tmp_path / "imu.edf", edf_reader)
    assert r.getSampleFrequency(0) == pytest.approx(rate)
    assert r.getPhysicalDimension(0) == "g"
    signal = r.readSignal(0)
    step = (r.getPhysicalMaximum(0) - r.getPhysicalMinimum(0)) / 65535
    lead = round(2.5 * rate)  # the chunks start 2.5 s after the night: a filled gap first
    for start_index, block in blocks:
        stored = decode(*encode(block))
        got = signal[lead + start_index : lead + start_index + block.size]
        assert np.max(np.abs(got - stored)) <= step / 2 + 1e-9
    onsets, durations, texts = r.readAnnotations()
    annotations = list(zip(onsets.tolist(), durations.tolist(), texts.tolist(), strict=True))
    assert any(t == GAP_TEXT and abs(o) < 1e-6 and abs(d - lead / rate) < 1 / rate for o, d, t in annotations)
    assert any(t == "spasm intensity=31.2" and abs(o - 20.5) <= 1 / rate for o, _, t in annotations)
    assert abs((_start(r) - datetime(2026, 11, 21, 22, 30, 5, 250000, tzinfo=UTC)).total_seconds()) < 1e-4
    raw = _read_mne(tmp_path / "imu.edf")  # "g" is not scaled by MNE either
    assert raw.info["sfreq"] == pytest.approx(rate)
    for start_index, block in blocks:
        got = raw.get_data()[0, lead + start_index : lead + start_index + block.size]
        assert np.max(np.abs(got - decode(*encode(block)))) <= step / 2 + 1e-9
    assert any(
        t == "spasm intensity=31.2" and abs(o - 20.5) <= 1 / rate
        for o, t in zip(raw.annotations.onset, raw.annotations.description, strict=True)
    )


def test_pruned_night_fails_naming_the_retention_setting(db: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = db
    conn = connect(path)
    with pytest.raises(RawSignalMissingError, match=r"storage\.raw_retention_days"):
        write_edf(conn, ids[0], tmp_path / "old.edf")  # the oldest night kept snippets only
    with pytest.raises(NightNotFoundError, match="no-such-night"):
        write_edf(conn, "no-such-night", tmp_path / "x.edf")
    conn.close()
    assert not (tmp_path / "x.edf").exists() and not (tmp_path / "old.edf").exists()
