"""A finished (or running) night's figures from its stored rows: sleep, counts, PLM intervals, spasms, hours.

Pure computation over a :class:`~service.history.load.NightData`; no I/O. Every definition
is written out in ``docs/nights.md``; the short form:

- Relabels apply first: an event the user relabelled ``not_an_event`` is dropped, one
  relabelled to another type counts as that type (its ``label`` wins over ``event_type``).
- Sleep figures come from the 30-s epochs (``asleep``, ``in_bed``). Time in bed is the time of
  the in-bed epochs. Sleep onset is the first epoch of the first run of ``onset_epochs``
  consecutive asleep epochs; the final awakening is the end of the last asleep epoch; the
  sleep period lies between them. Total sleep time and wake after sleep onset (WASO) are the
  asleep and the awake epochs inside the sleep period; efficiency is total sleep / time in
  bed. Sleep onset latency runs from the first in-bed epoch to sleep onset.
- The movement index is a *bed-sensor movement index*: movements (jerks, limb movements,
  spasms, large movements) starting inside the sleep period, per hour of total sleep time.
  It is not a PLM index (no leg EMG, no arousal or respiratory exclusions).

Nights without epochs give None for the sleep figures (never a division by zero).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from itertools import pairwise
from statistics import fmean
from typing import Any, Final

import numpy as np

from service.detect.types import EVENT_TYPES, MOVEMENT_TYPES
from service.history.load import NightData
from service.history.user_data import NOT_AN_EVENT
from service.timefmt import iso_utc, parse_iso_utc

SUMMARY_VERSION: Final = 1
"""Bumped whenever a key's meaning changes, so stored summaries can be recomputed."""

ONSET_EPOCHS: Final = 2
"""Consecutive asleep epochs that mark sleep onset (the detector's ``sleep_bout_epochs``)."""

CAUSE_WINDOW_S: Final = 30.0
"""A movement starting up to this long before an awakening (or in its first epoch) preceded it."""

DEFAULT_EPOCH_S: Final = 30.0

PLM_INTERVAL_EDGES_S: Final = tuple(float(x) for x in range(0, 95, 5))
"""Histogram bins of onset-to-onset intervals inside PLM series: 0-5, 5-10, ..., 85-90 s."""


def effective_type(event: dict[str, Any]) -> str | None:
    """The type an event counts as: the user's relabel if any, None if relabelled not an event."""
    label = event.get("label")
    if label == NOT_AN_EVENT:
        return None
    return str(label) if label else str(event["event_type"])


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(float(x), digits)


#: Parsed times kept (about 200 bytes each with the key: at most 1.6 MiB). Enough for one night's
#: events and epochs; the daemon and the dashboard run for months, so the cache must not keep every
#: night's times (65,536 entries grew the daemon by about 0.25 MiB a night, up to 13 MiB).
TIME_CACHE_SIZE = 8192


@lru_cache(maxsize=TIME_CACHE_SIZE)
def _t(text: str) -> datetime:
    """Parse a stored UTC time (cached: the same times are looked up many times per night)."""
    return parse_iso_utc(text)


def sleep_figures(epochs: Sequence[dict[str, Any]], *, onset_epochs: int = ONSET_EPOCHS) -> dict[str, Any]:
    """Time in bed, onset latency, total sleep, WASO, efficiency (minutes / percent) from epochs.

    Also the sleep period's bounds as datetimes (``_onset``, ``_offset``; None when the sleeper
    never fell asleep) and ``wake_bouts``: runs of 2 or more awake epochs inside the sleep
    period. Epochs are taken in the given order; gaps between them count as nothing.
    """
    keys = ("time_in_bed_min", "sleep_onset_latency_min", "total_sleep_min", "efficiency_pct", "waso_min")
    out: dict[str, Any] = dict.fromkeys(keys)
    out.update(sleep_onset_at=None, final_awakening_at=None, wake_bouts=None, _onset=None, _offset=None)
    if not epochs:
        return out
    asleep = np.array([bool(e["asleep"]) for e in epochs])
    in_bed = np.array([bool(e["in_bed"]) for e in epochs])
    dur_s = np.array([float(e.get("duration_s") or DEFAULT_EPOCH_S) for e in epochs])
    starts = [_t(e["start_at"]) for e in epochs]
    tib_min = float(dur_s[in_bed].sum()) / 60.0
    out["time_in_bed_min"] = _round(tib_min)
    n = max(1, onset_epochs)
    onset = next((i for i in range(asleep.size - n + 1) if asleep[i : i + n].all()), None)
    if onset is None:
        out.update(
            total_sleep_min=0.0, waso_min=0.0, wake_bouts=0, efficiency_pct=0.0 if tib_min > 0 else None
        )
        return out
    last = int(np.flatnonzero(asleep)[-1])
    period = slice(onset, last + 1)
    tst_min = float(dur_s[period][asleep[period]].sum()) / 60.0
    waso_min = float(dur_s[period][~asleep[period]].sum()) / 60.0
    first_in_bed = int(np.flatnonzero(in_bed)[0]) if in_bed.any() else None
    if first_in_bed is not None:
        latency_s = max(0.0, (starts[onset] - starts[first_in_bed]).total_seconds())
        out["sleep_onset_latency_min"] = _round(latency_s / 60.0)
    offset_t = starts[last] + timedelta(seconds=float(dur_s[last]))
    wake = ~asleep[period]
    bouts = 0
    run = 0
    for w in [*wake.tolist(), False]:
        if w:
            run += 1
        else:
            bouts += run >= 2
            run = 0
    out.update(
        total_sleep_min=_round(tst_min),
        waso_min=_round(waso_min),
        efficiency_pct=_round(100.0 * tst_min / tib_min) if tib_min > 0 else None,
        sleep_onset_at=iso_utc(starts[onset]),
        final_awakening_at=iso_utc(offset_t),
        wake_bouts=bouts,
        _onset=starts[onset],
        _offset=offset_t,
    )
    return out


