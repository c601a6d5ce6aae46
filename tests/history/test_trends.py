"""Weekly aggregates and the change rule on series with and without a real rise."""

from __future__ import annotations

import json
from datetime import date, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.history.load import connect, list_nights
from service.history.trends import change_rule, permutation_p_rise, weekly
from tests.history import HistoryDb, at

FIRST = date(2026, 9, 1)
STEADY = [2.0, 3.0, 4.0, 3.0, 3.0, 2.0, 4.0]  # mean 3


def _night(i: int, *, spasms: float, index: float = 10.0, awakenings: float = 3.0,
           intensity: float | None = 20.0, efficiency: float = 85.0) -> dict[str, Any]:  # fmt: skip
    """A ``list_nights`` row for the i-th night after FIRST with the given summary figures."""
    d = (FIRST + timedelta(days=i)).isoformat()
    return {
        "id": f"n{i}",
        "night_date": d,
        "started_at": f"{d}T22:00:00.000Z",
        "kind": "night",
        "summary": {
            "movement_index_per_h": index,
            "spasms": {"count": spasms, "mean_intensity": intensity if spasms else None},
            "awakenings": awakenings,
            "efficiency_pct": efficiency,
        },
    }


def _series(baseline: list[float], recent: list[float], **kw: Any) -> list[dict[str, Any]]:
    """Nights with these spasm counts, oldest first in the arguments, newest first in the list."""
    values = baseline + recent
    return [_night(i, spasms=v, **kw) for i, v in enumerate(values)][::-1]


def test_a_real_rise_in_spasms_is_flagged_with_a_notice_not_a_diagnosis() -> None:
    nights = _series(STEADY * 4, [5.0, 6.0, 7.0, 6.0, 5.0, 6.0, 7.0])
    report = change_rule(nights)
    assert report.enough_nights and report.flagged
    by_name = {m.name: m for m in report.metrics}
    sp = by_name["spasms_per_night"]
    assert sp.flagged and sp.baseline_mean == 3.0 and sp.recent_mean == 6.0
    assert sp.relative_change == 1.0
    assert sp.p_value is not None and sp.p_value < 0.001
    assert (sp.n_recent, sp.n_baseline) == (7, 28)
    # the other metrics did not move
    assert not any(m.flagged for m in report.metrics if m.name != "spasms_per_night")
    assert report.message == (
        "Spasms per night rose from 3.0 to 6.0 over the last 7 nights compared with the 28 before. "
        "Consider mentioning this to your doctor."
    )
    assert "diagnos" not in report.message.lower()
    assert json.loads(json.dumps(report.as_dict()))["metrics"][1]["name"] == "spasms_per_night"


def test_no_rise_is_not_flagged() -> None:
    report = change_rule(_series(STEADY * 4, STEADY))
    assert report.enough_nights and not report.flagged
    sp = next(m for m in report.metrics if m.name == "spasms_per_night")
    assert sp.p_value is not None and sp.p_value > 0.3
    assert report.message.startswith("No sustained rise")


