"""summarize_night on hand-built nights in a real SQLite file: every figure worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest

from service.history.load import NightData, connect, load_night
from service.history.summary import PLM_INTERVAL_EDGES_S, SUMMARY_VERSION, summarize_night
from service.history.user_data import relabel
from tests.history import HistoryDb, at

T0 = "2026-11-21T22:00:00.000Z"
PLUS_1H = timezone(timedelta(hours=1))


def _e(n: int) -> str:
    """Start of epoch ``n`` (30 s epochs from T0)."""
    return at(T0, 30.0 * n)


def _calls() -> list[tuple[bool, bool]]:
    """74 epochs of (asleep, in_bed), laid out in the comments; see the expected figures below."""
    calls: list[tuple[bool, bool]] = []
    calls += [(False, False)] * 2  # 0-1: not in bed yet
    calls += [(False, True)] * 8  # 2-9: in bed, awake (first in-bed epoch: 2, at 22:01:00)
    calls += [(True, True)]  # 10: one asleep epoch, too short to be sleep onset
    calls += [(False, True)]  # 11
    calls += [(True, True)] * 28  # 12-39: sleep onset at epoch 12 (22:06:00)
    calls += [(False, True)] * 4  # 40-43: awake in bed
    calls += [(False, False)]  # 44: out of bed (still wake after sleep onset)
    calls += [(True, True)] * 15  # 45-59
    calls += [(False, True)]  # 60: one awake epoch
    calls += [(True, True)] * 9  # 61-69: last asleep epoch 69 ends at 22:35:00
    calls += [(False, True)] * 4  # 70-73: awake in bed until 22:37:00
    assert len(calls) == 74
    return calls


@pytest.fixture
def night(tmp_path: Path) -> NightData:
    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("n1", T0, "2026-11-22T00:30:00.000Z", night_date="2026-11-21")
    db.epochs("n1", T0, _calls())
    ev = db.event
    ev("j1", "n1", "jerk", at(T0, 600), 0.3, 9.0)  # 22:10:00
    # limb movements 22:15:00, :20, :45, 22:16:15, :27 -> intervals 20, 25, 30, 12 s
    for i, off in enumerate((900, 920, 945, 975, 987)):
        ev(f"l{i}", "n1", "limb_movement", at(T0, off), 2.0, 6.0)
    ev("s1", "n1", "plm_series", at(T0, 900), 89.0, 0.0, details={"movements": 5.0})
    ev("l6", "n1", "limb_movement", at(T0, 1200), 1.0, 4.0)  # 22:20:00, relabelled not an event
    ev("j2", "n1", "jerk", at(T0, 1260), 0.4, 12.0)  # 22:21:00, relabelled a spasm
    ev("sp1", "n1", "spasm", at(T0, 1500), 3.0, 20.0)  # 22:25:00, confirmed a spasm
    ev("sp2", "n1", "spasm", at(T0, 4200), 5.0, 30.0)  # 23:10:00, after the sleep period
    ev("lg", "n1", "large_movement", at(T0, 1780), 6.0, 15.0)  # 22:29:40
    ev("bx", "n1", "bed_exit", _e(44), 0.0, 0.0)
    ev("be", "n1", "bed_entry", _e(45), 0.0, 0.0)
    ev("a1", "n1", "awakening", _e(40), 60.0, 0.0, cause_id="l6")  # its cause is not a movement
    ev("a2", "n1", "awakening", _e(60), 30.0, 0.0)  # large movement 20 s before
    ev("a3", "n1", "awakening", _e(70), 60.0, 0.0, cause_id="j1")  # the detector named a cause
    db.vitals(
        "n1",
        [
            (at(T0, 700), 60.0, 14.0),
            (at(T0, 800), 64.0, None),
            (at(T0, 900), None, 15.0),
            (at(T0, 1000), 68.0, 16.0),
        ],
    )
    db.close()
    conn = connect(tmp_path / "b.sqlite3", readonly=False)
    relabel(conn, "l6", "not_an_event", source="test")
    relabel(conn, "j2", "spasm", source="test")
    relabel(conn, "sp1", "spasm", source="test")
    data = load_night(conn, "n1")
    conn.close()
    assert data is not None
    return data


def test_sleep_figures_follow_the_documented_epoch_definitions(night: NightData) -> None:
    s = summarize_night(night, tz=UTC)
    assert s["time_in_bed_min"] == 35.5  # 71 in-bed epochs
    assert s["sleep_onset_latency_min"] == 5.0  # 22:01:00 -> 22:06:00
    assert s["sleep_onset_at"] == "2026-11-21T22:06:00.000Z"
    assert s["final_awakening_at"] == "2026-11-21T22:35:00.000Z"
    assert s["total_sleep_min"] == 26.0  # 28 + 15 + 9 asleep epochs in the sleep period
    assert s["waso_min"] == 3.0  # 4 + 1 (out of bed) + 1 awake epochs in the sleep period
    assert s["efficiency_pct"] == 73.2  # 26 / 35.5
    assert s["wake_bouts"] == 1  # epochs 40-44; epoch 60 alone is too short


def test_counts_apply_the_users_relabels(night: NightData) -> None:
    s = summarize_night(night, tz=UTC)
    c = s["counts"]
    assert c["jerk"] == 1  # j2 became a spasm
    assert c["limb_movement"] == 5  # l6 is not an event
    assert c["spasm"] == 3
    assert c["large_movement"] == 1
    assert c["plm_series"] == 1 and s["plm_series"] == 1
    assert c["awakening"] == 3 and s["awakenings"] == 3
    assert c["bed_exit"] == 1 and c["bed_entry"] == 1
    assert c["restless"] == 0 and c["fell_asleep"] == 0 and c["sensor_fault"] == 0
    assert s["movements"] == 10
    assert s["relabelled"] == 2 and s["confirmed"] == 1


def test_movement_index_counts_movements_in_the_sleep_period_per_hour_of_sleep(night: NightData) -> None:
    s = summarize_night(night, tz=UTC)
    # 9 movements start between 22:06:00 and 22:35:00 (sp2 at 23:10 does not): 9 / (26/60 h)
    assert s["movement_index_per_h"] == round(9 / (26 / 60), 2)


def test_awakenings_after_movement_use_the_cause_or_the_window(night: NightData) -> None:
    s = summarize_night(night, tz=UTC)
    # a1: its cause l6 was relabelled not an event and nothing else moved within 30 s;
    # a2: large movement 20 s before; a3: the detector named j1.
    assert s["awakenings_after_movement"] == 2


def test_plm_interval_histogram_holds_onset_to_onset_intervals_inside_series(night: NightData) -> None:
    h = summarize_night(night, tz=UTC)["plm_interval_histogram"]
    assert h["edges_s"] == list(PLM_INTERVAL_EDGES_S)
    expected = [0] * (len(PLM_INTERVAL_EDGES_S) - 1)
    for interval in (20, 25, 30, 12):
        expected[interval // 5] += 1
    assert h["counts"] == expected
    assert h["outside"] == 0


def test_spasm_statistics_include_relabelled_spasms(night: NightData) -> None:
    sp = summarize_night(night, tz=UTC)["spasms"]
    assert sp == {
        "count": 3,
        "mean_intensity": round((20 + 30 + 12) / 3, 2),
        "max_intensity": 30.0,
        "mean_duration_s": round((3 + 5 + 0.4) / 3, 2),
        "max_duration_s": 5.0,
    }


def test_events_per_hour_use_local_clock_hours_of_the_given_zone(night: NightData) -> None:
    rows = summarize_night(night, tz=PLUS_1H)["events_per_hour"]
    assert [r["hour_start"] for r in rows] == [
        "2026-11-21T22:00:00.000Z",
        "2026-11-21T23:00:00.000Z",
        "2026-11-22T00:00:00.000Z",
    ]
    assert [r["local_hour"] for r in rows] == [23, 0, 1]
    # 22:xx UTC: j1, 5 limb movements, the series, j2, sp1, lg, 3 awakenings, exit, entry
    assert [r["count"] for r in rows] == [15, 1, 0]
    assert [r["movements"] for r in rows] == [9, 1, 0]


def test_half_hour_zone_puts_hour_boundaries_at_half_past_utc(night: NightData) -> None:
    rows = summarize_night(night, tz=timezone(timedelta(hours=5, minutes=30)))["events_per_hour"]
    assert rows[0]["hour_start"] == "2026-11-21T21:30:00.000Z"
    assert [r["local_hour"] for r in rows] == [3, 4, 5]
    assert sum(r["count"] for r in rows) == 16


def test_vitals_means_skip_missing_readings(night: NightData) -> None:
    s = summarize_night(night, tz=UTC)
    assert s["mean_heart_bpm"] == 64.0
    assert s["mean_breath_bpm"] == 15.0


def test_summary_names_the_night_and_is_json(night: NightData) -> None:
    s = summarize_night(night, tz=UTC)
    assert s["summary_version"] == SUMMARY_VERSION
    assert (s["night_id"], s["night_date"], s["kind"]) == ("n1", "2026-11-21", "night")
    assert s["started_at"] == T0 and s["ended_at"] == "2026-11-22T00:30:00.000Z"
    assert json.loads(json.dumps(s)) == s


def test_night_without_epochs_or_events_gives_none_figures(tmp_path: Path) -> None:
    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("empty", T0, at(T0, 1800))
    db.close()
    conn = connect(tmp_path / "b.sqlite3")
    data = load_night(conn, "empty")
    assert data is not None
    s = summarize_night(data, tz=UTC)
    for key in (
        "time_in_bed_min",
        "sleep_onset_latency_min",
        "total_sleep_min",
        "efficiency_pct",
        "waso_min",
        "movement_index_per_h",
        "mean_heart_bpm",
        "mean_breath_bpm",
    ):
        assert s[key] is None, key
    assert s["movements"] == 0 and s["awakenings"] == 0
    assert s["spasms"]["mean_intensity"] is None
    assert [r["count"] for r in s["events_per_hour"]] == [0]


def test_night_in_bed_but_never_asleep_has_zero_sleep_and_no_index(tmp_path: Path) -> None:
    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("awake", T0, at(T0, 600))
    db.epochs("awake", T0, [(False, True)] * 10 + [(True, True)] + [(False, True)] * 9)
    db.event("m", "awake", "limb_movement", at(T0, 60), 1.0)
    db.close()
    data = load_night(connect(tmp_path / "b.sqlite3"), "awake")
    assert data is not None
    s = summarize_night(data, tz=UTC)
    assert s["time_in_bed_min"] == 10.0
    assert s["total_sleep_min"] == 0.0 and s["efficiency_pct"] == 0.0
    assert s["sleep_onset_latency_min"] is None
    assert s["movement_index_per_h"] is None
    assert s["movements"] == 1


def test_running_night_ends_at_the_last_recorded_row(tmp_path: Path) -> None:
    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("live", T0, None)
    db.epochs("live", T0, [(False, True)] * 200)  # 100 min of epochs
    db.close()
    data = load_night(connect(tmp_path / "b.sqlite3"), "live")
    assert data is not None
    rows = summarize_night(data, tz=UTC)["events_per_hour"]
    assert [r["hour_start"][11:13] for r in rows] == ["22", "23"]


def test_a_shorter_onset_run_moves_sleep_onset_to_the_lone_asleep_epoch(night: NightData) -> None:
    s = summarize_night(night, tz=UTC, onset_epochs=1)
    assert s["sleep_onset_at"] == "2026-11-21T22:05:00.000Z"  # epoch 10
    assert s["sleep_onset_latency_min"] == 4.0
    assert s["total_sleep_min"] == 26.5 and s["waso_min"] == 3.5  # epochs 10 and 11 join the period


def test_a_narrower_cause_window_drops_the_movement_20_s_before(night: NightData) -> None:
    assert summarize_night(night, tz=UTC, cause_window_s=10.0)["awakenings_after_movement"] == 1


def test_the_autumn_clock_change_repeats_a_local_hour(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    db = HistoryDb(tmp_path / "b.sqlite3")
    db.night("dst", "2026-10-24T20:10:00.000Z", "2026-10-25T03:00:00.000Z")
    db.event("m", "dst", "jerk", "2026-10-25T01:30:00.000Z", 0.2, 9.0)  # 02:30 CET, the second 02:xx
    db.close()
    data = load_night(connect(tmp_path / "b.sqlite3"), "dst")
    assert data is not None
    rows = summarize_night(data, tz=ZoneInfo("Europe/Berlin"))["events_per_hour"]
    assert [r["local_hour"] for r in rows] == [22, 23, 0, 1, 2, 2, 3]
    assert [r["movements"] for r in rows] == [0, 0, 0, 0, 0, 1, 0]


def test_summarizing_night_after_night_keeps_no_more_memory_after_the_first_weeks(tmp_path: Path) -> None:
    """The daemon summarises every night and the dashboard every night shown, for months: what a
    summary keeps between calls (its parsed-time cache) must stop growing. 30 nights of 8 h (960
    epochs and 200 events each, every time distinct); nothing may stay from nights 15-30."""
    import gc
    import tracemalloc

    db = HistoryDb(tmp_path / "b.sqlite3")
    for k in range(30):
        start = at("2026-09-01T21:00:00.000Z", 86400.0 * k)
        db.night(f"n{k}", start, at(start, 8 * 3600.0))
        db.epochs(f"n{k}", start, [(i % 7 != 0, True) for i in range(960)])
        for j in range(200):
            db.event(f"n{k}e{j}", f"n{k}", "limb_movement", at(start, 60.0 + 140.0 * j + 0.1 * k), 1.0, 5.0)
    db.close()
    conn = connect(tmp_path / "b.sqlite3")

    def summarize(k: int) -> None:
        data = load_night(conn, f"n{k}")
        assert data is not None and len(data.epochs) == 960
        assert summarize_night(data, tz=UTC)["counts"]["limb_movement"] == 200

    tracemalloc.start()
    try:
        for k in range(15):
            summarize(k)
        gc.collect()
        kept_after_15 = tracemalloc.get_traced_memory()[0]
        for k in range(15, 30):
            summarize(k)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - kept_after_15
    finally:
        tracemalloc.stop()
        conn.close()
    # 15 more nights with a cache that keeps every time would keep about 3.4 MiB
    assert grown < 256 * 1024, f"{grown / 2**20:.2f} MiB kept by 15 more nights' summaries"
