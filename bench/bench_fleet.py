"""Fleet: 100 simulated units publishing a night each to one Mosquitto, at high speed.

The detector analyses ``--nights`` distinct simulated 8-h nights (seeds 1..N) once; unit ``k``
then publishes night ``k mod N`` with the daemon's wire contract (service.payloads.event_row
events with a unique id, QoS 1; retained ``state`` on each change of in bed / moving /
asleep; retained ``availability``), each unit its own paho client and connection, the whole
night compressed into ``--seconds`` of wall time. A central subscriber reads
``bedside/+/event`` (QoS 1) and checks that every event id of every unit arrived. The units
run in a child process, so psutil gives the broker's, the units' and the subscriber's CPU
apart.

The units are paho clients replaying detector output, not 100 daemons (each would also run a
detector, SQLite and a dashboard: see bench_live.py for one daemon's cost).

    .venv/bin/python bench/bench_fleet.py [--units 100] [--seconds 60] [--nights 10]

Prints a table and writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hardware.simulated import SimulatedNight  # noqa: E402
from service.detect import analyze_array  # noqa: E402
from service.detect.types import Event, State  # noqa: E402
from service.payloads import event_row  # noqa: E402
from tests.broker import Broker  # noqa: E402

RATE_HZ = 50.0
NIGHT_S = 8 * 3600.0

# (night time s, topic suffix, payload, qos, retain)
Message = tuple[float, str, str, int, bool]


def night_messages(seed: int) -> list[Message]:
    """One unit's night as the daemon would publish it (times in night seconds)."""
    night = SimulatedNight(seed=seed, rate_hz=RATE_HZ, duration_s=NIGHT_S)
    out = analyze_array(night.render_all(), RATE_HZ)
    start = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
    msgs: list[Message] = []
    for o in out:
        if isinstance(o, Event):
            row = event_row(o, event_id="", night_id=f"night-{seed}", stream_start=start, cause_id=None)
            msgs.append((o.end_s, "event", json.dumps(row), 1, False))
        elif isinstance(o, State):
            doc = {"in_bed": o.in_bed, "moving": o.moving, "asleep": o.asleep}
            msgs.append((o.t_s, "state", json.dumps(doc), 1, True))
    msgs.sort(key=lambda m: m[0])
    return msgs


def run_units(port: int, nights: list[list[Message]], units: int, seconds: float, ready: Any) -> None:
    """Child process: ``units`` paho clients publish their nights, compressed into ``seconds``."""
    clients = []
    for k in range(units):
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"unit-{k:03d}")
        c.will_set(f"bedside/unit-{k:03d}/availability", "offline", qos=1, retain=True)
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.publish(f"bedside/unit-{k:03d}/availability", "online", qos=1, retain=True)
        clients.append(c)
    ready.set()
    # all units' messages on one timeline
    timeline = sorted(
        (t / NIGHT_S * seconds, k, suffix, payload, qos, retain)
        for k in range(units)
        for t, suffix, payload, qos, retain in nights[k % len(nights)]
    )
    infos = []
    t0 = time.monotonic()
    for at, k, suffix, payload, qos, retain in timeline:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if suffix == "event":
            doc = json.loads(payload)
            doc["id"] = uuid.uuid4().hex
            doc["unit_id"] = f"unit-{k:03d}"
            payload = json.dumps(doc, separators=(",", ":"))
        infos.append(clients[k].publish(f"bedside/unit-{k:03d}/{suffix}", payload, qos=qos, retain=retain))
    for info in infos:
        info.wait_for_publish(30)
    for k, c in enumerate(clients):
        c.publish(f"bedside/unit-{k:03d}/availability", "offline", qos=1, retain=True).wait_for_publish(10)
        c.disconnect()
        c.loop_stop()


class Central:
    """The central subscriber: event ids per unit."""

    def __init__(self, port: int) -> None:
        self.ids: dict[str, set[str]] = {}
        self.received = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="central")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("bedside/+/event", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("central subscriber could not subscribe within 10 s")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        with self._lock:
            self.received += 1
            self.ids.setdefault(str(doc["unit_id"]), set()).add(str(doc["id"]))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0, help="wall time one 8-h night is compressed into")
    ap.add_argument("--nights", type=int, default=10, help="distinct simulated nights (seeds 1..N)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fleet.json")
    a = ap.parse_args()
    if a.units < 1 or a.seconds <= 0 or a.nights < 1:
        ap.error("--units and --nights must be >= 1 and --seconds > 0")
    t_an = time.perf_counter()
    nights = [night_messages(seed) for seed in range(1, min(a.nights, a.units) + 1)]
    t_an = time.perf_counter() - t_an
    expected = sum(sum(m[1] == "event" for m in nights[k % len(nights)]) for k in range(a.units))
    published = sum(len(nights[k % len(nights)]) for k in range(a.units))
    print(f"{len(nights)} nights analysed in {t_an:.1f} s; {a.units} units publish {published} messages "
          f"({expected} events) in {a.seconds:g} s ...", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker")
        broker.workdir.mkdir()
        broker.start()
        try:
            assert broker.proc is not None
            bproc = psutil.Process(broker.proc.pid)
            me = psutil.Process()
            central = Central(broker.port)
            ctx = mp.get_context("spawn")
            ready = ctx.Event()
            child = ctx.Process(target=run_units, args=(broker.port, nights, a.units, a.seconds, ready))
            child.start()
            if not ready.wait(60):
                raise RuntimeError("the units did not connect within 60 s")
            cproc = psutil.Process(child.pid)
            b0, m0, c0, w0 = cpu_s(bproc), cpu_s(me), cpu_s(cproc), time.monotonic()
            c_last = c0
            while child.is_alive():
                try:
                    c_last = cpu_s(cproc)
                except psutil.Error:
                    break
                time.sleep(0.2)
            child.join()
            deadline = time.monotonic() + 30
            while central.received < expected and time.monotonic() < deadline:
                time.sleep(0.1)
            wall = time.monotonic() - w0
            b_cpu, m_cpu = cpu_s(bproc) - b0, cpu_s(me) - m0
            central.close()
        finally:
            broker.stop()
    got = sum(len(v) for v in central.ids.values())
    missing_units = [u for u in (f"unit-{k:03d}" for k in range(a.units)) if u not in central.ids]
    result: dict[str, Any] = {
        "units": a.units,
        "night_h": NIGHT_S / 3600,
        "compressed_into_s": a.seconds,
        "wall_s": round(wall, 1),
        "messages_published": published,
        "events_expected": expected,
        "events_received_unique": got,
        "events_received": central.received,
        "all_delivered": got == expected and not missing_units,
        "broker_cpu_pct": round(100 * b_cpu / wall, 1),
        "units_cpu_pct": round(100 * (c_last - c0) / wall, 1),
        "central_subscriber_cpu_pct": round(100 * m_cpu / wall, 1),
        "exit_code_units": child.exitcode,
    }
    print(f"{'units':>6} {'night in s':>11} {'events sent':>12} {'received':>9} {'all':>4} "
          f"{'broker CPU %':>13} {'units CPU %':>12} {'central CPU %':>14}")  # fmt: skip
    ok = "yes" if result["all_delivered"] else "NO"
    print(f"{a.units:>6} {a.seconds:>11g} {expected:>12} {got:>9} {ok:>4} "
          f"{result['broker_cpu_pct']:>13} {result['units_cpu_pct']:>12} "
          f"{result['central_subscriber_cpu_pct']:>14}")  # fmt: skip
    print("(% of one core over the publishing time; 2 shared cores: noisy)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
