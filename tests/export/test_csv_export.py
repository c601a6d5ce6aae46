"""CSV export: the documented columns, the rows of a real database, one night or a range, folder or zip."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from service.detect.types import EVENT_TYPES
from service.export import ExportError, NightNotFoundError
from service.export.csv_export import TABLES, collect_tables, export_csv, select_nights, to_csv
from service.history.load import connect
from service.history.user_data import add_tag, relabel, set_checkin
from tests.export import REPO, build_db

DOC = REPO / "docs" / "exports.md"
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TIME_COLUMNS = {"started_at", "ended_at", "start_at", "end_at", "t_at", "created_at", "updated_at"}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("csv") / "bedside.sqlite3"
    return path, build_db(path, nights=6, raw_days=0)


def _documented_columns() -> dict[str, list[str]]:
    """``### name.csv`` sections of docs/exports.md -> the backticked first cells of their table."""
    out: dict[str, list[str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^### (\w+)\.csv\s*$", line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        if line.startswith("#"):
            current = None
        if current is not None:
            cell = re.match(r"^\| `(\w+)` \|", line)
            if cell:
                out[current].append(cell.group(1))
    return out


def _read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_documented_columns_are_the_exported_columns() -> None:
    documented = _documented_columns()
    assert list(documented) == list(TABLES)
    for name, columns in TABLES.items():
        assert documented[name] == list(columns), f"{name}.csv columns differ from docs/exports.md"
    assert [c for c in TABLES["nights"] if c.startswith("count_")] == [f"count_{t}" for t in EVENT_TYPES]


# Frozen: the CSV columns as users' spreadsheets and scripts already read them. Never edit, reorder
# or remove an entry; a new column goes at the END of its table in csv_export.py, docs/exports.md
# and here (appended), and a new table at the end of this dict.
COLUMNS_SNAPSHOT: dict[str, list[str]] = {
    "nights": [
        "night_id", "night_date", "kind", "profile", "source", "started_at", "ended_at", "start_reason",
        "end_reason", "time_in_bed_min", "sleep_onset_latency_min", "total_sleep_min", "efficiency_pct",
        "waso_min", "awakenings", "awakenings_after_movement", "movements", "movement_index_per_h",
        "plm_series", "spasm_count", "spasm_mean_intensity", "spasm_max_intensity", "spasm_mean_duration_s",
        "spasm_max_duration_s", "mean_heart_bpm", "mean_breath_bpm", "count_jerk", "count_limb_movement",
        "count_spasm", "count_large_movement", "count_plm_series", "count_restless", "count_awakening",
        "count_fell_asleep", "count_bed_entry", "count_bed_exit", "count_sensor_fault",
    ],
    "events": [
        "night_id", "event_id", "event_type", "label", "start_at", "end_at", "duration_s", "intensity",
        "profile", "confidence", "cause_id", "details",
    ],
    "epochs": ["night_id", "start_at", "duration_s", "count", "asleep", "in_bed"],
    "vitals": ["night_id", "t_at", "heart_bpm", "breath_bpm"],
    "tags": ["night_date", "tag", "detail", "at_local", "source", "created_at"],
    "checkins": ["night_date", "sleep_quality", "spasm_severity", "note", "created_at", "updated_at"],
}  # fmt: skip


def test_csv_columns_are_stable_and_only_ever_added_at_the_end(
    db: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """The written files' header rows against the frozen snapshot above: a renamed, moved or
    removed column fails with the first difference; a new one passes the prefix check and then
    asks to be appended to the snapshot."""
    path, ids = db
    conn = connect(path)
    export_csv(conn, ids, tmp_path / "out", all_user_data=True)
    conn.close()
    headers = {}
    for name in TABLES:
        with (tmp_path / "out" / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            headers[name] = next(csv.reader(f))
    assert list(headers)[: len(COLUMNS_SNAPSHOT)] == list(COLUMNS_SNAPSHOT), (
        "a CSV table went missing or moved"
    )
    for name, frozen in COLUMNS_SNAPSHOT.items():
        got = headers[name]
        changed = next((i for i, (a, b) in enumerate(zip(frozen, got, strict=False)) if a != b), None)
        assert changed is None and len(got) >= len(frozen), (
            f"{name}.csv: columns may only be added at the end; column {changed} was {frozen[changed]!r}, "
            f"now {got[changed]!r}"
            if changed is not None
            else f"{name}.csv lost columns {frozen[len(got) :]}"
        )
    added = {name: cols[len(COLUMNS_SNAPSHOT.get(name, [])) :] for name, cols in headers.items()}
    assert not any(added.values()), f"new CSV columns {added}: append them to COLUMNS_SNAPSHOT (and the docs)"


def test_one_night_exports_its_rows_with_relabels_and_utc_times(
    db: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = db
    night_id = ids[2]
    rw = connect(path, readonly=False)
    (event_id,) = rw.execute(
        "SELECT id FROM events WHERE night_id = ? AND event_type = 'large_movement' LIMIT 1", (night_id,)
    ).fetchone()
    relabel(rw, event_id, "spasm", source="test")
    night_date = rw.execute("SELECT night_date FROM nights WHERE id = ?", (night_id,)).fetchone()[0]
    add_tag(rw, night_date, "custom", detail="new mattress", at_local="22:10", source="test")
    rw.close()

    conn = connect(path)
    done = export_csv(conn, select_nights(conn, night_id=night_id), tmp_path / "out")
    files = done.files
    stored = Counter(
        r[0] for r in conn.execute("SELECT event_type FROM events WHERE night_id = ?", (night_id,))
    )
    n_epochs = conn.execute("SELECT COUNT(*) FROM epochs WHERE night_id = ?", (night_id,)).fetchone()[0]
    all_tag_dates = {r[0] for r in conn.execute("SELECT night_date FROM tags")}
    conn.close()

    assert [f.name for f in files] == [f"{name}.csv" for name in TABLES]
    tables = {f.stem: f.read_text(encoding="utf-8") for f in files}
    for name, text in tables.items():
        assert text.splitlines()[0].split(",") == list(TABLES[name])
    rows = {name: _read_csv(text) for name, text in tables.items()}

    events = rows["events"]
    assert {r["night_id"] for r in events} == {night_id}
    assert Counter(r["event_type"] for r in events) == stored
    labelled = [r for r in events if r["label"]]
    assert [(r["event_id"], r["label"], r["event_type"]) for r in labelled] == [
        (event_id, "spasm", "large_movement")
    ]
    for r in events:
        json.loads(r["details"])
    assert len(rows["epochs"]) == n_epochs
    assert {r["asleep"] for r in rows["epochs"]} <= {"0", "1"}
    for name in TABLES:
        for r in rows[name]:
            for col in TIME_COLUMNS & set(r):
                assert r[col] == "" or ISO_Z.match(r[col]), f"{name}.{col} = {r[col]!r}"

    (night,) = rows["nights"]
    assert night["night_id"] == night_id and night["night_date"] == night_date
    # The relabel counts: one large movement fewer, one spasm more than the detector said.
    assert int(night["count_large_movement"]) == stored["large_movement"] - 1
    assert int(night["count_spasm"]) == stored["spasm"] + 1 == int(night["spasm_count"])
    assert int(night["awakenings"]) == stored["awakening"]
    assert float(night["total_sleep_min"]) <= float(night["time_in_bed_min"])

    assert {r["night_date"] for r in rows["tags"]} == {night_date} != all_tag_dates
    assert any(r["tag"] == "custom" and r["detail"] == "new mattress" for r in rows["tags"])
    assert {r["night_date"] for r in rows["checkins"]} <= {night_date}


def test_date_range_selects_nights_by_their_evening_date(db: tuple[Path, list[str]]) -> None:
    path, ids = db
    conn = connect(path)
    dates = {r[0]: r[1] for r in conn.execute("SELECT id, night_date FROM nights")}
    chosen = select_nights(conn, from_date=dates[ids[1]], to_date=dates[ids[3]])
    assert chosen == ids[1:4]
    assert select_nights(conn, from_date=dates[ids[4]]) == ids[4:]
    assert select_nights(conn) == ids
    with pytest.raises(ExportError, match="YYYY-MM-DD"):
        select_nights(conn, from_date="21.11.2026")
    with pytest.raises(NightNotFoundError, match="nope"):
        select_nights(conn, night_id="nope")
    conn.close()


def test_zip_holds_the_same_tables_and_nothing_is_overwritten(
    db: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = db
    conn = connect(path)
    folder = export_csv(conn, ids, tmp_path / "dir", all_user_data=True)
    archive = export_csv(conn, ids, tmp_path / "all.zip", all_user_data=True)
    assert archive.files == [tmp_path / "all.zip"] and archive.rows == folder.rows
    with zipfile.ZipFile(tmp_path / "all.zip") as zf:
        assert zf.namelist() == [f"{name}.csv" for name in TABLES]
        for f in folder.files:
            assert zf.read(f.name).decode("utf-8") == f.read_text(encoding="utf-8")
    assert len(_read_csv((tmp_path / "dir" / "nights.csv").read_text())) == len(ids) == folder.rows["nights"]
    with pytest.raises(ExportError, match="already"):
        export_csv(conn, ids, tmp_path / "all.zip")
    with pytest.raises(ExportError, match="already holds"):
        export_csv(conn, ids, tmp_path / "dir")
    with pytest.raises(NightNotFoundError):
        export_csv(conn, [*ids, "gone"], tmp_path / "partial")
    conn.close()
    assert not (tmp_path / "partial").exists()  # a failed export leaves nothing behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bedside-export")]


def test_whole_history_keeps_tags_of_dates_without_a_night(
    db: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = db
    rw = connect(path, readonly=False)
    add_tag(rw, "2030-01-01", "caffeine", source="test")
    rw.close()
    conn = connect(path)
    everything = collect_tables(conn, ids, all_user_data=True)
    some = collect_tables(conn, ids)
    conn.close()
    assert any(r["night_date"] == "2030-01-01" for r in everything["tags"])
    assert not any(r["night_date"] == "2030-01-01" for r in some["tags"])


def test_database_rows_are_read_not_invented(tmp_path: Path) -> None:
    """A night with no epochs or vitals exports empty sleep figures, not zeros."""
    db = tmp_path / "one.sqlite3"
    ids = build_db(db, nights=1, raw_days=0)
    with sqlite3.connect(db) as raw:
        raw.execute("DELETE FROM epochs")
        raw.execute("DELETE FROM vitals")
    raw.close()
    conn = connect(db)
    (night,) = collect_tables(conn, ids)["nights"]
    conn.close()
    assert night["total_sleep_min"] is None and night["mean_heart_bpm"] is None


def test_cells_a_spreadsheet_would_run_as_formulas_are_made_text(
    db: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = db
    rw = connect(path, readonly=False)
    night_date = rw.execute("SELECT night_date FROM nights WHERE id = ?", (ids[0],)).fetchone()[0]
    formula = '=HYPERLINK("http://evil.example","x")'
    add_tag(rw, night_date, "custom", detail=formula, source="test")
    set_checkin(rw, night_date, sleep_quality=3, spasm_severity=None, note="@SUM(1+1)\nthen -2+3")
    rw.close()
    conn = connect(path)
    done = export_csv(conn, [ids[0]], tmp_path / "out")
    conn.close()
    tags = _read_csv((tmp_path / "out" / "tags.csv").read_text(encoding="utf-8"))
    assert [r["detail"] for r in tags if r["tag"] == "custom"] == ["'" + formula]
    checkins = _read_csv((tmp_path / "out" / "checkins.csv").read_text(encoding="utf-8"))
    assert [r["note"] for r in checkins] == ["'@SUM(1+1)\nthen -2+3"]
    assert done.rows["tags"] >= 1
    text = to_csv(
        ("a", "b", "c", "d", "e", "f", "g"),
        [{"a": -1.5, "b": "-2.25", "c": "-cmd", "d": "+1+1", "e": "\tx", "f": "\r=1", "g": "a=b"}],
    )
    assert list(csv.reader(io.StringIO(text, newline="")))[1] == [
        "-1.5",
        "-2.25",
        "'-cmd",
        "'+1+1",
        "'\tx",
        "'\n=1",
        "a=b",
    ]
