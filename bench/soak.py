"""Soak: many simulated nights in a row through one daemon process, as fast as the CPU allows.

One real daemon process (``service.app.Daemon``: store on a real SQLite file, MQTT to a real
Mosquitto with a subscriber taking every event) is fed night after night of the simulated sensor;
each night starts at the sleeper's bed entry and is ended by ``cmd/night stop``, the way a unit
runs for months. After
each night the parent samples the daemon's resident memory, open file descriptors, CPU time and
the database's size, and checks the bounds at the end::

    .venv/bin/python bench/soak.py                      # 30 nights of 8 h at 250 Hz (about 60 min)
    .venv/bin/python bench/soak.py --nights 3 --night-h 1 --json out.json

Bounds (``BOUNDS``): resident memory may grow by at most 10 MiB from the end of the first night to
the end of the last (30 nights: +3.0 MiB on 2026-12-06, at most +7.3 at any night; +20.2 before
the summary's time cache was bounded); open files by at most 2; the database by at most 1.5x the median of the
other nights in any one night (steady growth, nothing accumulating); every event on the wire, the
outbox empty, ``PRAGMA integrity_check`` ok. Exit status 1 when a bound is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hardware.block import Block  # noqa: E402
from hardware.simulated import SimulatedNight  # noqa: E402

#: Growth allowed over the whole soak (see the module docstring).
BOUNDS = {"rss_growth_mib": 10.0, "fd_growth": 2, "db_night_ratio": 1.5}
UNIT = "soak"
#: Sessions as on a unit (``auto``): a night starts at the sleeper's bed entry and the soak ends
#: it by command. Back-to-back 8-h nights pass every clock time, so the evening window covers the
#: day but for the two minutes 12:58-13:00 UTC (else the morning rules would end nights early).
SOAK_SESSIONS = {
    "mode": "auto", "timezone": "UTC", "evening_start": "13:00", "evening_end": "12:58",
    "morning_start": "12:58", "morning_end": "12:59",
}  # fmt: skip
#: The database's logical size (pages in use, including those still in the WAL).
DB_BYTES_SQL = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
RAW_BYTES_SQL = "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM raw_chunks"


class ChainedNights:
    """Simulated nights back to back as one stream (sample index and UTC times run on).

    ``between(last)`` is awaited after each night (on the daemon's loop): the soak ends the night
    there. Yields to the loop after every block.
    """

    def __init__(self, nights: int, night_s: float, rate_hz: float, block_s: float = 0.1) -> None:
        self._nights: list[SimulatedNight | None] = [
            SimulatedNight(seed=100 + k, rate_hz=rate_hz, duration_s=night_s) for k in range(nights)
        ]
        self._rate_hz = rate_hz
        self._block_n = max(1, round(block_s * rate_hz))
        self._start = datetime.now(UTC)
        self._closed = False
        self.between: Any = None

    @property
    def rate_hz(self) -> float:
        return self._rate_hz

    @property
    def channels(self) -> int:
        return 1

    @property
    def bits(self) -> int:
        return 12

    async def _blocks(self) -> AsyncIterator[Block]:
        index = 0
        for k, night in enumerate(self._nights):
            assert night is not None
            for i in range(0, night.n_samples, self._block_n):
                if self._closed:
                    return
                samples = night.render(i, min(self._block_n, night.n_samples - i))
                t0 = self._start + timedelta(seconds=index / self._rate_hz)
                yield Block(t0=t0, index=index, rate_hz=self._rate_hz, samples=samples)
                index += samples.shape[0]
                await asyncio.sleep(0)
            self._nights[k] = None  # its render caches are the soak's memory, not the daemon's
            if self.between is not None:
                await self.between(k == len(self._nights) - 1)

    def __aiter__(self) -> AsyncIterator[Block]:
        return self._blocks()

    async def close(self) -> None:
        self._closed = True


def run_child(db: str, nights: int, night_s: float, rate_hz: float, mqtt_port: int | None) -> int:
    """The daemon side: one Daemon over ChainedNights (runs in its own process)."""
    import logging

    from service.app import Daemon
    from service.config import load_config

    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {
        "unit_id": UNIT,
        "storage": {"db_path": db},
        "web": {"enabled": False},
        "sessions": SOAK_SESSIONS,
        "mqtt": {"enabled": False},
    }
    if mqtt_port is not None:
        overrides["mqtt"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": mqtt_port,
            "event_burst": 1000,  # the wire rate limit off: every stored event is published
            "events_per_min": 1000.0,
        }
    cfg = load_config(environ={}, overrides=overrides)
    source = ChainedNights(nights, night_s, rate_hz)
    daemon = Daemon(cfg, source, f"soak({nights} x {night_s:g} s)")

    async def next_night(last: bool) -> None:
        old = daemon.night_id
        daemon._on_command("night", b"stop")  # the handler cmd/night messages reach
        while daemon.night_id == old and old is not None:
            await asyncio.sleep(0.01)
        if last:
            await asyncio.sleep(1.0)  # the parent measures a running daemon, not one shutting down

    source.between = next_night
    return asyncio.run(daemon.run())


@dataclass
class NightFigures:
    """What the parent measured when a night had ended."""

    night: int
    wall_s: float
    rss_mib: float
    fds: int
    cpu_s: float
    db_mib: float
    wal_mib: float
    raw_mib: float
    events: int


@dataclass
class SoakResult:
    """Per-night figures, totals and the bounds broken (none when the soak passed)."""

    nights: int
    night_s: float
    rate_hz: float
    per_night: list[NightFigures] = field(default_factory=list)
    events_stored: int = 0
    events_on_wire: int = 0
    outbox_left: int = 0
    integrity: str = ""
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wal_bytes(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _ro(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def _measure(cmd: list[str], db: Path, workdir: Path, result: SoakResult) -> None:
    """Run the daemon process ``cmd`` and sample it after every night; fill ``result``."""
    import psutil  # type: ignore[import-untyped]

    log = (workdir / "daemon.log").open("wb")
    began = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        ps = psutil.Process(proc.pid)
        seen = 0
        while proc.poll() is None:
            time.sleep(0.2)
            ended = _ro(db, "SELECT COUNT(*) FROM nights WHERE ended_at IS NOT NULL") if db.exists() else 0
            if ended and ended > seen:
                seen = ended
                try:
                    cpu = ps.cpu_times()
                    figures = NightFigures(
                        night=ended,
                        wall_s=round(time.monotonic() - began, 1),
                        rss_mib=round(ps.memory_info().rss / 2**20, 1),
                        fds=ps.num_fds(),
                        cpu_s=round(cpu.user + cpu.system, 1),
                        db_mib=round((_ro(db, DB_BYTES_SQL) or 0) / 2**20, 2),
                        wal_mib=round(_wal_bytes(db) / 2**20, 2),
                        raw_mib=round((_ro(db, RAW_BYTES_SQL) or 0) / 2**20, 2),
                        events=int(_ro(db, "SELECT COUNT(*) FROM events") or 0),
                    )  # fmt: skip
                except psutil.NoSuchProcess:
                    break
                result.per_night.append(figures)
                print(
                    f"night {figures.night:3d}: rss {figures.rss_mib:7.1f} MiB  fds {figures.fds:3d}  "
                    f"cpu {figures.cpu_s:7.1f} s  db {figures.db_mib:8.2f} MiB (raw {figures.raw_mib:.2f}, "
                    f"wal file {figures.wal_mib:.2f})  "
                    f"events {figures.events}",
                    flush=True,
                )
        result.exit_code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    result.events_stored = int(_ro(db, "SELECT COUNT(*) FROM events") or 0)
    result.outbox_left = int(_ro(db, "SELECT COUNT(*) FROM outbox") or 0)
    conn = sqlite3.connect(db)
    try:
        result.integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def soak(nights: int, night_s: float, rate_hz: float, workdir: Path, *, mqtt: bool = True) -> SoakResult:
    """Run the soak in ``workdir``; returns the figures (``problems`` lists broken bounds)."""
    from tests.broker import Broker
    from tests.mqttutil import Subscriber

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "soak.sqlite3"
    result = SoakResult(nights, night_s, rate_hz)
    broker = sub = None
    if mqtt:
        broker = Broker(workdir / "broker")
        broker.workdir.mkdir(exist_ok=True)
        broker.start()
        sub = Subscriber(broker.host, broker.port, f"bedside/{UNIT}/event")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--db", str(db), "--nights", str(nights),
           "--night-s", str(night_s), "--rate-hz", str(rate_hz)]  # fmt: skip
    if broker is not None:
        cmd += ["--mqtt-port", str(broker.port)]
    try:
        _measure(cmd, db, workdir, result)
        if sub is not None:
            deadline = time.monotonic() + 30
            while len(sub.on(f"bedside/{UNIT}/event")) < result.events_stored and time.monotonic() < deadline:
                time.sleep(0.1)
            result.events_on_wire = len(
                {json.loads(m.payload)["id"] for m in sub.on(f"bedside/{UNIT}/event")}
            )
    finally:
        if sub is not None:
            sub.close()
        if broker is not None:
            broker.stop()
    result.problems = check(result, mqtt=mqtt)
    return result


def check(r: SoakResult, *, mqtt: bool) -> list[str]:
    """The bounds this soak broke (empty when it passed)."""
    problems: list[str] = []
    if r.exit_code != 0:
        problems.append(f"the daemon exited with {r.exit_code}")
    if r.integrity != "ok":
        problems.append(f"integrity_check: {r.integrity}")
    if len(r.per_night) < r.nights - 1:
        problems.append(f"only {len(r.per_night)} of {r.nights} nights were measured")
    if len(r.per_night) >= 2:
        first, last = r.per_night[0], r.per_night[-1]
        if last.rss_mib - first.rss_mib > BOUNDS["rss_growth_mib"]:
            problems.append(f"resident memory grew {last.rss_mib - first.rss_mib:.1f} MiB")
        if last.fds - first.fds > BOUNDS["fd_growth"]:
            problems.append(f"open files grew from {first.fds} to {last.fds}")
        steps = [b.db_mib - a.db_mib for a, b in zip(r.per_night, r.per_night[1:], strict=False)]
        if len(steps) >= 2:
            typical = statistics.median(steps)
            worst = max(steps)
            if typical > 0 and worst > BOUNDS["db_night_ratio"] * typical + 0.5:
                problems.append(f"the database grew {worst:.2f} MiB in one night (median {typical:.2f})")
    if mqtt and r.events_on_wire < r.events_stored:
        problems.append(f"{r.events_stored - r.events_on_wire} stored event(s) never reached the subscriber")
    if mqtt and r.outbox_left:
        problems.append(f"{r.outbox_left} message(s) left in the outbox")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--nights", type=int, default=30)
    p.add_argument("--night-h", type=float, default=8.0, help="hours per simulated night")
    p.add_argument("--night-s", type=float, help=argparse.SUPPRESS)
    p.add_argument("--rate-hz", type=float, default=250.0)
    p.add_argument("--workdir", default="var/soak", help="where the database and logs go (emptied first)")
    p.add_argument("--no-mqtt", action="store_true", help="no broker (store only)")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--mqtt-port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    night_s = a.night_s if a.night_s else a.night_h * 3600.0
    if a.child:
        return run_child(a.db, a.nights, night_s, a.rate_hz, a.mqtt_port)
    import shutil

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the daemon and broker are stopped too
    workdir = Path(a.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"soak: {a.nights} nights of {night_s / 3600:g} h at {a.rate_hz:g} Hz in {workdir}", flush=True)
    r = soak(a.nights, night_s, a.rate_hz, workdir, mqtt=not a.no_mqtt)
    if r.per_night:
        first, last = r.per_night[0], r.per_night[-1]
        sim_h = len(r.per_night) * night_s / 3600
        print(
            f"\nafter night 1 -> night {last.night}: rss {first.rss_mib} -> {last.rss_mib} MiB, "
            f"fds {first.fds} -> {last.fds}, db {first.db_mib} -> {last.db_mib} MiB "
            f"(raw signal {last.raw_mib} MiB); cpu {last.cpu_s / sim_h:.1f} s per simulated hour; "
            f"{last.wall_s:.0f} s wall"
        )
    print(f"events stored {r.events_stored}, on the wire {r.events_on_wire}, outbox left {r.outbox_left}, "
          f"integrity {r.integrity}")  # fmt: skip
    print("PASS" if not r.problems else "FAIL: " + "; ".join(r.problems))
    if a.json:
        Path(a.json).write_text(json.dumps(r.as_dict(), indent=2))
    return 0 if not r.problems else 1


if __name__ == "__main__":
    sys.exit(main())
