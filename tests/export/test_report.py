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
from service.history.user_data import add_tag
from tests.export import add_spasms, build_db
from tests.history import HistoryDb, at

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


# --- with / without and the notable list, on nights whose answer is known ----------------------


def _known_nights(path: Path) -> list[int]:
    """20 one-hour nights of hand-made spasm events: ``heat`` on even nights, which have 1 or 2
    spasms (mean 1.5) against 4 or 5 (mean 4.5) on the others; ``stretching`` on nights 0-7,
    whose spasms average 3.0 like the other twelve; ``medication`` (baclofen) on three nights."""
    db = HistoryDb(path)
    counts = []
    for i in range(20):
        day = f"2026-10-{i + 1:02d}"
        start = f"{day}T22:00:00.000Z"
        db.night(f"n{i:02d}", start, at(start, 3600), night_date=day)
        n = (1 if i % 4 == 0 else 2) if i % 2 == 0 else (4 if i % 4 == 1 else 5)
        counts.append(n)
        for k in range(n):
            db.event(f"n{i:02d}-s{k}", f"n{i:02d}", "spasm", at(start, 300 + 120 * k), 3.0, 20.0)
    db.close()
    conn = connect(path, readonly=False)
    try:
        for i in range(20):
            day = f"2026-10-{i + 1:02d}"
            if i % 2 == 0:
                add_tag(conn, day, "heat", source="test")
            if i < 8:
                add_tag(conn, day, "stretching", source="test")
            if i in (3, 9, 15):
                add_tag(conn, day, "medication", detail="Baclofen", source="test")
    finally:
        conn.close()
    return counts


def _row(section: str, label: str) -> list[list[str]]:
    """The table rows of one tag in the with/without section, as lists of cell texts."""
    rows = section.split(f'<td class="l" rowspan="3">{label}</td>')[1].split("</tr>")[:3]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows]


def test_report_shows_the_known_tag_difference_and_only_it_as_notable(tmp_path: Path) -> None:
    path = tmp_path / "known.sqlite3"
    counts = _known_nights(path)
    heat = [c for i, c in enumerate(counts) if i % 2 == 0]
    assert (sum(heat) / 10, (sum(counts) - sum(heat)) / 10) == (1.5, 4.5)  # the data are as described
    html = _render(path, last=20)

    notable = re.findall(
        r"<li>(Nights with .*?)</li>", html.split("<h3>Notable changes</h3>")[1].split("</section>")[0]
    )
    assert len(notable) == 1, notable  # stretching (no difference) and baclofen (3 nights) are not notable
    found = re.fullmatch(
        r"Nights with heat: spasms per night 3\.0 fewer \(1\.5 vs 4\.5; 95 % interval of the difference "
        r"(-?\d+\.\d) to (-?\d+\.\d); 10 vs 10 nights\)\.",
        notable[0],
    )
    assert found, notable[0]
    low, high = float(found.group(1)), float(found.group(2))
    # a resampled mean lies between the group's extremes: 1..2 with, 4..5 without
    assert -4.0 <= low <= -3.0 <= high <= -2.0

    section = html.split('<section id="with-without">')[1].split("</section>")[0]
    assert "Over the last 20 finished nights" in section
    heat_rows = _row(section, "heat")
    spasm_row = next(r for r in heat_rows if "spasms per night" in r)
    assert spasm_row[-4:] == ["spasms per night", "1.5", "4.5", f"-3.0 ({low:.1f} to {high:.1f})"]
    assert "10 / 10" in heat_rows[0]
    awakening_row = next(r for r in heat_rows if "awakenings per night" in r)
    assert awakening_row[-3:] == ["0.0", "0.0", "0.0 (0.0 to 0.0)"]  # no awakening on any night

    stretching = next(r for r in _row(section, "stretching") if "spasms per night" in r)
    assert stretching[-3:-1] == ["3.0", "3.0"] and stretching[-1].startswith("0.0 (")
    s_low, s_high = (float(x) for x in re.findall(r"-?\d+\.\d", stretching[-1].split("(")[1]))
    assert s_low < 0.0 < s_high
    baclofen = next(r for r in _row(section, "medication (Baclofen)") if "spasms per night" in r)
    # (5 + 4 + 5) / 3 with, (60 - 14) / 17 without: means shown, no difference claimed
    assert baclofen[-3:] == ["4.7", "2.7", "not enough nights yet (3 with, 17 without; need 5 each)"]
