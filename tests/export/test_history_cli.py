"""``bedside nights | report | export | tag | checkin`` as a user runs them: output, files, exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pyedflib
import pytest

from service.cli import EXIT_INPUT, EXIT_OK, EXIT_STORE, EXIT_USAGE
from service.export.report import DISCLAIMER
from tests.export import REPO, build_db, clean_env, run_cli


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("cli") / "bedside.sqlite3"
    return path, build_db(path, nights=4, raw_days=1)


def _query(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- nights -----------------------------------------------------------------------------------


def test_nights_lists_newest_first_as_table_and_json(db: tuple[Path, list[str]]) -> None:
    path, ids = db
    table = run_cli("nights", "--db", str(path), "--last", "3")
    assert table.returncode == EXIT_OK, table.stderr
    listed = [line.split()[-1] for line in table.stdout.splitlines()[1:]]
    assert [i for i in ids if i in table.stdout] == ids[-3:]
    assert table.stdout.index(ids[-1]) < table.stdout.index(ids[-2]) < table.stdout.index(ids[-3])
    assert len(listed) == 3
    doc = run_cli("nights", "--db", str(path), "--json")
    assert doc.returncode == EXIT_OK
    nights = json.loads(doc.stdout)
    assert [n["id"] for n in nights] == ids[::-1]
    assert [n["raw_signal_kept"] for n in nights] == [True, False, False, False]
    (awakenings,) = _query(
        path, "SELECT COUNT(*) FROM events WHERE night_id = ? AND event_type = 'awakening'", (ids[-1],)
    )[0]
    assert nights[0]["summary"]["awakenings"] == awakenings


def test_nights_fails_clearly_without_a_database_or_with_a_bad_count(tmp_path: Path) -> None:
    missing = run_cli("nights", "--db", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == EXIT_STORE
    assert "none.sqlite3 does not exist" in missing.stderr
    assert not (tmp_path / "none.sqlite3").exists()
    bad = run_cli("nights", "--db", str(tmp_path / "none.sqlite3"), "--last", "0")
    assert bad.returncode == EXIT_USAGE and "at least 1" in bad.stderr


def test_default_database_is_the_configured_one(db: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = db
    cfg = tmp_path / "bedside.toml"
    cfg.write_text(f'[storage]\ndb_path = "{path}"\n', encoding="utf-8")
    by_file = run_cli("nights", "--config", str(cfg), "--json")
    assert by_file.returncode == EXIT_OK, by_file.stderr
    assert [n["id"] for n in json.loads(by_file.stdout)] == ids[::-1]
    env = {**clean_env(), "BEDSIDE_STORAGE__DB_PATH": str(path)}
    by_env = run_cli("nights", "--json", env=env, cwd=tmp_path)
    assert by_env.returncode == EXIT_OK, by_env.stderr
    assert len(json.loads(by_env.stdout)) == len(ids)


def test_a_database_from_before_the_history_tables_is_a_database_error(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old)
    conn.executescript("CREATE TABLE nights (id TEXT PRIMARY KEY, started_at TEXT NOT NULL);")
    conn.close()
    res = run_cli("tag", "--db", str(old), "--list")
    assert res.returncode == EXIT_STORE
    assert "database error" in res.stderr and "tags" in res.stderr


# --- report -----------------------------------------------------------------------------------


def test_report_writes_the_page_and_refuses_a_missing_folder(
    db: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, _ids = db
    out = tmp_path / "report.html"
    res = run_cli("report", "--db", str(path), "--last", "14", "--out", str(out), "--tz", "Europe/Berlin")
    assert res.returncode == EXIT_OK, res.stderr
    html = out.read_text(encoding="utf-8")
    assert DISCLAIMER in html
    for (night_date,) in _query(path, "SELECT night_date FROM nights"):
        assert f'id="night-{night_date}"' in html
    assert res.stderr == ""  # no progress bar when stderr is not a terminal
    nowhere = run_cli("report", "--db", str(path), "--out", str(tmp_path / "no" / "r.html"))
    assert nowhere.returncode == EXIT_USAGE and "does not exist" in nowhere.stderr
    zone = run_cli("report", "--db", str(path), "--out", str(out), "--tz", "Mars/Olympus")
    assert zone.returncode == EXIT_USAGE and "Mars/Olympus" in zone.stderr
    gone = run_cli("report", "--db", str(tmp_path / "gone.sqlite3"), "--out", str(out))
    assert gone.returncode == EXIT_STORE


# --- export -----------------------------------------------------------------------------------


def test_export_csv_of_one_night_all_nights_and_a_range(db: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = db
    one = run_cli(
        "export", "--db", str(path), "--night", ids[1], "--format", "csv", "--out", str(tmp_path / "one")
    )
    assert one.returncode == EXIT_OK, one.stderr
    nights_csv = (tmp_path / "one" / "nights.csv").read_text().splitlines()
    assert len(nights_csv) == 2 and nights_csv[1].startswith(ids[1] + ",")
    every = run_cli(
        "export", "--db", str(path), "--all", "--format", "csv", "--out", str(tmp_path / "all.zip")
    )
    assert every.returncode == EXIT_OK, every.stderr
    with zipfile.ZipFile(tmp_path / "all.zip") as zf:
        assert len(zf.read("nights.csv").decode().splitlines()) == 1 + len(ids)
        (n_events,) = _query(path, "SELECT COUNT(*) FROM events")[0]
        assert len(zf.read("events.csv").decode().splitlines()) == 1 + n_events
    dates = [d for (d,) in _query(path, "SELECT night_date FROM nights ORDER BY started_at")]
    ranged = run_cli(
        "export", "--db", str(path), "--from", dates[1], "--to", dates[2], "--format", "csv", "--out",
        str(tmp_path / "range"),
    )  # fmt: skip
    assert ranged.returncode == EXIT_OK, ranged.stderr
    assert len((tmp_path / "range" / "nights.csv").read_text().splitlines()) == 3
    again = run_cli(
        "export", "--db", str(path), "--all", "--format", "csv", "--out", str(tmp_path / "all.zip")
    )
    assert again.returncode == EXIT_USAGE and "already exists" in again.stderr


def test_export_edf_of_a_kept_night_and_the_errors(db: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = db
    out = tmp_path / "night.edf"
    res = run_cli("export", "--db", str(path), "--night", ids[-1], "--format", "edf", "--out", str(out))
    assert res.returncode == EXIT_OK, res.stderr
    reader = pyedflib.EdfReader(str(out))
    try:
        (rate,) = _query(path, "SELECT rate_hz FROM nights WHERE id = ?", (ids[-1],))[0]
        assert reader.getSampleFrequency(0) == rate
        (n_events,) = _query(path, "SELECT COUNT(*) FROM events WHERE night_id = ?", (ids[-1],))[0]
        assert len(reader.readAnnotations()[2]) == n_events
    finally:
        reader.close()

    pruned = run_cli(
        "export", "--db", str(path), "--night", ids[0], "--format", "edf", "--out", str(tmp_path / "p.edf")
    )
    assert pruned.returncode == EXIT_INPUT
    assert "storage.raw_retention_days" in pruned.stderr and not (tmp_path / "p.edf").exists()
    unknown = run_cli(
        "export", "--db", str(path), "--night", "nope", "--format", "edf", "--out", str(tmp_path / "u.edf")
    )
    assert unknown.returncode == EXIT_USAGE and "no night with id 'nope'" in unknown.stderr
    several = run_cli(
        "export", "--db", str(path), "--all", "--format", "edf", "--out", str(tmp_path / "a.edf")
    )
    assert several.returncode == EXIT_USAGE and "--night" in several.stderr
    exists = run_cli("export", "--db", str(path), "--night", ids[-1], "--format", "edf", "--out", str(out))
    assert exists.returncode == EXIT_USAGE and "already exists" in exists.stderr
    to_only = run_cli(
        "export", "--db", str(path), "--to", "2026-10-02", "--format", "csv", "--out", str(tmp_path / "t")
    )
    assert to_only.returncode == EXIT_USAGE
    no_format = run_cli("export", "--db", str(path), "--night", ids[-1], "--out", str(tmp_path / "f"))
    assert no_format.returncode == EXIT_USAGE and "--format" in no_format.stderr


def _on_a_terminal(*args: str) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run ``python -m service ARGS`` with stderr on a real pseudo-terminal (stdout piped); the
    process and everything it drew on the terminal."""
    leader, follower = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "service", *args],
            stdout=subprocess.PIPE, stderr=follower, cwd=REPO, env=clean_env(), timeout=120,
        )  # fmt: skip
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closes when the child is gone
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    return proc, drawn


