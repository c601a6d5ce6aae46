"""Live daemon cost: CPU share and resident memory at 250 Hz and 1 kHz in real time.

Starts a private Mosquitto (tests/broker.py) and, for each rate, a real ``bedside run`` process
on the simulated sensor at real-time speed with its SQLite file, MQTT link and dashboard
(the daemon's own child process), all rates at once so the run fits the bench budget. A
subscriber counts what arrives on the broker and a poller asks the dashboard for
``/api/state`` every 2 s, as an open Tonight page would. After a settle time (start-up and
imports are not counted) psutil samples, every second for ``--live-minutes``: CPU time of the
daemon process and of its children (the dashboard), their resident memory, and the broker's.

    .venv/bin/python bench/bench_live.py [--live-minutes 2] [--rates 250 1000]

CPU share is CPU seconds / wall seconds x 100, i.e. % of one core. The machine is shared
(2 cores, other jobs running): figures are noisy, and the rates run side by side. Prints a
table and writes bench/results/live.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.broker import Broker, free_port, wait_port  # noqa: E402

GOALS = {250.0: 2.0, 1000.0: 5.0}  # % of one core, sampling plus detection
GOAL_RSS_MB = 80.0
SETTLE_S = 15.0


class Counter:
    """Counts messages per topic suffix on the broker."""

    def __init__(self, broker: Broker) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("bedside/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        key = msg.topic.split("/", 1)[-1]
        if key.startswith(("live", "state", "event")) or "/" in key:
            with self._lock:
                self.counts[key] = self.counts.get(key, 0) + 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_daemon(rate: float, tmp: Path, broker: Broker) -> tuple[subprocess.Popen[bytes], int, str]:
    """One ``bedside run`` on the simulated sensor at real time, with its dashboard."""
    unit = f"live{int(rate)}"
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")}
    env.update({"BEDSIDE_SENSOR__RATE_HZ": str(rate), "BEDSIDE_SENSOR__SPEED": "1.0"})
    cmd = [
        str(REPO / ".venv" / "bin" / "bedside"), "run",
        "--sensor", "simulated",
        "--db", str(tmp / f"{unit}.sqlite3"),
        "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
        "--unit-id", unit, "--web-port", str(web_port),
    ]  # fmt: skip
    log = (tmp / f"{unit}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    return proc, web_port, unit


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def poll_dashboard(ports: list[int], stop: threading.Event) -> None:
    """Ask each dashboard for /api/state every 2 s, as an open Tonight page would."""
    while not stop.wait(2.0):
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2) as r:
                    r.read()
            except OSError:
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live-minutes", type=float, default=2.0, help="measured minutes (after a settle)")
    ap.add_argument("--rates", type=float, nargs="+", default=[250.0, 1000.0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "live.json")
    a = ap.parse_args()
    if a.live_minutes <= 0 or any(not 1 <= r <= 1000 for r in a.rates):
        ap.error("--live-minutes must be > 0 and every rate 1 to 1000 Hz")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(tmp / "broker")
        broker.workdir.mkdir()
        broker.start()
        stop = threading.Event()
        daemons = []
        try:
            counter = Counter(broker)
            for rate in a.rates:
                daemons.append((rate, *start_daemon(rate, tmp, broker)))
            for _, _, port, _ in daemons:
                wait_port(port, 30.0)
            poller = threading.Thread(
                target=poll_dashboard, args=([d[2] for d in daemons], stop), daemon=True
            )
            poller.start()
            print(f"{len(daemons)} daemon(s) running; settling {SETTLE_S:g} s, then measuring "
                  f"{a.live_minutes:g} min ...", flush=True)  # fmt: skip
            time.sleep(SETTLE_S)
            bproc = psutil.Process(broker.proc.pid) if broker.proc else None
            procs = {rate: psutil.Process(proc.pid) for rate, proc, _, _ in daemons}
            t0 = time.monotonic()
            c0 = {r: cpu_s(p) for r, p in procs.items()}
            k0 = {r: {c.pid: cpu_s(c) for c in tree(p)} for r, p in procs.items()}
            b0 = cpu_s(bproc) if bproc else 0.0
            rss: dict[float, list[float]] = {r: [] for r in procs}
            rss_kids: dict[float, list[float]] = {r: [] for r in procs}
            end = t0 + a.live_minutes * 60.0
            while time.monotonic() < end:
                for r, p in procs.items():
                    if p.is_running():
                        rss[r].append(p.memory_info().rss / 2**20)
                        rss_kids[r].append(sum(c.memory_info().rss for c in tree(p)) / 2**20)
                time.sleep(1.0)
            wall = time.monotonic() - t0
            b_cpu = (cpu_s(bproc) - b0) if bproc else 0.0
            for rate, p in procs.items():
                kids = tree(p)
                k_cpu = sum(cpu_s(c) - k0[rate].get(c.pid, 0.0) for c in kids)
                d_cpu = cpu_s(p) - c0[rate]
                results.append({
                    "rate_hz": rate,
                    "measured_s": round(wall, 1),
                    "daemon_cpu_pct": round(100 * d_cpu / wall, 2),
                    "dashboard_cpu_pct": round(100 * k_cpu / wall, 2),
                    "daemon_rss_mb_max": round(max(rss[rate]), 1),
                    "dashboard_rss_mb_max": round(max(rss_kids[rate]), 1),
                    "goal_cpu_pct": GOALS.get(rate),
                    "goal_rss_mb": GOAL_RSS_MB,
                })  # fmt: skip
            broker_pct = round(100 * b_cpu / wall, 2)
            for r in results:  # the daemon's own start line names the source and its rate
                log = (tmp / f"live{int(r['rate_hz'])}.log").read_text(errors="replace")
                r["source"] = next(
                    (ln.split("starting: ", 1)[-1] for ln in log.splitlines() if "starting: unit" in ln), ""
                )
        finally:
            stop.set()
            for _, proc, _, _ in daemons:
                proc.terminate()
            for _, proc, _, _ in daemons:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            counter.close()
            broker.stop()
    print(f"live daemons, {a.live_minutes:g} min measured at real time, rates side by side, private "
          f"Mosquitto (broker CPU {broker_pct} % of one core); shared 2-core machine: noisy")  # fmt: skip
    print(f"{'rate':>6} {'daemon CPU %':>13} {'goal':>6} {'daemon RSS MB':>14} {'goal':>6} "
          f"{'dashboard CPU %':>16} {'dashboard RSS MB':>17}  met")  # fmt: skip
    for r in results:
        goal = r["goal_cpu_pct"]
        met = (goal is None or r["daemon_cpu_pct"] <= goal) and r["daemon_rss_mb_max"] <= GOAL_RSS_MB
        print(f"{r['rate_hz']:>6g} {r['daemon_cpu_pct']:>13} {goal!s:>6} {r['daemon_rss_mb_max']:>14} "
              f"{GOAL_RSS_MB:>6g} {r['dashboard_cpu_pct']:>16} {r['dashboard_rss_mb_max']:>17}  "
              f"{'yes' if met else 'NO'}")  # fmt: skip
    for r in results:
        print(f"{r['rate_hz']:>6g} Hz daemon: {r['source']}")
    print(f"messages seen by a subscriber: {dict(sorted(counter.counts.items()))}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "rows": results,
        "broker_cpu_pct": broker_pct,
        "minutes": a.live_minutes,
        "messages": counter.counts,
    }
    a.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