def test_a_fall_is_not_a_rise() -> None:
    report = change_rule(_series(STEADY * 4, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    assert not report.flagged
    sp = next(m for m in report.metrics if m.name == "spasms_per_night")
    assert sp.p_value is not None and sp.p_value > 0.9


def test_a_significant_but_small_rise_is_not_flagged() -> None:
    base = [10.0, 10.1, 9.9, 10.0, 10.1, 9.9, 10.0] * 4
    report = change_rule(_series(base, [11.0, 11.1, 10.9, 11.0, 11.1, 10.9, 11.0]))  # +10 %
    sp = next(m for m in report.metrics if m.name == "spasms_per_night")
    assert sp.p_value is not None and sp.p_value < 0.001
    assert sp.relative_change == pytest.approx(0.1, abs=0.01)
    assert not sp.flagged and not report.flagged
    assert change_rule(_series(base, [11.0, 11.1, 10.9, 11.0, 11.1, 10.9, 11.0]), min_rise=0.05).flagged


def test_too_few_nights_is_never_flagged_even_with_a_rise() -> None:
    report = change_rule(_series(STEADY, [9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]))
    assert not report.enough_nights and not report.flagged
    assert (report.recent_nights, report.baseline_nights) == (7, 7)
    assert all(m.p_value is None for m in report.metrics)
    assert report.message.startswith("Not enough nights yet")
    assert "7 recent and 7 earlier" in report.message


def test_a_rise_in_spasm_intensity_and_in_awakenings_is_flagged() -> None:
    old = [_night(i, spasms=3.0, intensity=20.0 + (i % 3), awakenings=2.0 + i % 2) for i in range(28)]
    new = [_night(28 + i, spasms=3.0, intensity=35.0 + (i % 3), awakenings=5.0 + i % 2) for i in range(7)]
    report = change_rule((old + new)[::-1])
    flagged = {m.name for m in report.metrics if m.flagged}
    assert flagged == {"mean_spasm_intensity", "awakenings_per_night"}
    assert "The mean spasm intensity rose from 21.0 to 35.9" in report.message
    assert "Awakenings per night rose" in report.message


def test_only_the_nights_before_the_recent_ones_form_the_baseline() -> None:
    # 40 old nights at 20 spasms (outside the baseline window), 28 baseline at 3, 7 recent at 6
    nights = _series([20.0] * 40 + STEADY * 4, [5.0, 6.0, 7.0, 6.0, 5.0, 6.0, 7.0])
    sp = next(m for m in change_rule(nights).metrics if m.name == "spasms_per_night")
    assert sp.baseline_mean == 3.0 and sp.flagged


def test_nights_without_a_summary_are_left_out() -> None:
    nights = _series(STEADY * 4, [6.0] * 7)
    nights.insert(0, {"id": "x", "night_date": "2027-01-01", "started_at": "2027-01-01T22:00:00.000Z",
                      "summary": None})  # fmt: skip
    report = change_rule(nights)
    assert report.recent_nights == 7 and "2027-01-01" not in report.recent_dates


def test_the_same_nights_and_seed_give_the_same_p_values() -> None:
    rng = np.random.default_rng(5)
    nights = _series(list(rng.poisson(3, 28).astype(float)), list(rng.poisson(4, 7).astype(float)))
    a = change_rule(nights, seed=3).as_dict()
    b = change_rule(nights, seed=3).as_dict()
    assert a == b


def test_permutation_p_matches_the_exact_enumeration() -> None:
    recent = [4.0, 6.0, 5.0]
    baseline = [1.0, 3.0, 2.0, 5.0, 4.0]
    pooled = recent + baseline
    observed = np.mean(recent) - np.mean(baseline)
    splits = list(combinations(range(len(pooled)), len(recent)))
    hits = 0
    for idx in splits:
        r = [pooled[i] for i in idx]
        b = [pooled[i] for i in range(len(pooled)) if i not in idx]
        hits += np.mean(r) - np.mean(b) >= observed - 1e-12
    exact = hits / len(splits)
    assert permutation_p_rise(recent, baseline, n_perm=40000, seed=1) == pytest.approx(exact, abs=0.01)


def test_permutation_p_holds_its_level_when_nothing_changed() -> None:
    rng = np.random.default_rng(11)
    ps = [permutation_p_rise(rng.poisson(3, 7), rng.poisson(3, 28), n_perm=499, seed=k) for k in range(300)]
    assert np.mean(np.array(ps) < 0.05) <= 0.08


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        change_rule([], alpha=1.5)
    with pytest.raises(ValueError, match="recent"):
        change_rule([], recent=0)


def test_weekly_groups_by_iso_week() -> None:
    # 2026-11-16 is a Monday (ISO week 47); 2026-11-22 its Sunday; 2026-11-23 starts week 48.
    def night(
        d: str, spasms: float, intensity: float | None, index: float, aw: float, eff: float
    ) -> dict[str, Any]:
        return {
            "id": d,
            "night_date": d,
            "started_at": f"{d}T22:00:00.000Z",
            "summary": {
                "movement_index_per_h": index,
                "spasms": {"count": spasms, "mean_intensity": intensity},
                "awakenings": aw,
                "efficiency_pct": eff,
            },
        }

    nights = [
        night("2026-11-23", 1, 50.0, 4.0, 1, 90.0),
        night("2026-11-22", 3, 10.0, 10.0, 2, 80.0),
        night("2026-11-16", 1, 30.0, 20.0, 4, 70.0),
        night("2026-11-18", 0, None, 30.0, 3, 75.0),
        {"id": "x", "night_date": "2026-11-17", "started_at": "2026-11-17T22:00:00.000Z", "summary": None},
    ]
    rows = weekly(nights)
    assert [r["week"] for r in rows] == ["2026-W47", "2026-W48"]
    w47 = rows[0]
    assert w47["week_start"] == "2026-11-16"
    assert w47["nights"] == 3
    assert w47["mean_movement_index_per_h"] == 20.0
    assert w47["spasms_per_night"] == round(4 / 3, 2)
    assert w47["mean_spasm_intensity"] == 15.0  # (3 x 10 + 1 x 30) / 4 spasms
    assert w47["awakenings_per_night"] == 3.0
    assert w47["mean_efficiency_pct"] == 75.0
    assert rows[1]["nights"] == 1 and rows[1]["mean_spasm_intensity"] == 50.0


def test_change_rule_on_summaries_stored_in_the_database(tmp_path: Path) -> None:
    db = HistoryDb(tmp_path / "b.sqlite3")
    values = STEADY * 4 + [6.0] * 7
    for i, v in enumerate(values):
        n = _night(i, spasms=v)
        ended = at(n["started_at"], 8 * 3600)
        db.night(n["id"], n["started_at"], ended, night_date=n["night_date"], summary=n["summary"])
    nap = _night(0, spasms=50.0)["summary"]
    db.night("nap", "2026-12-20T13:00:00.000Z", "2026-12-20T14:00:00.000Z", kind="nap", summary=nap)
    db.close()
    conn = connect(tmp_path / "b.sqlite3")
    report = change_rule(list_nights(conn))
    conn.close()
    assert report.flagged
    assert report.recent_dates[-1] == (FIRST + timedelta(days=len(values) - 1)).isoformat()
