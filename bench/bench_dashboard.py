"""Dashboard server time and page size: the Night page of a night with 5,000 events (whole and
zoomed to ten minutes), Trends over 365 nights.

The Night page's goals (issue 19) are a median of at most 50 ms and at most 200 KiB of HTML for
the whole night; the zoomed URL (``?from=&to=``, the ten minutes around the night's middle, what
a drag on the timeline asks for) has the same goals. Trends' goal is 500 ms. A page over its
time or size goal is marked SLOW or BIG.

Trends is requested as ``/trends?range=all`` so the page draws every night of the database
(the page's default range is the last 90); the run fails if the page shows fewer.

Each URL is requested ``--requests`` times (after one warm-up request) two ways, and the median
and 95th percentile are printed:

* ``http``: through the real ``bedside web`` process (waitress) over loopback HTTP, timed
  from the request being sent to the last byte of the answer read;
* ``client``: through Flask's test client in this process (no sockets, no waitress), the
  server's own work.

The databases are real SQLite files made with ``service.demo_history.build_history``:

* Night: one simulated 8-hour night through the real detector (about 150 events), then
  filled to ``--events`` events by copying its own events (type, duration, intensity,
  details and waveform snippet) to random start times inside the night; its summary is
  recomputed from the rows.
* Trends: ``--real-nights`` simulated nights through the real detector, then copied in SQL
  (nights, events, epochs, vitals, tags and check-ins shifted by whole blocks of days) up
  to ``--nights``; every copy's summary is recomputed from its rows, as the daemon does.
  ``--real-nights`` equal to ``--nights`` simulates every night (about 1 s each here).

    .venv/bin/python bench/bench_dashboard.py [--requests 20] [--events 5000] [--nights 365]
                                              [--real-nights 28] [--keep DIR]

Prints a table and writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.demo_history import build_history  # noqa: E402
from service.history.load import load_night  # noqa: E402
from service.history.summary import summarize_night  # noqa: E402
from service.timefmt import iso_utc, parse_iso_utc  # noqa: E402
from tests.broker import free_port, wait_port  # noqa: E402
from web import create_app  # noqa: E402

RESULTS = REPO / "bench" / "results" / "dashboard.json"
GOALS_MS = {"night": 50.0, "zoom": 50.0, "trends": 500.0}
GOALS_KIB: dict[str, float | None] = {"night": 200.0, "zoom": 200.0, "trends": None}
ZOOM_S = 600
"""The zoomed Night URL shows this many seconds around the middle of the night."""
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Timing:
    """Server time of one URL one way."""

    page: str
    url: str
    via: str
    requests: int
    first_ms: float
    median_ms: float
    p95_ms: float
    max_ms: float
    bytes: int
    goal_ms: float
    goal_kib: float | None

    @property
    def verdict(self) -> str:
        slow = self.median_ms > self.goal_ms
        big = self.goal_kib is not None and self.bytes > self.goal_kib * 1024
        return " ".join(w for w, bad in (("SLOW", slow), ("BIG", big)) if bad) or "ok"


def _local_tz() -> Any:
    return datetime.now().astimezone().tzinfo


def _recompute_summary(conn: sqlite3.Connection, night_id: str) -> None:
    conn.row_factory = sqlite3.Row
    try:
        data = load_night(conn, night_id)
        if data is None:
            raise RuntimeError(f"night {night_id} vanished while building the database")
        summary = summarize_night(data, tz=_local_tz())
    finally:
        conn.row_factory = None
    conn.execute("UPDATE nights SET summary = ? WHERE id = ?", (json.dumps(summary), night_id))


def build_night_db(path: Path, events: int, seed: int) -> tuple[str, int]:
    """One simulated night filled to ``events`` events; its id and the number of events it had."""
    (night_id,) = build_history(path, nights=1, seed=seed, raw_days=1)
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(path)
    try:
        started, ended = conn.execute(
            "SELECT started_at, ended_at FROM nights WHERE id = ?", (night_id,)
        ).fetchone()
        t0, t1 = parse_iso_utc(started), parse_iso_utc(ended)
        cols = "night_id, event_type, duration_s, intensity, profile, confidence, details"
        originals = conn.execute(f"SELECT id, {cols} FROM events WHERE night_id = ?", (night_id,)).fetchall()
        simulated = len(originals)
        snippets = {
            r[0]: r[1:] for r in conn.execute("SELECT * FROM snippets WHERE night_id = ?", (night_id,))
        }
        for _ in range(max(0, events - simulated)):
            src = originals[int(rng.integers(len(originals)))]
            duration_s = float(src[3])
            span_s = max(0.0, (t1 - t0).total_seconds() - duration_s)
            start = t0 + timedelta(seconds=float(rng.uniform(0, span_s)))
            event_id = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, "
                "profile, confidence, cause_id, details) VALUES (?,?,?,?,?,?,?,?,?,NULL,?)",
                (event_id, night_id, src[2], iso_utc(start), iso_utc(start + timedelta(seconds=duration_s)),
                 duration_s, src[4], src[5], src[6], src[7]),
            )  # fmt: skip
            snip = snippets.get(src[0])
            if snip is not None:
                _, snip_start, rate_hz, n, encoding, data = snip
                offset = parse_iso_utc(snip_start) - parse_iso_utc(
                    conn.execute("SELECT start_at FROM events WHERE id = ?", (src[0],)).fetchone()[0]
                )
                conn.execute(
                    "INSERT INTO snippets VALUES (?,?,?,?,?,?,?)",
                    (event_id, night_id, iso_utc(start + offset), rate_hz, n, encoding, data),
                )
        _recompute_summary(conn, night_id)
        conn.commit()
    finally:
        conn.close()
    return night_id, simulated


_SHIFT = "strftime('%Y-%m-%dT%H:%M:%fZ', julianday({col}) + :days)"


def build_year_db(path: Path, nights: int, real_nights: int, seed: int) -> int:
    """``nights`` nights ending last night: ``real_nights`` simulated, the rest copies; the count made."""
    real_nights = min(real_nights, nights)
    first = datetime.now(_local_tz()).date() - timedelta(days=nights)
    # The simulated block is the newest one; copies fill the earlier dates, block by block.
    ids = build_history(
        path, nights=real_nights, seed=seed, raw_days=0, first_date=first + timedelta(nights - real_nights)
    )
    conn = sqlite3.connect(path)
    try:
        made = len(ids)
        block = 1
        while made < nights:
            for night_id in reversed(ids):  # newest first, so a partial block stays contiguous
                if made >= nights:
                    break
                _copy_night(conn, night_id, days=-real_nights * block)
                made += 1
            block += 1
        conn.commit()
        count = int(conn.execute("SELECT COUNT(*) FROM nights").fetchone()[0])
    finally:
        conn.close()
    return count


def _copy_night(conn: sqlite3.Connection, night_id: str, days: int) -> str:
    """Copy one night's rows ``days`` days earlier or later (with its tags and check-in); the new id."""
    started_at, unit_id = conn.execute(
        "SELECT started_at, unit_id FROM nights WHERE id = ?", (night_id,)
    ).fetchone()
    started = parse_iso_utc(started_at) + timedelta(days=days)
    new_id = f"{started:%Y%m%dT%H%M%SZ}-{unit_id}-{uuid.uuid4().hex[:6]}"
    p = {"old": night_id, "new": new_id, "days": days}
    conn.execute(
        "INSERT INTO nights (id, unit_id, started_at, ended_at, profile, source, kind, night_date, "
        f"start_reason, end_reason, rate_hz) SELECT :new, unit_id, {_SHIFT.format(col='started_at')}, "
        f"{_SHIFT.format(col='ended_at')}, profile, source, kind, date(night_date, :days || ' days'), "
        "start_reason, end_reason, rate_hz FROM nights WHERE id = :old",
        p,
    )
    conn.execute(
        "INSERT INTO events (id, night_id, event_type, start_at, end_at, duration_s, intensity, profile, "
        f"confidence, cause_id, details) SELECT id || '-c' || -:days, :new, event_type, "
        f"{_SHIFT.format(col='start_at')}, {_SHIFT.format(col='end_at')}, duration_s, intensity, profile, "
        "confidence, CASE WHEN cause_id IS NULL THEN NULL ELSE cause_id || '-c' || -:days END, details "
        "FROM events WHERE night_id = :old ORDER BY rowid",
        p,
    )
    conn.execute(
        f"INSERT INTO epochs SELECT :new, {_SHIFT.format(col='start_at')}, duration_s, count, asleep, in_bed "
        "FROM epochs WHERE night_id = :old",
        p,
    )
    conn.execute(
        f"INSERT INTO vitals SELECT :new, {_SHIFT.format(col='t_at')}, heart_bpm, breath_bpm "
        "FROM vitals WHERE night_id = :old",
        p,
    )
    (night_date,) = conn.execute("SELECT night_date FROM nights WHERE id = :old", p).fetchone()
    p["date"] = night_date
    conn.execute(
        "INSERT OR IGNORE INTO tags (night_date, tag, detail, at_local, created_at, source) "
        "SELECT date(night_date, :days || ' days'), tag, detail, at_local, created_at, source "
        "FROM tags WHERE night_date = :date",
        p,
    )
    conn.execute(
        "INSERT OR REPLACE INTO checkins SELECT date(night_date, :days || ' days'), sleep_quality, "
        "spasm_severity, note, created_at, updated_at FROM checkins WHERE night_date = :date",
        p,
    )
    _recompute_summary(conn, new_id)
    return new_id


