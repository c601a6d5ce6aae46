"""Trends over many nights: weekly aggregates and the rule that notices a sustained rise.

Input is the list of nights from ``service.history.load.list_nights`` (each with its parsed
``summary`` from ``summarize_night``); nights without a summary, and a night still in progress
(no ``ended_at`` yet), are skipped. Pure numpy.

The change rule compares the last ``recent`` nights with the ``baseline`` nights before
them, one metric at a time, with a one-sided permutation test on the difference in means
(recent minus baseline): the p value is the share of random relabellings of the pooled
nights into "recent" and "baseline" whose difference is at least the one observed, counting
the observed split itself, ``(1 + hits) / (1 + n_perm)``. A metric is flagged only with enough
nights, ``p < alpha`` and a relative rise of at least ``min_rise``. The result is a notice
suggesting a talk with a doctor, never a diagnosis. Details in ``docs/nights.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from statistics import fmean
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from service.history.load import in_progress

logger = logging.getLogger(__name__)


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _spasm_count(s: dict[str, Any]) -> float | None:
    spasms = s.get("spasms")
    if isinstance(spasms, dict) and "count" in spasms:
        return _num(spasms["count"])
    counts = s.get("counts")
    return _num(counts.get("spasm", 0)) if isinstance(counts, dict) else None


def _spasm_intensity(s: dict[str, Any]) -> float | None:
    spasms = s.get("spasms")
    return _num(spasms.get("mean_intensity")) if isinstance(spasms, dict) else None


def _awakenings(s: dict[str, Any]) -> float | None:
    if "awakenings" in s:
        return _num(s["awakenings"])
    counts = s.get("counts")
    return _num(counts.get("awakening", 0)) if isinstance(counts, dict) else None


METRICS: Final[dict[str, Callable[[dict[str, Any]], float | None]]] = {
    "movement_index_per_h": lambda s: _num(s.get("movement_index_per_h")),
    "spasms_per_night": _spasm_count,
    "mean_spasm_intensity": _spasm_intensity,
    "awakenings": _awakenings,
    "awakenings_per_night": _awakenings,
    "efficiency_pct": lambda s: _num(s.get("efficiency_pct")),
    "total_sleep_min": lambda s: _num(s.get("total_sleep_min")),
    "waso_min": lambda s: _num(s.get("waso_min")),
    "movements": lambda s: _num(s.get("movements")),
}
"""How each named metric is read from one night's summary (None: not measured that night).

``mean_spasm_intensity`` is None on a night without spasms, ``movement_index_per_h`` on a
night without sleep."""

METRIC_PHRASES: Final = {
    "movement_index_per_h": "The bed-sensor movement index (movements per hour of sleep)",
    "spasms_per_night": "Spasms per night",
    "mean_spasm_intensity": "The mean spasm intensity",
    "awakenings_per_night": "Awakenings per night",
    "awakenings": "Awakenings per night",
}

CHANGE_METRICS: Final = (
    "movement_index_per_h",
    "spasms_per_night",
    "awakenings_per_night",
    "mean_spasm_intensity",
)
"""What the change rule watches: three frequencies and one intensity."""


def metric_value(night: dict[str, Any], name: str) -> float | None:
    """The metric ``name`` (a key of :data:`METRICS`) of a ``list_nights`` row; None if unknown
    or while the night is still in progress (:func:`~service.history.load.in_progress`)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    summary = night.get("summary")
    if not isinstance(summary, dict) or in_progress(night):
        return None
    return METRICS[name](summary)