def plm_intervals(events: Sequence[tuple[str, dict[str, Any]]]) -> list[float]:
    """Onset-to-onset intervals (s) between consecutive limb movements inside each PLM series.

    ``events`` are ``(effective type, event)`` pairs. A limb movement belongs to a series when
    its onset lies within the series' start and end (inclusive).
    """
    onsets = sorted(_t(e["start_at"]) for typ, e in events if typ == "limb_movement")
    out: list[float] = []
    for typ, series in events:
        if typ != "plm_series":
            continue
        lo, hi = _t(series["start_at"]), _t(series["end_at"])
        inside = [t for t in onsets if lo <= t <= hi]
        out += [(b - a).total_seconds() for a, b in pairwise(inside)]
    return out


def interval_histogram(intervals: Sequence[float]) -> dict[str, Any]:
    """Counts of ``intervals`` in :data:`PLM_INTERVAL_EDGES_S` bins (left-closed; the last bin
    includes 90 s); intervals outside 0-90 s are counted in ``outside``."""
    edges = np.array(PLM_INTERVAL_EDGES_S)
    x = np.asarray(intervals, dtype=float)
    counts, _ = np.histogram(x, bins=edges)
    outside = int(((x < edges[0]) | (x > edges[-1])).sum())
    return {"edges_s": list(PLM_INTERVAL_EDGES_S), "counts": [int(c) for c in counts], "outside": outside}


