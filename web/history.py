"""Past nights for the pages and the API: summaries (recomputed, cached), trends and tag comparisons.

Summaries come from ``service.history.summary.summarize_night`` over the stored rows, so the
user's relabels always count; a summary the daemon stored at the end of a night is used as is
when it has the current ``SUMMARY_VERSION`` and the night has no relabels. A night's summary
is cached in this process until its end time, its number of events or its relabels change,
so the Nights and Trends pages stay fast on a Pi after the first visit. The Trends page's
weekly means, change rule and with/without comparisons (bootstrap and permutation tests, most
of the page's time over a year of nights) are cached by their exact inputs: every night's date,
start and metric values, and every tag.

A Night page needs the night's rows and summary on every request (5,000 events take about
140 ms to load and summarise here, seconds on a Pi Zero 2): ``night_view`` keeps them per night
until a cheap stamp query (end time, events, epochs, vitals, annotations, relabels) says the
night changed; the pages' drawings of it are kept by the same stamp (``drawing_cache``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app

from service.history.compare import compare_tags
from service.history.load import NightData, list_nights, load_night, tags_by_date
from service.history.summary import SUMMARY_VERSION, summarize_night
from service.history.trends import METRICS, change_rule, metric_value, weekly

logger = logging.getLogger(__name__)

CACHE_SIZE = 400
"""Summaries kept in memory (about a year of nights and naps)."""

TREND_METRICS: tuple[tuple[str, str], ...] = (
    ("movement_index_per_h", "Movements per hour of sleep"),
    ("spasms_per_night", "Spasms"),
    ("awakenings_per_night", "Awakenings"),
    ("efficiency_pct", "Sleep efficiency %"),
)
"""Per-night metrics drawn on the Trends page, with their chart titles."""

TREND_RANGES: dict[str, int | None] = {"90": 90, "180": 180, "365": 365, "all": None}
"""The Trends page's ``?range=`` choices: the newest N nights, or every night recorded."""

DEFAULT_TREND_RANGE = "90"
"""About three months: enough for the change rule (35 nights) and a season's weekly means."""


class LruCache:
    """The ``size`` most recently used values by key; thread-safe (the dashboard serves from
    several threads)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value kept for ``key``, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class SummaryCache:
    """Summaries by night id, each valid for one (ended_at, events, relabel stamp); thread-safe."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._lru = LruCache(size)

    def get(self, night_id: str, stamp: tuple[Any, ...]) -> dict[str, Any] | None:
        item = self._lru.get(night_id)
        if item is None or item[0] != stamp:
            return None
        summary: dict[str, Any] = item[1]
        return summary

    def put(self, night_id: str, stamp: tuple[Any, ...], summary: dict[str, Any]) -> None:
        self._lru.put(night_id, (stamp, summary))


ANALYSIS_CACHE_SIZE = 8
"""Trend analyses kept in memory (one per range and state of the nights and tags)."""


class AnalysisCache(LruCache):
    """The weekly means, change rule and with/without comparisons of the Trends page, by their exact
    inputs; thread-safe. The bootstrap and permutation tests are most of a year's Trends page time,
    and their inputs change only when a night ends, is relabelled or is tagged."""

    def __init__(self, size: int = ANALYSIS_CACHE_SIZE) -> None:
        super().__init__(size)


NIGHT_VIEWS = 4
"""Nights whose rows and summary are kept in memory (a 5,000-event night is a few MB)."""

DRAWINGS = 16
"""Drawn timelines kept (a night and a zoom window each)."""


@dataclass(frozen=True)
class NightView:
    """A night's rows and its summary, as of ``stamp`` (``night_stamp``)."""

    data: NightData
    summary: dict[str, Any]
    stamp: tuple[Any, ...]


class NightViewCache(LruCache):
    """``NightView`` by night id; thread-safe."""

    def __init__(self, size: int = NIGHT_VIEWS) -> None:
        super().__init__(size)


class DrawingCache(LruCache):
    """Drawn charts by (night id, stamp, window); thread-safe."""

    def __init__(self, size: int = DRAWINGS) -> None:
        super().__init__(size)


_C = TypeVar("_C", "SummaryCache", "AnalysisCache", "NightViewCache", "DrawingCache")


def _app_cache(name: str, kind: type[_C]) -> _C:
    """The app's cache ``name`` (made on first use; one per app, shared by its threads)."""
    cache = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions.setdefault(name, kind())
    assert isinstance(cache, kind)
    return cache


def _analysis_cache() -> AnalysisCache:
    return _app_cache("bedside_trend_analyses", AnalysisCache)


def _analysis_key(nights: list[dict[str, Any]], tags: dict[str, list[dict[str, Any]]]) -> tuple[Any, ...]:
    """Everything ``weekly``, ``change_rule`` and ``compare_tags`` read: per night its date, start,
    whether it has a summary and every metric's value; per tag its date, tag and detail."""
    per_night = tuple(
        (
            n.get("night_date"),
            n.get("started_at"),
            isinstance(n.get("summary"), dict),
            *(metric_value(n, name) for name in METRICS),
        )
        for n in nights
    )
    per_tag = tuple((d, str(t["tag"]), str(t.get("detail") or "")) for d in sorted(tags) for t in tags[d])
    return per_night, per_tag


def drawing_cache() -> DrawingCache:
    """The app's cache of drawn timelines (keys chosen by the caller; include the night's stamp)."""
    return _app_cache("bedside_night_drawings", DrawingCache)