def usable_nights(nights: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nights trends and comparisons count: finished, with a summary and a night date."""
    return [
        n for n in nights if isinstance(n.get("summary"), dict) and n.get("night_date") and not in_progress(n)
    ]


def _with_summary(nights: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished nights with a summary and a night date, oldest first (by date, then start time)."""
    kept = usable_nights(nights)
    return sorted(kept, key=lambda n: (str(n["night_date"]), str(n.get("started_at") or "")))


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return fmean(xs) if xs else None


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def weekly(nights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nights aggregated by the ISO week of their ``night_date``, oldest week first.

    Each row: ``week`` (``2026-W47``), ``week_start`` (its Monday), ``nights`` (with a
    summary), ``mean_movement_index_per_h``, ``spasms_per_night``, ``mean_spasm_intensity``
    (over all the week's spasms: each night's mean weighted by its spasm count),
    ``awakenings_per_night``, ``mean_efficiency_pct``. A figure no night measured is None.
    """
    weeks: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for n in _with_summary(nights):
        iso = date.fromisoformat(str(n["night_date"])).isocalendar()
        weeks.setdefault((iso.year, iso.week), []).append(n)
    out = []
    for (year, week), group in sorted(weeks.items()):
        spasm_n = [metric_value(n, "spasms_per_night") for n in group]
        spasm_i = [metric_value(n, "mean_spasm_intensity") for n in group]
        pairs = [(c, i) for c, i in zip(spasm_n, spasm_i, strict=True) if c and i is not None]
        total = sum(c for c, _ in pairs)
        out.append(
            {
                "week": f"{year}-W{week:02d}",
                "week_start": date.fromisocalendar(year, week, 1).isoformat(),
                "nights": len(group),
                "mean_movement_index_per_h": _r(
                    _mean([metric_value(n, "movement_index_per_h") for n in group])
                ),
                "spasms_per_night": _r(_mean(spasm_n)),
                "mean_spasm_intensity": _r(sum(c * i for c, i in pairs) / total) if total else None,
                "awakenings_per_night": _r(_mean([metric_value(n, "awakenings_per_night") for n in group])),
                "mean_efficiency_pct": _r(_mean([metric_value(n, "efficiency_pct") for n in group]), 1),
            }
        )
    return out


def permutation_p_rise(recent: ArrayLike, baseline: ArrayLike, *, n_perm: int, seed: int) -> float:
    """One-sided permutation p value for mean(recent) > mean(baseline).

    ``(1 + k) / (1 + n_perm)`` where ``k`` of ``n_perm`` random splits of the pooled values
    (same group sizes, seeded) give a difference in means at least the observed one. Never 0,
    so it is a valid (slightly conservative) p value.
    """
    a = np.asarray(recent, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("both groups need at least one value")
    pooled = np.concatenate((a, b))
    observed = a.mean() - b.mean()
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(pooled, (n_perm, 1)), axis=1)
    diffs = perms[:, : a.size].mean(axis=1) - perms[:, a.size :].mean(axis=1)
    # A tolerance so ties (common with counts) are not lost to floating-point rounding.
    hits = int((diffs >= observed - 1e-12 * max(1.0, abs(observed))).sum())
    return (1 + hits) / (1 + n_perm)


@dataclass
class MetricChange:
    """One metric in the change rule: recent vs baseline means, rise, p value, verdict."""

    name: str
    recent_mean: float | None
    baseline_mean: float | None
    relative_change: float | None
    p_value: float | None
    flagged: bool
    n_recent: int = 0
    n_baseline: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass
class ChangeReport:
    """The change rule's verdict over the latest nights (see :func:`change_rule`)."""

    flagged: bool
    message: str
    metrics: list[MetricChange] = field(default_factory=list)
    enough_nights: bool = False
    recent_nights: int = 0
    baseline_nights: int = 0
    recent_dates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (metrics as dicts)."""
        return {
            "flagged": self.flagged,
            "message": self.message,
            "enough_nights": self.enough_nights,
            "recent_nights": self.recent_nights,
            "baseline_nights": self.baseline_nights,
            "recent_dates": list(self.recent_dates),
            "metrics": [m.as_dict() for m in self.metrics],
        }


def change_rule(
    nights: list[dict[str, Any]],
    *,
    recent: int = 7,
    baseline: int = 28,
    min_recent: int = 5,
    min_baseline: int = 14,
    alpha: float = 0.05,
    min_rise: float = 0.25,
    seed: int = 0,
    n_perm: int = 9999,
    metrics: Sequence[str] = CHANGE_METRICS,
) -> ChangeReport:
    """Has any watched metric risen over the last ``recent`` nights, compared with the
    ``baseline`` nights before them?

    Nights are ordered by ``night_date`` (those without a summary are left out). Enough
    nights means at least ``min_recent`` recent and ``min_baseline`` baseline nights; a metric
    measured on fewer nights than that (spasm intensity needs nights with spasms) gets no
    test. A metric is flagged when its permutation p value (:func:`permutation_p_rise`) is
    below ``alpha`` AND its relative rise ``(recent - baseline) / baseline`` is at least
    ``min_rise`` (with a baseline mean of 0, any rise counts and ``relative_change`` is None).
    Reproducible: the same nights and ``seed`` give the same p values.
    """
    if recent < 1 or baseline < 1:
        raise ValueError(f"recent and baseline must be at least 1, got {recent} and {baseline}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    ordered = _with_summary(nights)
    rec = ordered[-recent:] if ordered else []
    base = ordered[max(0, len(ordered) - recent - baseline) : max(0, len(ordered) - recent)]
    enough = len(rec) >= min_recent and len(base) >= min_baseline
    report = ChangeReport(
        flagged=False,
        message="",
        enough_nights=enough,
        recent_nights=len(rec),
        baseline_nights=len(base),
        recent_dates=[str(n["night_date"]) for n in rec],
    )
    for k, name in enumerate(metrics):
        r_vals = [v for v in (metric_value(n, name) for n in rec) if v is not None]
        b_vals = [v for v in (metric_value(n, name) for n in base) if v is not None]
        r_mean = fmean(r_vals) if r_vals else None
        b_mean = fmean(b_vals) if b_vals else None
        rel = None
        if r_mean is not None and b_mean is not None and b_mean > 0:
            rel = (r_mean - b_mean) / b_mean
        p = None
        flagged = False
        if enough and len(r_vals) >= min_recent and len(b_vals) >= min_baseline:
            assert r_mean is not None and b_mean is not None
            p = permutation_p_rise(r_vals, b_vals, n_perm=n_perm, seed=seed + k)
            rise_ok = rel >= min_rise if rel is not None else r_mean > b_mean
            flagged = p < alpha and rise_ok
        report.metrics.append(
            MetricChange(
                name=name,
                recent_mean=_r(r_mean),
                baseline_mean=_r(b_mean),
                relative_change=_r(rel, 3),
                p_value=_r(p, 4),
                flagged=flagged,
                n_recent=len(r_vals),
                n_baseline=len(b_vals),
            )
        )
    report.flagged = any(m.flagged for m in report.metrics)
    report.message = _message(report, min_recent, min_baseline)
    return report


def _message(report: ChangeReport, min_recent: int, min_baseline: int) -> str:
    if not report.enough_nights:
        return (
            f"Not enough nights yet to look for a change: {report.recent_nights} recent and "
            f"{report.baseline_nights} earlier nights with a summary; the rule needs {min_recent} "
            f"and {min_baseline}."
        )
    span = f"over the last {report.recent_nights} nights compared with the {report.baseline_nights} before"
    if not report.flagged:
        return f"No sustained rise in movements, spasms or awakenings {span}."
    parts = [
        f"{METRIC_PHRASES.get(m.name, m.name)} rose from {m.baseline_mean:.1f} to {m.recent_mean:.1f} {span}."
        for m in report.metrics
        if m.flagged and m.baseline_mean is not None and m.recent_mean is not None
    ]
    return " ".join([*parts, "Consider mentioning this to your doctor."])