def spasm_stats(spasms: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Count, mean and max intensity and duration of the spasms; None figures when there are none."""
    if not spasms:
        return {
            "count": 0,
            "mean_intensity": None,
            "max_intensity": None,
            "mean_duration_s": None,
            "max_duration_s": None,
        }
    inten = [float(e["intensity"]) for e in spasms]
    dur = [float(e["duration_s"]) for e in spasms]
    return {
        "count": len(spasms),
        "mean_intensity": _round(fmean(inten), 2),
        "max_intensity": _round(max(inten), 2),
        "mean_duration_s": _round(fmean(dur), 2),
        "max_duration_s": _round(max(dur), 2),
    }


def _night_end(data: NightData) -> datetime:
    """The night's end: ``ended_at``, or while it runs the last thing recorded in it."""
    if data.night.get("ended_at"):
        return _t(data.night["ended_at"])
    times = [_t(data.night["started_at"])]
    times += [_t(e["end_at"]) for e in data.events]
    times += [
        _t(e["start_at"]) + timedelta(seconds=float(e.get("duration_s") or DEFAULT_EPOCH_S))
        for e in data.epochs
    ]
    times += [_t(v["t_at"]) for v in data.vitals]
    return max(times)


def events_per_hour(
    typed: Sequence[tuple[str, dict[str, Any]]], start: datetime, end: datetime, tz: tzinfo | None
) -> list[dict[str, Any]]:
    """One row per local clock hour from the hour holding ``start`` up to ``end`` (exclusive).

    ``count`` counts every event (after relabels) starting in the hour, ``movements`` those of
    a movement type. Hours are local clock hours (``tz``, default the system's), given by
    their start in UTC; a DST change simply gives a repeated or missing ``local_hour``.
    """
    local = start.astimezone(tz)
    first = local.replace(minute=0, second=0, microsecond=0).astimezone(start.tzinfo)
    if end < start:
        end = start
    n_hours = max(1, math.ceil((end - first).total_seconds() / 3600))
    hours = [first + timedelta(hours=i) for i in range(n_hours)]
    count = [0] * n_hours
    moves = [0] * n_hours
    for typ, e in typed:
        i = int((_t(e["start_at"]) - first).total_seconds() // 3600)
        if 0 <= i < n_hours:
            count[i] += 1
            moves[i] += typ in MOVEMENT_TYPES
    return [
        {"hour_start": iso_utc(h), "local_hour": h.astimezone(tz).hour, "count": c, "movements": m}
        for h, c, m in zip(hours, count, moves, strict=True)
    ]


def _after_movement(
    awakening: dict[str, Any],
    move_starts: Sequence[datetime],
    by_id: dict[str, str | None],
    window_s: float,
) -> bool:
    """Whether an awakening followed a movement (see :func:`summarize_night`).

    ``move_starts``: the start times of the night's movements (after relabels), sorted.
    """
    cause = awakening.get("cause_id")
    # The named cause counts unless the user said it was not a movement after all.
    if cause and (cause not in by_id or by_id[cause] in MOVEMENT_TYPES):
        return True
    t = _t(awakening["start_at"])
    i = bisect_left(move_starts, t - timedelta(seconds=window_s))
    return i < len(move_starts) and move_starts[i] <= t + timedelta(seconds=DEFAULT_EPOCH_S)


def summarize_night(
    data: NightData,
    *,
    tz: tzinfo | None = None,
    onset_epochs: int = ONSET_EPOCHS,
    cause_window_s: float = CAUSE_WINDOW_S,
) -> dict[str, Any]:
    """The night's summary as a JSON-able dict (keys and definitions in ``docs/nights.md``).

    ``tz`` decides the local clock hours of ``events_per_hour`` (default: the system's local
    time zone). ``awakenings`` counts awakening events; ``awakenings_after_movement`` those
    whose ``cause_id`` names a movement (still a movement after relabels), or, failing that,
    with a movement starting from ``cause_window_s`` (30 s) before to 30 s after the
    awakening's start (its first epoch). Rounding: minutes and percent to 0.1, intensities
    and seconds to 0.01.
    """
    night = data.night
    typed: list[tuple[str, dict[str, Any]]] = []
    by_id: dict[str, str | None] = {}
    for e in data.events:
        typ = effective_type(e)
        by_id[str(e["id"])] = typ
        if typ is not None:
            typed.append((typ, e))
    counts = Counter(typ for typ, _ in typed)
    counts_out = {t: counts.get(t, 0) for t in EVENT_TYPES}
    counts_out.update({t: c for t, c in sorted(counts.items()) if t not in counts_out})
    movements = sum(counts.get(t, 0) for t in MOVEMENT_TYPES)

    sleep = sleep_figures(data.epochs, onset_epochs=onset_epochs)
    onset, offset = sleep.pop("_onset"), sleep.pop("_offset")
    index = None
    if onset is not None and sleep["total_sleep_min"]:
        in_period = sum(
            1 for typ, e in typed if typ in MOVEMENT_TYPES and onset <= _t(e["start_at"]) < offset
        )
        tst_h = sleep["total_sleep_min"] / 60.0
        index = _round(in_period / tst_h, 2)

    awakenings = [e for typ, e in typed if typ == "awakening"]
    move_starts = sorted(_t(e["start_at"]) for typ, e in typed if typ in MOVEMENT_TYPES)
    after_move = sum(_after_movement(a, move_starts, by_id, cause_window_s) for a in awakenings)
    heart = [float(v["heart_bpm"]) for v in data.vitals if v.get("heart_bpm") is not None]
    breath = [float(v["breath_bpm"]) for v in data.vitals if v.get("breath_bpm") is not None]
    labelled = [e for e in data.events if e.get("label")]
    started = _t(night["started_at"])

    return {
        "summary_version": SUMMARY_VERSION,
        "night_id": night["id"],
        "night_date": night.get("night_date"),
        "kind": night.get("kind", "night"),
        "profile": night.get("profile"),
        "started_at": night["started_at"],
        "ended_at": night.get("ended_at"),
        **sleep,
        "awakenings": len(awakenings),
        "awakenings_after_movement": after_move,
        "counts": counts_out,
        "movements": movements,
        "movement_index_per_h": index,
        "plm_series": counts.get("plm_series", 0),
        "plm_interval_histogram": interval_histogram(plm_intervals(typed)),
        "spasms": spasm_stats([e for typ, e in typed if typ == "spasm"]),
        "events_per_hour": events_per_hour(typed, started, _night_end(data), tz),
        "mean_heart_bpm": _round(fmean(heart)) if heart else None,
        "mean_breath_bpm": _round(fmean(breath)) if breath else None,
        "relabelled": sum(1 for e in labelled if e["label"] != e["event_type"]),
        "confirmed": sum(1 for e in labelled if e["label"] == e["event_type"]),
    }
