"""Writes of tags, check-ins and relabels: validation errors name the field; upserts and duplicates."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.history.load import checkins_by_date, connect, load_night, tags_by_date
from service.history.user_data import (
    TAGS,
    UserDataError,
    add_tag,
    dismiss_notice,
    relabel,
    remove_tag,
    set_checkin,
)
from tests.history import HistoryDb


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("n1", "2026-11-21T22:00:00.000Z", None, night_date="2026-11-21")
    db.event("e1", "n1", "jerk", "2026-11-21T23:00:00.000Z", 0.3, 9.0)
    db.close()
    c = connect(tmp_path / "b.sqlite3", readonly=False)
    yield c
    c.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"night_date": "21/11/2026"}, "night_date"),
        ({"night_date": "2026-02-30"}, "night_date"),
        ({"tag": "yoga"}, "tag"),
        ({"tag": "medication"}, "detail"),
        ({"tag": "custom", "detail": "   "}, "detail"),
        ({"tag": "custom", "detail": "x" * 61}, "detail"),
        ({"at_local": "25:00"}, "at_local"),
        ({"at_local": "9:30"}, "at_local"),
        ({"source": ""}, "source"),
    ],
)
def test_bad_tag_input_names_the_field(conn: sqlite3.Connection, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"night_date": "2026-11-21", "tag": "heat", "source": "test", **kwargs}
    with pytest.raises(UserDataError, match=field):
        add_tag(conn, args.pop("night_date"), args.pop("tag"), **args)
    assert tags_by_date(conn) == {}


def test_user_data_error_is_a_value_error() -> None:
    assert issubclass(UserDataError, ValueError)


def test_every_tag_can_be_added_and_a_duplicate_returns_the_same_id(conn: sqlite3.Connection) -> None:
    ids = [add_tag(conn, "2026-11-21", t, detail="x" if t in ("medication", "custom") else "", source="t")
           for t in TAGS]  # fmt: skip
    assert len(set(ids)) == len(TAGS)
    again = add_tag(conn, "2026-11-21", "medication", detail=" x ", source="web")
    assert again == ids[TAGS.index("medication")]
    other = add_tag(conn, "2026-11-21", "medication", detail="gabapentin", source="web")
    assert other not in ids
    assert len(tags_by_date(conn)["2026-11-21"]) == len(TAGS) + 1


def test_remove_tag_says_whether_it_existed(conn: sqlite3.Connection) -> None:
    tag_id = add_tag(conn, "2026-11-21", "heat", source="t")
    assert remove_tag(conn, tag_id) is True
    assert remove_tag(conn, tag_id) is False
    assert tags_by_date(conn) == {}


def test_tag_is_committed_and_visible_to_another_connection(conn: sqlite3.Connection, tmp_path: Path) -> None:
    add_tag(conn, "2026-11-22", "alcohol", at_local="20:15", source="t")
    other = connect(tmp_path / "b.sqlite3")
    assert tags_by_date(other)["2026-11-22"][0]["at_local"] == "20:15"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sleep_quality": 0}, "sleep_quality"),
        ({"sleep_quality": 6}, "sleep_quality"),
        ({"sleep_quality": True}, "sleep_quality"),
        ({"spasm_severity": "3"}, "spasm_severity"),
        ({"spasm_severity": 2.5}, "spasm_severity"),
        ({"note": "n" * 2001}, "note"),
        ({"night_date": "yesterday"}, "night_date"),
    ],
)
def test_bad_checkin_input_names_the_field(
    conn: sqlite3.Connection, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"night_date": "2026-11-21", "sleep_quality": 3, "spasm_severity": None, **kwargs}
    with pytest.raises(UserDataError, match=field):
        set_checkin(conn, args.pop("night_date"), **args)
    assert checkins_by_date(conn) == {}


def test_checkin_is_replaced_keeping_its_first_creation_time(conn: sqlite3.Connection) -> None:
    set_checkin(conn, "2026-11-21", sleep_quality=2, spasm_severity=4, note="bad")
    first = checkins_by_date(conn)["2026-11-21"]
    set_checkin(conn, "2026-11-21", sleep_quality=None, spasm_severity=1)
    second = checkins_by_date(conn)["2026-11-21"]
    assert (second["sleep_quality"], second["spasm_severity"], second["note"]) == (None, 1, "")
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] >= first["updated_at"]


def test_relabel_is_kept_beside_the_event_and_replaced_by_a_new_one(conn: sqlite3.Connection) -> None:
    relabel(conn, "e1", "not_an_event", source="web")
    relabel(conn, "e1", "spasm", source="cli")
    data = load_night(conn, "n1")
    assert data is not None
    assert data.events[0]["label"] == "spasm"
    assert data.events[0]["event_type"] == "jerk"
    assert conn.execute("SELECT source FROM relabels").fetchall()[0][0] == "cli"


def test_relabel_of_an_unknown_event_or_to_an_unknown_label_names_the_field(conn: sqlite3.Connection) -> None:
    with pytest.raises(UserDataError, match="event_id 'nope'"):
        relabel(conn, "nope", "jerk", source="web")
    with pytest.raises(UserDataError, match="label"):
        relabel(conn, "e1", "sneeze", source="web")
    with pytest.raises(UserDataError, match="source"):
        relabel(conn, "e1", "jerk", source="")
    assert conn.execute("SELECT COUNT(*) FROM relabels").fetchone()[0] == 0


def test_writes_through_a_readonly_connection_fail(tmp_path: Path, conn: sqlite3.Connection) -> None:
    ro = connect(tmp_path / "b.sqlite3")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        add_tag(ro, "2026-11-21", "heat", source="t")


def test_dismissing_a_notice_keeps_the_first_time_and_unknown_ids_are_false(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO notices (id, created_at, kind, message) VALUES ('t1', '2026-11-22T07:00:00.000Z', "
        "'trend', 'Spasms per night rose')"
    )
    conn.commit()
    assert dismiss_notice(conn, "t1", "2026-11-22T08:00:00+00:00") is True
    assert dismiss_notice(conn, "t1") is True
    assert conn.execute("SELECT dismissed_at FROM notices").fetchone()[0] == "2026-11-22T08:00:00.000Z"
    assert dismiss_notice(conn, "nope") is False
    with pytest.raises(UserDataError, match="at must be"):
        dismiss_notice(conn, "t1", "tomorrow")
