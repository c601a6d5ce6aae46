"""The history readers on a real SQLite file: one night, the list of nights, tags, check-ins."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.errors import StoreError
from service.history.load import (
    DatabaseMissingError,
    checkins_by_date,
    connect,
    list_nights,
    load_night,
    tags_by_date,
)
from service.history.user_data import add_tag, relabel, set_checkin
from tests.history import HistoryDb, at


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("n1", "2026-11-20T22:00:00.000Z", "2026-11-21T06:00:00.000Z", night_date="2026-11-20",
             summary={"movements": 4})  # fmt: skip
    db.night("n2", "2026-11-21T22:30:00.000Z", "2026-11-22T06:30:00.000Z", night_date="2026-11-21")
    db.night("nap", "2026-11-22T13:00:00.000Z", "2026-11-22T14:00:00.000Z", kind="nap")
    db.night("n3", "2026-11-22T23:00:00.000Z", None, night_date="2026-11-22")
    # inserted out of order: load_night sorts by start
    db.event("b", "n2", "spasm", "2026-11-21T23:30:00.000Z", 3.0, 20.0, details={"rhythmic": 1.0})
    db.event("a", "n2", "jerk", "2026-11-21T23:00:00.000Z", 0.2, 9.0)
    db.event("other", "n1", "jerk", "2026-11-20T23:00:00.000Z", 0.2, 9.0)
    db.epochs("n2", "2026-11-21T22:30:00.000Z", [(False, True), (True, True), (True, False)])
    db.vitals("n2", [("2026-11-21T23:10:00.000Z", 61.0, None)])
    db.conn.execute(
        "INSERT INTO annotations (id, night_id, at, kind, source, note) "
        "VALUES ('m1', 'n2', ?, 'mark', 'button', '')",
        ("2026-11-21T23:40:00.000Z",),
    )
    db.conn.commit()
    db.close()
    return tmp_path / "b.sqlite3"


def test_load_night_returns_rows_in_order_with_labels_and_parsed_fields(db_path: Path) -> None:
    conn = connect(db_path, readonly=False)
    relabel(conn, "b", "large_movement", source="test")
    data = load_night(conn, "n2")
    assert data is not None
    assert data.night["id"] == "n2" and data.night["summary"] is None
    assert data.night["night_date"] == "2026-11-21"
    assert [e["id"] for e in data.events] == ["a", "b"]
    assert data.events[0]["label"] is None
    assert data.events[1]["label"] == "large_movement"
    assert data.events[1]["event_type"] == "spasm"  # the detector's label is kept
    assert data.events[1]["details"] == {"rhythmic": 1.0}
    assert [(e["asleep"], e["in_bed"]) for e in data.epochs] == [(False, True), (True, True), (True, False)]
    assert all(type(e["asleep"]) is bool for e in data.epochs)
    assert data.vitals[0]["heart_bpm"] == 61.0 and data.vitals[0]["breath_bpm"] is None
    assert [a["id"] for a in data.annotations] == ["m1"]


def test_load_night_of_an_unknown_id_is_none(db_path: Path) -> None:
    assert load_night(connect(db_path), "nope") is None


def test_list_nights_is_newest_first_and_filters(db_path: Path) -> None:
    conn = connect(db_path)
    assert [n["id"] for n in list_nights(conn)] == ["n3", "n2", "n1"]
    assert [n["id"] for n in list_nights(conn, kind=None)] == ["n3", "nap", "n2", "n1"]
    assert [n["id"] for n in list_nights(conn, kind="nap")] == ["nap"]
    assert [n["id"] for n in list_nights(conn, limit=2)] == ["n3", "n2"]
    assert [n["id"] for n in list_nights(conn, since_date="2026-11-21")] == ["n3", "n2"]
    n1 = list_nights(conn)[-1]
    assert n1["summary"] == {"movements": 4}
    with pytest.raises(ValueError, match="limit"):
        list_nights(conn, limit=-1)


def test_tags_and_checkins_are_grouped_by_night_date(db_path: Path) -> None:
    conn = connect(db_path, readonly=False)
    heat = add_tag(conn, "2026-11-21", "heat", at_local="21:30", source="test")
    med = add_tag(conn, "2026-11-21", "medication", detail="baclofen", source="test")
    add_tag(conn, "2026-11-20", "caffeine", source="test")
    set_checkin(conn, "2026-11-21", sleep_quality=4, spasm_severity=2, note="ok")
    ro = connect(db_path)
    tags = tags_by_date(ro)
    assert list(tags) == ["2026-11-20", "2026-11-21"]
    assert tags["2026-11-21"] == [
        {"id": heat, "tag": "heat", "detail": "", "at_local": "21:30"},
        {"id": med, "tag": "medication", "detail": "baclofen", "at_local": None},
    ]
    checkins = checkins_by_date(ro)
    assert list(checkins) == ["2026-11-21"]
    assert checkins["2026-11-21"]["sleep_quality"] == 4
    assert checkins["2026-11-21"]["spasm_severity"] == 2
    assert checkins["2026-11-21"]["note"] == "ok"


def test_missing_database_file_is_a_clear_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite3"
    for readonly in (True, False):
        with pytest.raises(DatabaseMissingError, match=r"none\.sqlite3 does not exist"):
            connect(path, readonly=readonly)
    assert not path.exists()
    assert issubclass(DatabaseMissingError, StoreError) and issubclass(
        DatabaseMissingError, FileNotFoundError
    )


def test_readonly_connection_refuses_writes(db_path: Path) -> None:
    conn = connect(db_path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM nights")
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_a_summary_that_is_not_json_reads_as_none(db_path: Path) -> None:
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE nights SET summary = '{broken' WHERE id = 'n1'")
    raw.commit()
    raw.close()
    assert list_nights(connect(db_path))[-1]["summary"] is None


def test_paths_with_spaces_and_question_marks_open(tmp_path: Path) -> None:
    folder = tmp_path / "my data?#"
    folder.mkdir()
    HistoryDb(folder / "b b.sqlite3").close()
    assert list_nights(connect(folder / "b b.sqlite3")) == []
    assert at("2026-11-21T23:00:00.000Z", 1.5) == "2026-11-21T23:00:01.500Z"
