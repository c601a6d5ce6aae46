"""The doctor's report on a simulated month: each night, the disclaimer, no URL, a trend notice on a rise."""

from __future__ import annotations

import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.export.report import DISCLAIMER, PROFILE_DESCRIPTIONS, render_report
from service.history.load import connect
from tests.export import add_spasms, build_db

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
# Anything that would make the page fetch or point outside itself.
EXTERNAL = re.compile(
    r"(?i)(https?:|ftp:|mailto:|file:|//[a-z0-9]|url\(|@import|<script|<link|<img|<iframe|src=)"
)


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("report") / "bedside.sqlite3"
    return path, build_db(path, nights=30, raw_days=0)


def _render(path: Path, last: int = 14) -> str:
    conn = connect(path)
    try:
        return render_report(conn, last=last, tz=UTC, now=NOW)
    finally:
        conn.close()


def _dates(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT night_date FROM nights ORDER BY started_at")]
    finally:
        conn.close()


def test_report_has_each_of_the_last_nights_and_no_other(month: tuple[Path, list[str]]) -> None:
    path, _ids = month
    html = _render(path, last=14)
    dates = _dates(path)
    for d in dates[-14:]:
        assert html.count(f'id="night-{d}"') == 1, d
    for d in dates[:-14]:
        assert f'id="night-{d}"' not in html
    assert f"Nights of {dates[-14]} to {dates[-1]} (14 nights)" in html
    assert html.count('<svg class="chart"') == 3


def test_table_rows_show_the_nights_own_figures(month: tuple[Path, list[str]]) -> None:
    path, ids = month
    html = _render(path, last=14)
    conn = sqlite3.connect(path)
    for night_id in ids[-14:]:
        (night_date,) = conn.execute("SELECT night_date FROM nights WHERE id = ?", (night_id,)).fetchone()
        (spasms,) = conn.execute(
            "SELECT COUNT(*) FROM events WHERE night_id = ? AND event_type = 'spasm'", (night_id,)
        ).fetchone()
        (awakenings,) = conn.execute(
            "SELECT COUNT(*) FROM events WHERE night_id = ? AND event_type = 'awakening'", (night_id,)
        ).fetchone()
        tags = [r[0] for r in conn.execute("SELECT tag FROM tags WHERE night_date = ?", (night_date,))]
        row = re.search(rf'<tr id="night-{night_date}">(.*?)</tr>', html, re.S)
        assert row is not None
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
        assert cells[6].startswith(f"{awakenings} (")
        assert cells[9].split(" / ")[0] == str(spasms)
        for tag in tags:
            assert tag.replace("_", " ") in cells[11]
    conn.close()


def test_disclaimer_definitions_and_profile_are_there_and_nothing_points_outside(
    month: tuple[Path, list[str]],
) -> None:
    path, _ = month
    html = _render(path)
    assert html.count(DISCLAIMER) == 2  # at the top and at the end
    assert EXTERNAL.search(html) is None, EXTERNAL.search(html)
    assert PROFILE_DESCRIPTIONS["aasm"] in html and "(used for these nights)" in html
    assert PROFILE_DESCRIPTIONS["wasm2016"] in html
    headline = html.index('id="headline"')
    assert headline < html.index('id="charts"') < html.index('id="nights"') < html.index('id="definitions"')


def test_trend_notice_appears_only_when_the_last_week_rose(
    month: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = month
    calm = _render(path)
    assert 'id="trend-notice"' not in calm
    assert "No sustained rise" in calm

    risen = tmp_path / "risen.sqlite3"
    shutil.copy(path, risen)
    add_spasms(risen, ids[-7:], per_night=8)
    html = _render(risen)
    notice = re.search(r'<p class="notice" id="trend-notice">(.*?)</p>', html, re.S)
    assert notice is not None
    assert "Spasms per night rose" in notice.group(1)
    assert "doctor" in notice.group(1)


def test_an_empty_database_gives_a_page_saying_so(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite3"
    build_db(db, nights=0)
    html = _render(db)
    assert "No nights are recorded" in html
    assert DISCLAIMER in html
    with pytest.raises(ValueError, match="at least 1"):
        conn = connect(db)
        try:
            render_report(conn, last=0)
        finally:
            conn.close()