def _stats(samples_ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(samples_ms)
    return float(np.median(a)), float(np.percentile(a, 95)), float(a.max())


def _time(fetch: Callable[[], tuple[int, int]], n: int, what: str) -> tuple[float, list[float], int]:
    """The first request's time (cold: templates, summary cache, SQLite page cache), then ``n`` more."""
    t0 = time.perf_counter()
    status, size = fetch()
    first_ms = (time.perf_counter() - t0) * 1000.0
    if status != 200:
        raise RuntimeError(f"{what} answered {status}, not 200")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, size = fetch()
        out.append((time.perf_counter() - t0) * 1000.0)
        if status != 200:
            raise RuntimeError(f"{what} answered {status}, not 200")
    return first_ms, out, size


def time_http(base_url: str, page: str, path: str, n: int) -> Timing:
    """``n`` GETs of ``path`` through the real server, each on a new connection."""

    def fetch() -> tuple[int, int]:
        try:
            with _OPENER.open(base_url + path, timeout=60) as r:
                return int(r.status), len(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), 0

    first, samples, size = _time(fetch, n, f"GET {path} over HTTP")
    med, p95, mx = _stats(samples)
    return Timing(page, path, "http", n, first, med, p95, mx, size, GOALS_MS[page], GOALS_KIB[page])


def time_client(db: Path, page: str, path: str, n: int) -> Timing:
    """``n`` GETs of ``path`` through Flask's test client on a fresh app over ``db`` (loopback: no login)."""
    client = create_app({"DATABASE": str(db), "LOGIN_REQUIRED": False}).test_client()

    def fetch() -> tuple[int, int]:
        r = client.get(path)
        return r.status_code, len(r.data)

    first, samples, size = _time(fetch, n, f"GET {path} with the test client")
    med, p95, mx = _stats(samples)
    return Timing(page, path, "client", n, first, med, p95, mx, size, GOALS_MS[page], GOALS_KIB[page])


def zoom_path(db: Path, night_id: str, span_s: int = ZOOM_S) -> str:
    """The Night page of ``night_id`` zoomed to ``span_s`` seconds around its middle (local clock)."""
    with sqlite3.connect(db) as conn:
        started, ended = conn.execute(
            "SELECT started_at, ended_at FROM nights WHERE id = ?", (night_id,)
        ).fetchone()
    t0, t1 = parse_iso_utc(started), parse_iso_utc(ended)
    middle = t0 + (t1 - t0) / 2
    first = (middle - timedelta(seconds=span_s / 2)).astimezone(_local_tz())
    last = (middle + timedelta(seconds=span_s / 2)).astimezone(_local_tz())
    return f"/night/{night_id}?from={first:%H:%M:%S}&to={last:%H:%M:%S}"


def trends_nights_shown(db: Path, path: str) -> int:
    """How many nights the Trends page at ``path`` says it shows (``#trend-window[data-nights]``)."""
    client = create_app({"DATABASE": str(db), "LOGIN_REQUIRED": False}).test_client()
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'id="trend-window" data-nights="(\d+)"', page)
    if found is None:
        raise RuntimeError(f"{path} has no #trend-window[data-nights]")
    return int(found.group(1))