def night_stamp(conn: sqlite3.Connection, night_id: str) -> tuple[Any, ...] | None:
    """What changes when anything shown of a night changes (None for an unknown night): its end
    and summary, and per table of its rows the count and the newest; the relabels' count and time.
    Each part is one indexed query."""
    row = conn.execute("SELECT ended_at, length(summary) FROM nights WHERE id = ?", (night_id,)).fetchone()
    if row is None:
        return None
    parts: list[Any] = [row[0], row[1]]
    for sql in (
        "SELECT COUNT(*), MAX(rowid) FROM events WHERE night_id = ?",
        "SELECT COUNT(*), MAX(start_at) FROM epochs WHERE night_id = ?",
        "SELECT COUNT(*), MAX(t_at) FROM vitals WHERE night_id = ?",
        "SELECT COUNT(*), MAX(rowid) FROM annotations WHERE night_id = ?",
        "SELECT COUNT(*), MAX(r.created_at) FROM relabels r JOIN events e ON e.id = r.event_id"
        " WHERE e.night_id = ?",
    ):
        parts.extend(conn.execute(sql, (night_id,)).fetchone())
    return tuple(parts)


def night_view(conn: sqlite3.Connection, night_id: str) -> NightView | None:
    """The night's rows and summary (``summarize_night``), from memory while its stamp holds."""
    stamp = night_stamp(conn, night_id)
    if stamp is None:
        return None
    cache = _app_cache("bedside_night_views", NightViewCache)
    view = cache.get(night_id)
    if isinstance(view, NightView) and view.stamp == stamp:
        return view
    data = load_night(conn, night_id)
    if data is None:  # deleted between the two queries
        return None
    view = NightView(data, summarize_night(data), stamp)
    cache.put(night_id, view)
    return view


def _cache() -> SummaryCache:
    return _app_cache("bedside_summaries", SummaryCache)


def _stamps(conn: sqlite3.Connection) -> dict[str, tuple[int, int, str | None]]:
    """Per night: (events, relabels, latest relabel time): what invalidates a cached summary."""
    stamps: dict[str, tuple[int, int, str | None]] = {}
    for row in conn.execute("SELECT night_id, COUNT(*) FROM events GROUP BY night_id"):
        stamps[str(row[0])] = (int(row[1]), 0, None)
    for row in conn.execute(
        "SELECT e.night_id, COUNT(*), MAX(r.created_at) FROM relabels r JOIN events e ON e.id = r.event_id"
        " GROUP BY e.night_id"
    ):
        events = stamps.get(str(row[0]), (0, 0, None))[0]
        stamps[str(row[0])] = (events, int(row[1]), row[2])
    return stamps


def _stored_is_current(stored: Any, night: dict[str, Any], stamp: tuple[Any, ...]) -> bool:
    """Whether the summary the daemon stored can be shown as is: same definitions, night over,
    and no relabels (which change the counts) since."""
    return (
        isinstance(stored, dict)
        and stored.get("summary_version") == SUMMARY_VERSION
        and night.get("ended_at") is not None
        and stamp[2] == 0
    )


def nights_with_summaries(
    conn: sqlite3.Connection, *, kind: str | None = "night", limit: int | None = None
) -> list[dict[str, Any]]:
    """``list_nights`` rows, newest first, each with ``summary`` recomputed from its rows (cached)."""
    nights = list_nights(conn, kind=kind, limit=limit)
    stamps = _stamps(conn)
    cache = _cache()
    for night in nights:
        night_id = str(night["id"])
        stamp = (night.get("ended_at"), *stamps.get(night_id, (0, 0, None)))
        summary = cache.get(night_id, stamp) if night.get("ended_at") else None
        stored = night.get("summary")
        if summary is None and _stored_is_current(stored, night, stamp):
            summary = stored
        if summary is None:
            data = load_night(conn, night_id)
            if data is None:  # deleted between the two queries
                continue
            summary = summarize_night(data)
            if night.get("ended_at"):
                cache.put(night_id, stamp, summary)
        night["summary"] = summary
    return nights


def trends(conn: sqlite3.Connection, *, limit: int | None = 90) -> dict[str, Any]:
    """Everything the Trends page and ``/api/trends`` show over the newest ``limit`` nights (None: all).

    ``nights``: oldest first, each with its date, id, tags and one value per trend metric;
    ``weekly``, ``change`` (the change rule's report) and ``comparisons`` (with/without per tag),
    all over those nights; ``window``: how many nights are shown, their first and last date, the
    ``limit`` asked for and how many nights are recorded in all (so a page can say "90 of 365").
    """
    nights = nights_with_summaries(conn, kind="night", limit=limit)
    tags = tags_by_date(conn)
    per_night = []
    for night in sorted(nights, key=lambda n: (str(n.get("night_date")), str(n["started_at"]))):
        date = str(night.get("night_date"))
        per_night.append(
            {
                "night_id": night["id"],
                "night_date": date,
                "tags": [t["tag"] + (f":{t['detail']}" if t["detail"] else "") for t in tags.get(date, [])],
                **{name: metric_value(night, name) for name, _ in TREND_METRICS},
            }
        )
    (recorded,) = conn.execute("SELECT COUNT(*) FROM nights WHERE kind = 'night'").fetchone()
    key = _analysis_key(nights, tags)
    analysis = _analysis_cache().get(key)
    if analysis is None:
        analysis = {
            "weekly": weekly(nights),
            "change": change_rule(nights).as_dict(),
            "comparisons": [c.as_dict() for c in compare_tags(nights, tags)],
        }
        _analysis_cache().put(key, analysis)
    return {
        "window": {
            "nights": len(per_night),
            "first_date": per_night[0]["night_date"] if per_night else None,
            "last_date": per_night[-1]["night_date"] if per_night else None,
            "limit": limit,
            "recorded": int(recorded),
        },
        "nights": per_night,
        "metrics": [{"name": name, "title": title} for name, title in TREND_METRICS],
        **analysis,
    }