def test_progress_bar_draws_on_a_terminal_only(db: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = db
    proc, drawn = _on_a_terminal(
        "export", "--db", str(path), "--night", ids[-1], "--format", "edf", "--out", str(tmp_path / "tty.edf")
    )
    assert proc.returncode == EXIT_OK
    assert b"writing EDF [" in drawn and b"#" in drawn
    quiet = run_cli("export", "--db", str(path), "--all", "--format", "csv", "--out", str(tmp_path / "q"))
    assert quiet.stderr == ""


def test_nights_draws_a_bar_per_night_summarised_on_a_terminal_only(db: tuple[Path, list[str]]) -> None:
    path, ids = db
    proc, drawn = _on_a_terminal("nights", "--db", str(path), "--last", "3")
    assert proc.returncode == EXIT_OK
    assert b"summarising nights [" in drawn
    assert drawn.rstrip().endswith(f"summarising nights [{'#' * 30}] 3/3".encode())  # finished line
    assert proc.stdout.decode().count("\n") == 4  # the table (header + 3 nights) on stdout, unmixed
    assert all(i in proc.stdout.decode() for i in ids[-3:])
    _, silent = _on_a_terminal("nights", "--db", str(path), "--quiet")
    assert silent == b""
    piped = run_cli("nights", "--db", str(path), "--json")
    assert piped.returncode == EXIT_OK and piped.stderr == ""
    assert len(json.loads(piped.stdout)) == len(ids)


def test_report_draws_its_bar_on_a_terminal_only(db: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = db
    out = tmp_path / "report.html"
    proc, drawn = _on_a_terminal("report", "--db", str(path), "--last", "4", "--out", str(out))
    assert proc.returncode == EXIT_OK, drawn
    assert b"reading nights [" in drawn
    assert drawn.rstrip().endswith(f"reading nights [{'#' * 30}] {len(ids)}/{len(ids)}".encode())
    assert out.read_text(encoding="utf-8").count(DISCLAIMER) >= 1
    _, silent = _on_a_terminal("report", "--db", str(path), "-q", "--out", str(tmp_path / "q.html"))
    assert silent == b""
    piped = run_cli("report", "--db", str(path), "--out", str(tmp_path / "p.html"))
    assert piped.returncode == EXIT_OK and piped.stderr == ""


# --- tag and checkin --------------------------------------------------------------------------


def test_tag_adds_lists_and_removes(db: tuple[Path, list[str]]) -> None:
    path, _ = db
    added = run_cli("tag", "--db", str(path), "--date", "2026-11-20", "medication", "--detail", "baclofen",
                    "--at", "21:15")  # fmt: skip
    assert added.returncode == EXIT_OK, added.stderr
    rows = _query(
        path, "SELECT rowid, tag, detail, at_local, source FROM tags WHERE night_date = '2026-11-20'"
    )
    assert [r[1:] for r in rows] == [("medication", "baclofen", "21:15", "cli")]
    tag_id = rows[0][0]
    listed = run_cli("tag", "--db", str(path), "--list", "--date", "2026-11-20")
    assert listed.returncode == EXIT_OK
    assert "baclofen" in listed.stdout and str(tag_id) in listed.stdout
    removed = run_cli("tag", "--db", str(path), "--remove", str(tag_id))
    assert removed.returncode == EXIT_OK
    assert _query(path, "SELECT COUNT(*) FROM tags WHERE night_date = '2026-11-20'") == [(0,)]
    again = run_cli("tag", "--db", str(path), "--remove", str(tag_id))
    assert again.returncode == EXIT_USAGE and f"no tag with id {tag_id}" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2026-11-20", "yoga"], "tag must be one of"),
        (["--date", "2026-11-20", "medication"], "needs --detail"),
        (["--date", "2026-11-20", "heat", "--at", "25:00"], "HH:MM"),
        (["--date", "20.11.2026", "heat"], "YYYY-MM-DD"),
        (["heat"], "--date"),
    ],
)
def test_tag_refuses_bad_input_with_exit_2(db: tuple[Path, list[str]], args: list[str], message: str) -> None:
    path, _ = db
    before = _query(path, "SELECT COUNT(*) FROM tags")
    res = run_cli("tag", "--db", str(path), *args)
    assert res.returncode == EXIT_USAGE
    assert message in res.stderr
    assert _query(path, "SELECT COUNT(*) FROM tags") == before


