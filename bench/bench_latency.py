"""Latency through a real Mosquitto: movement onset -> `moving` ON, movement end -> classified event.

Runs the real daemon in this process on a replayed signal at real-time speed (0.1-s blocks, as
live), with a real broker and a subscriber that timestamps what it receives. The signal is a
quiet simulated sleeper with movements added at known times, so onset and end are exact.

    .venv/bin/python bench/bench_latency.py [--movements 20]

Prints a table and writes bench/results/latency.json. Latency includes the block length
(a sample can only be seen once its block is complete), as on a real sensor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hardware.replay import Recording, ReplaySource  # noqa: E402
from hardware.simulated import SimulatedNight  # noqa: E402
from service.app import Daemon  # noqa: E402
from service.config import load_config  # noqa: E402
from tests.broker import Broker  # noqa: E402

RATE_HZ = 250.0
WARMUP_S = 45.0
PERIOD_S = 12.0


def make_signal(n_movements: int, seed: int = 11) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A quiet sleeper with limb movements (0.8-3 s) every PERIOD_S after the warm-up."""
    duration = WARMUP_S + n_movements * PERIOD_S + 10.0
    night = SimulatedNight(seed=seed, rate_hz=RATE_HZ, duration_s=7200.0, movements=False, glitches=False,
                           bathroom_trip=False, restless=False, plm_series=False, awakenings=0)  # fmt: skip
    start = int(3000 * RATE_HZ)
    x = night.render(start, int(duration * RATE_HZ)).astype(np.float64)
    rng = np.random.default_rng(seed)
    scale = float(np.std(x))
    truth = []
    for k in range(n_movements):
        onset = WARMUP_S + k * PERIOD_S + rng.uniform(0, 2)
        length = rng.uniform(0.8, 3.0)
        i0, n = int(onset * RATE_HZ), int(length * RATE_HZ)
        ramp = np.minimum(1.0, np.arange(n) / (0.05 * RATE_HZ))
        x[i0 : i0 + n] += rng.normal(0, 1, n) * ramp * 25 * scale
        truth.append((onset, onset + length))
    return x.astype(np.float32), truth


class Recorder:
    """Subscriber that keeps (receive time, topic, payload)."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.got: list[tuple[float, str, dict[str, object]]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._ready.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith(("/state", "/event")):
            self.got.append((time.time(), msg.topic, json.loads(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movements", type=int, default=20)
    args = ap.parse_args()
    samples, truth = make_signal(args.movements)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker")
        broker.workdir.mkdir()
        broker.start()
        rec = Recorder(broker, "bedside/latency/#")
        cfg = load_config(
            environ={},
            overrides={
                "unit_id": "latency",
                "storage": {"db_path": str(Path(tmp) / "b.sqlite3")},
                "mqtt": {"host": broker.host, "port": broker.port, "moving_off_delay_s": 1.0,
                         "event_burst": 1000},
                "web": {"enabled": False},
            },
        )  # fmt: skip
        source = ReplaySource(Recording(samples, RATE_HZ, None, "bench", "x"), speed=1.0, block_s=0.1)
        daemon = Daemon(cfg, source, "bench")
        print(f"replaying {len(samples) / RATE_HZ:.0f} s at real time with {len(truth)} movements ...")
        asyncio.run(daemon.run())
        rec.close()
        broker.stop()
    assert daemon._stream_start is not None
    t0 = daemon._stream_start.timestamp()
    on_lat, ev_lat = [], []
    states = [(t, p) for t, topic, p in rec.got if topic.endswith("/state")]
    events = [(t, p) for t, topic, p in rec.got if topic.endswith("/event")]
    from service.timefmt import parse_iso_utc

    for onset, end in truth:
        on = [t for t, p in states if p.get("moving") and t >= t0 + onset - 0.5]
        if on:
            on_lat.append(on[0] - (t0 + onset))
        match = [
            t for t, p in events
            if abs(parse_iso_utc(str(p["start"])).timestamp() - (t0 + onset)) < 1.0
        ]  # fmt: skip
        if match:
            ev_lat.append(match[0] - (t0 + end))
    result = {
        "movements": len(truth),
        "moving_on_found": len(on_lat),
        "moving_on_ms": {"p50": pct(on_lat, 50), "p99": pct(on_lat, 99), "max": pct(on_lat, 100)},
        "event_found": len(ev_lat),
        "event_after_end_ms": {"p50": pct(ev_lat, 50), "p99": pct(ev_lat, 99), "max": pct(ev_lat, 100)},
        "goals_ms": {"moving_on_p99": 300, "event_p99": 600},
    }
    print(f"{'measure':<38}{'n':>4}{'p50 ms':>10}{'p99 ms':>10}{'goal p99':>10}")
    print(f"{'onset -> moving ON at subscriber':<38}{len(on_lat):>4}{result['moving_on_ms']['p50']!s:>10}"
          f"{result['moving_on_ms']['p99']!s:>10}{300:>10}")  # fmt: skip
    ev = result["event_after_end_ms"]
    print(
        f"{'end -> classified event at subscriber':<38}{len(ev_lat):>4}"
        f"{ev['p50']!s:>10}{ev['p99']!s:>10}{600:>10}"
    )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