class WebProcess:
    """``python -m service web`` over ``db`` on a free loopback port, stopped on exit."""

    def __init__(self, db: Path, log_path: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "web", "--db", str(db), "--host", "127.0.0.1",
             "--port", str(self.port), "--unit-id", "bedside"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        wait_port(self.port, timeout_s=30)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> WebProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def _db(workdir: Path, name: str, keep: bool) -> tuple[Path, bool]:
    """The database path, and whether it is already built (kept from an earlier run)."""
    path = workdir / name
    if keep and path.exists():
        return path, True
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path, False


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    keep = args.keep is not None
    build: dict[str, Any] = {}
    night_db, ready = _db(workdir, f"night-{args.events}.sqlite3", keep)
    t0 = time.monotonic()
    if ready:
        night_id = sqlite3.connect(night_db).execute("SELECT id FROM nights").fetchone()[0]
        build["night"] = {"reused": str(night_db)}
    else:
        night_id, simulated = build_night_db(night_db, args.events, args.seed)
        build["night"] = {"simulated_events": simulated, "build_s": round(time.monotonic() - t0, 1)}
    with sqlite3.connect(night_db) as c:
        build["night"]["events"] = c.execute(
            "SELECT COUNT(*) FROM events WHERE night_id = ?", (night_id,)
        ).fetchone()[0]

    year_db, ready = _db(workdir, f"year-{args.nights}-{args.real_nights}.sqlite3", keep)
    t0 = time.monotonic()
    if ready:
        build["trends"] = {"reused": str(year_db)}
    else:
        build_year_db(year_db, args.nights, args.real_nights, args.seed)
        build["trends"] = {
            "real_nights": min(args.real_nights, args.nights),
            "build_s": round(time.monotonic() - t0, 1),
        }
    with sqlite3.connect(year_db) as c:
        build["trends"]["nights"] = c.execute("SELECT COUNT(*) FROM nights").fetchone()[0]
    print(f"databases: {json.dumps(build)}", flush=True)

    # Trends shows every night of the database (``?range=all``), not the default last 90.
    cases = [
        ("night", night_db, f"/night/{night_id}"),
        ("zoom", night_db, zoom_path(night_db, night_id)),
        ("trends", year_db, "/trends?range=all"),
    ]
    timings: list[Timing] = []
    for page, db, path in cases:
        with WebProcess(db, workdir / f"web-{page}.log") as web:
            timings.append(time_http(web.url, page, path, args.requests))
        timings.append(time_client(db, page, path, args.requests))
    build["trends"]["shown"] = trends_nights_shown(year_db, cases[2][2])
    if build["trends"]["shown"] != build["trends"]["nights"]:
        raise RuntimeError(
            f"Trends showed {build['trends']['shown']} of {build['trends']['nights']} nights: not a full year"
        )
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "requests": args.requests,
        "databases": build,
        "timings": [{**asdict(t), "verdict": t.verdict} for t in timings],
    }


