"""Nights with a tag against nights without it: mean difference per metric with a bootstrap 95 % CI.

For each tag seen (``medication`` and ``custom`` tags keyed by their detail as well, e.g.
``medication:baclofen``, lower-cased so "Baclofen" and "baclofen" are one), the nights with a
summary split into those tagged and the rest ("without" includes nights with other tags).
Per metric: the mean with, the mean without, their difference (with minus without) and a
percentile bootstrap 95 % confidence interval: both groups are resampled with replacement,
``n_boot`` times, and the 2.5th and 97.5th percentiles of the resampled differences are the
interval. Seeded per tag, so a result is reproducible and does not depend on the other tags.
An observational comparison, not a trial: nights differ in more than the tag.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from service.history.trends import METRICS, metric_value, usable_nights

KEYED_BY_DETAIL = ("medication", "custom")


def tag_key(tag: str, detail: str = "") -> str:
    """The comparison key of a tag: ``heat``, or ``medication:baclofen`` for detailed tags."""
    if tag in KEYED_BY_DETAIL and detail.strip():
        return f"{tag}:{detail.strip().lower()}"
    return tag


@dataclass
class MetricDifference:
    """One metric of a tag comparison; difference and CI are None below the minimum nights."""

    name: str
    mean_with: float | None
    mean_without: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    n_with: int
    n_without: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class TagComparison:
    """Nights with ``key`` against nights without it."""

    key: str
    tag: str
    detail: str
    n_with: int
    n_without: int
    enough: bool
    message: str
    metrics: list[MetricDifference] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (metrics as dicts)."""
        return {
            "key": self.key,
            "tag": self.tag,
            "detail": self.detail,
            "n_with": self.n_with,
            "n_without": self.n_without,
            "enough": self.enough,
            "message": self.message,
            "metrics": [m.as_dict() for m in self.metrics],
        }


def bootstrap_diff_ci(
    with_values: ArrayLike, without_values: ArrayLike, *, n_boot: int, seed: int | Sequence[int]
) -> tuple[float, float]:
    """Percentile bootstrap 95 % CI of mean(with) - mean(without), resampling each group."""
    a = np.asarray(with_values, dtype=float)
    b = np.asarray(without_values, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("both groups need at least one value")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(n_boot, a.size))
    ib = rng.integers(0, b.size, size=(n_boot, b.size))
    diffs = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def compare_tags(
    nights: list[dict[str, Any]],
    tags_by_date: dict[str, list[dict[str, Any]]],
    *,
    metrics: Sequence[str] = ("spasms_per_night", "movement_index_per_h", "awakenings"),
    min_nights: int = 5,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[TagComparison]:
    """One :class:`TagComparison` per tag key seen on any date, sorted by key.

    ``nights`` are ``list_nights`` rows; only finished ones with a summary and a ``night_date``
    take part (a night in progress is left out until it ends). ``enough`` needs at least
    ``min_nights`` nights with and without the tag; below that the message says so ("not
    enough nights yet (3 with, 12 without; need 5 each)") and only the means are given. A
    metric a night did not measure (None) leaves that night out of that metric. Unknown metric
    names raise ValueError.
    """
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    usable = usable_nights(nights)
    keys_by_date: dict[str, set[str]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for night_date, tags in tags_by_date.items():
        for t in tags:
            key = tag_key(str(t["tag"]), str(t.get("detail") or ""))
            keys_by_date.setdefault(night_date, set()).add(key)
            tag = str(t["tag"])
            labels.setdefault(
                key, (tag, str(t.get("detail") or "").strip() if tag in KEYED_BY_DETAIL else "")
            )
    out = []
    for key in sorted(labels):
        with_n = [n for n in usable if key in keys_by_date.get(str(n["night_date"]), set())]
        without_n = [n for n in usable if key not in keys_by_date.get(str(n["night_date"]), set())]
        enough = len(with_n) >= min_nights and len(without_n) >= min_nights
        if enough:
            message = f"{len(with_n)} nights with, {len(without_n)} without"
        else:
            counts = f"{len(with_n)} with, {len(without_n)} without"
            message = f"not enough nights yet ({counts}; need {min_nights} each)"
        comp = TagComparison(
            key, labels[key][0], labels[key][1], len(with_n), len(without_n), enough, message
        )
        for name in metrics:
            a = [v for v in (metric_value(n, name) for n in with_n) if v is not None]
            b = [v for v in (metric_value(n, name) for n in without_n) if v is not None]
            mean_a = fmean(a) if a else None
            mean_b = fmean(b) if b else None
            diff = lo = hi = None
            if len(a) >= min_nights and len(b) >= min_nights and mean_a is not None and mean_b is not None:
                diff = mean_a - mean_b
                lo, hi = bootstrap_diff_ci(
                    a, b, n_boot=n_boot, seed=(seed, zlib.crc32(f"{key}/{name}".encode()))
                )
            comp.metrics.append(
                MetricDifference(name, _r(mean_a), _r(mean_b), _r(diff), _r(lo), _r(hi), len(a), len(b))
            )
        out.append(comp)
    return out