def test_checkin_saves_and_refuses_bad_scales(db: tuple[Path, list[str]]) -> None:
    path, _ = db
    ok = run_cli("checkin", "--db", str(path), "--date", "2026-11-20", "--quality", "4", "--severity", "2",
                 "--note", "woke once")  # fmt: skip
    assert ok.returncode == EXIT_OK, ok.stderr
    assert _query(
        path, "SELECT sleep_quality, spasm_severity, note FROM checkins WHERE night_date = '2026-11-20'"
    ) == [(4, 2, "woke once")]
    for args, message in (
        (["--quality", "6"], "invalid choice"),
        (["--quality", "x"], "invalid"),
        ([], "at least one of"),
    ):
        res = run_cli("checkin", "--db", str(path), "--date", "2026-11-21", *args)
        assert res.returncode == EXIT_USAGE, args
        assert message in res.stderr
    bad_date = run_cli("checkin", "--db", str(path), "--date", "2026-02-30", "--quality", "3")
    assert bad_date.returncode == EXIT_USAGE and "not a calendar date" in bad_date.stderr
    assert _query(path, "SELECT COUNT(*) FROM checkins WHERE night_date IN ('2026-11-21', '2026-02-30')") == [
        (0,)
    ]


def test_every_history_command_has_help() -> None:
    for command in ("nights", "report", "export", "tag", "checkin"):
        res = run_cli(command, "--help")
        assert res.returncode == EXIT_OK
        assert "--db" in res.stdout