def print_table(doc: dict[str, Any]) -> None:
    print(
        f"\n{'page':<8}{'via':<8}{'first ms':>9}{'median ms':>10}{'p95 ms':>9}{'max ms':>9}{'goal ms':>9}"
        f"{'KiB':>8}{'goal KiB':>9}  verdict (median, size)"
    )
    for t in doc["timings"]:
        print(
            f"{t['page']:<8}{t['via']:<8}{t['first_ms']:>9.1f}{t['median_ms']:>10.1f}{t['p95_ms']:>9.1f}"
            f"{t['max_ms']:>9.1f}{t['goal_ms']:>9.0f}{t['bytes'] / 1024:>8.1f}"
            f"{'-' if t['goal_kib'] is None else format(t['goal_kib'], '.0f'):>9}  {t['verdict']}"
        )
    night, trends = doc["databases"]["night"], doc["databases"]["trends"]
    print(
        f"({doc['requests']} requests each; night page: {night['events']} events (zoom: {ZOOM_S} s); trends: "
        f"{trends['shown']} of {trends['nights']} nights shown; "
        f"load average {doc['load_1min']} on {doc['cpus']} CPUs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=20, help="timed requests per URL and way (default 20)"
    )
    parser.add_argument("--events", type=int, default=5000, help="events in the Night page's night (5000)")
    parser.add_argument("--nights", type=int, default=365, help="nights behind Trends (365)")
    parser.add_argument("--real-nights", type=int, default=28, help="of those, simulated ones (28)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the simulated nights")
    parser.add_argument("--keep", metavar="DIR", help="build the databases in DIR and reuse them next time")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    for name in ("requests", "events", "nights", "real_nights"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.keep is not None:
        workdir = Path(args.keep)
        workdir.mkdir(parents=True, exist_ok=True)
        doc = run(args, workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
            doc = run(args, Path(tmp))
    print_table(doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
