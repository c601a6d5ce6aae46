"""Nights with a tag against nights without: known differences, no difference, too few nights."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.history.compare import bootstrap_diff_ci, compare_tags, tag_key
from service.history.load import connect, list_nights, tags_by_date
from service.history.user_data import add_tag
from tests.history import HistoryDb, at

FIRST = date(2026, 9, 1)


def _night(i: int, spasms: float, index: float = 10.0, awakenings: float = 2.0) -> dict[str, Any]:
    d = (FIRST + timedelta(days=i)).isoformat()
    return {
        "id": f"n{i}",
        "night_date": d,
        "started_at": f"{d}T22:00:00.000Z",
        "summary": {
            "movement_index_per_h": index,
            "spasms": {"count": spasms, "mean_intensity": None},
            "awakenings": awakenings,
        },
    }


def _tags(dates: list[str], tag: str = "heat", detail: str = "") -> dict[str, list[dict[str, Any]]]:
    return {d: [{"id": k, "tag": tag, "detail": detail, "at_local": None}] for k, d in enumerate(dates)}


def _by_metric(comp: Any) -> dict[str, Any]:
    return {m.name: m for m in comp.metrics}


def test_a_known_difference_is_measured_and_its_ci_excludes_zero() -> None:
    without = [3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 4.0]  # mean 4
    with_ = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 2.0]  # mean 2
    nights = [_night(i, v) for i, v in enumerate(without + with_)]
    tagged = [n["night_date"] for n in nights[10:]]
    (comp,) = compare_tags(nights, _tags(tagged))
    assert comp.key == "heat" and comp.enough
    assert (comp.n_with, comp.n_without) == (10, 10)
    sp = _by_metric(comp)["spasms_per_night"]
    assert (sp.mean_with, sp.mean_without, sp.difference) == (2.0, 4.0, -2.0)
    assert sp.ci_low is not None and sp.ci_high is not None
    assert sp.ci_low < -2.0 < sp.ci_high < 0.0
    # the metrics the tag did not change: no difference, CI is a point at 0
    mi = _by_metric(comp)["movement_index_per_h"]
    assert mi.difference == 0.0 and mi.ci_low == 0.0 and mi.ci_high == 0.0


def test_no_difference_gives_a_ci_that_covers_zero() -> None:
    values = [3.0, 4.0, 5.0, 3.0, 6.0, 2.0, 4.0, 5.0]
    nights = [_night(i, v) for i, v in enumerate(values + values)]
    (comp,) = compare_tags(nights, _tags([n["night_date"] for n in nights[8:]]))
    sp = _by_metric(comp)["spasms_per_night"]
    assert sp.difference == 0.0
    assert sp.ci_low is not None and sp.ci_high is not None
    assert sp.ci_low < 0.0 < sp.ci_high


def test_the_bootstrap_ci_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2)
    true_diff = 1.5
    hits = 0
    reps = 200
    for k in range(reps):
        a = rng.normal(5.0 + true_diff, 1.0, 20)
        b = rng.normal(5.0, 1.0, 25)
        lo, hi = bootstrap_diff_ci(a, b, n_boot=1000, seed=k)
        hits += lo <= true_diff <= hi
    assert 0.88 <= hits / reps <= 0.99


def test_too_few_tagged_nights_gives_the_counts_and_no_difference() -> None:
    nights = [_night(i, float(i % 4)) for i in range(15)]
    (comp,) = compare_tags(nights, _tags([n["night_date"] for n in nights[:3]], "caffeine"))
    assert not comp.enough
    assert comp.message == "not enough nights yet (3 with, 12 without; need 5 each)"
    sp = _by_metric(comp)["spasms_per_night"]
    assert sp.difference is None and sp.ci_low is None and sp.ci_high is None
    assert sp.mean_with == 1.0  # (0 + 1 + 2) / 3: the means are still shown


def test_medication_and_custom_tags_are_keyed_by_their_detail() -> None:
    nights = [_night(i, 1.0) for i in range(6)]
    tags = {
        nights[0]["night_date"]: [
            {"id": 1, "tag": "medication", "detail": "Baclofen", "at_local": "21:00"},
            {"id": 2, "tag": "custom", "detail": "warm bath", "at_local": None},
        ],
        nights[1]["night_date"]: [
            {"id": 3, "tag": "medication", "detail": "baclofen", "at_local": None},
            {"id": 4, "tag": "medication", "detail": "gabapentin", "at_local": None},
        ],
    }
    comps = {c.key: c for c in compare_tags(nights, tags)}
    assert sorted(comps) == ["custom:warm bath", "medication:baclofen", "medication:gabapentin"]
    assert comps["medication:baclofen"].n_with == 2
    assert comps["medication:baclofen"].tag == "medication"
    assert comps["medication:gabapentin"].n_with == 1
    assert tag_key("heat", "pad") == "heat"


def test_results_are_reproducible_and_json() -> None:
    rng = np.random.default_rng(0)
    nights = [_night(i, float(rng.poisson(3)), float(rng.normal(10, 2))) for i in range(30)]
    tags = _tags([n["night_date"] for n in nights[::3]])
    a = [c.as_dict() for c in compare_tags(nights, tags, seed=4)]
    b = [c.as_dict() for c in compare_tags(nights, tags, seed=4)]
    assert a == b
    assert json.loads(json.dumps(a)) == a


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric 'snoring'"):
        compare_tags([], {}, metrics=("snoring",))


def test_compare_on_nights_and_tags_read_from_the_database(tmp_path: Path) -> None:
    db = HistoryDb(tmp_path / "b.sqlite3")
    for i in range(12):
        n = _night(i, 6.0 if i % 2 else 2.0, awakenings=float(i % 3))
        ended = at(n["started_at"], 8 * 3600)
        db.night(n["id"], n["started_at"], ended, night_date=n["night_date"], summary=n["summary"])
    db.night("bare", "2026-12-01T22:00:00.000Z", "2026-12-02T06:00:00.000Z")  # no summary: left out
    db.close()
    conn = connect(tmp_path / "b.sqlite3", readonly=False)
    for i in range(1, 12, 2):
        add_tag(conn, (FIRST + timedelta(days=i)).isoformat(), "late_exercise", source="test")
    (comp,) = compare_tags(list_nights(conn), tags_by_date(conn))
    conn.close()
    assert (comp.n_with, comp.n_without) == (6, 6)
    sp = _by_metric(comp)["spasms_per_night"]
    assert sp.difference == 4.0 and sp.ci_low == 4.0 and sp.ci_high == 4.0
