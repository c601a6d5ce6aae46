"""The MQTT wire contract against a real Mosquitto: discovery, commands, auth, TLS, outages, limits."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.daemonutil import query, start_daemon, stop_daemon, stored_events
from tests.mqttutil import Subscriber, wait_until

UNIT = "mqtt-unit"
ROOT = f"bedside/{UNIT}"


def _args(db: Path, broker: Broker, *extra: str) -> list[str]:
    return [
        "--db", str(db), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
        "--unit-id", UNIT, "--seed", "2", "--no-web", *extra,
    ]  # fmt: skip


def _publish(broker: Broker, topic: str, payload: bytes | str, **auth: str) -> None:
    import paho.mqtt.publish as publish

    publish.single(
        topic, payload, qos=1, hostname=broker.host, port=broker.port,
        auth={"username": auth["username"], "password": auth["password"]} if auth else None,
    )  # fmt: skip


def _events(sub: Subscriber) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in sub.on(f"{ROOT}/event")]


@pytest.mark.slow
def test_discovery_is_announced_and_repeated_when_home_assistant_comes_online(
    broker: Broker, tmp_path: Path
) -> None:
    sub = Subscriber(broker.host, broker.port, "homeassistant/#")
    proc = start_daemon(_args(tmp_path / "b.sqlite3", broker, "--speed", "10"), tmp_path / "d.log")
    try:
        sub.wait_for(lambda: len(sub.messages) >= 15, what="discovery configs")
        first = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.endswith("/config")}
        n = len(sub.messages)
        _publish(broker, "homeassistant/status", "online")
        sub.wait_for(lambda: len(sub.messages) >= n + len(first), what="discovery repeated after HA birth")
    finally:
        stop_daemon(proc)
        sub.close()
    node = "bedside_mqtt_unit"
    assert f"homeassistant/event/{node}/movement/config" in first
    assert f"homeassistant/binary_sensor/{node}/in_bed/config" in first
    for payload in first.values():
        assert payload["device"]["identifiers"] == [node]
        assert payload["availability_topic"] == f"{ROOT}/availability"
        assert payload["unique_id"].startswith(node)
    movement = first[f"homeassistant/event/{node}/movement/config"]
    assert "jerk" in movement["event_types"] and "awakening" not in movement["event_types"]


@pytest.mark.slow
def test_commands_mark_stop_and_start_the_night_and_bad_ones_are_ignored(
    broker: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "b.sqlite3"
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/#")
    proc = start_daemon(_args(db, broker, "--speed", "20"), tmp_path / "d.log")
    try:
        sub.wait_for(
            lambda: [m.text for m in sub.on(f"{ROOT}/availability")][-1:] == ["online"], what="online"
        )
        for name, payload in [
            ("night", b"\xff\xfe garbage"),
            ("night", b"explode"),
            ("mark", b'{"kind": 42}'),
            ("mark", b"x" * 5000),
            ("profile", b"psg"),
            ("delete_everything", b"yes"),
            ("night", b"[1, 2"),
        ]:
            _publish(broker, f"{ROOT}/cmd/{name}", payload)
        _publish(broker, f"{ROOT}/cmd/mark", '{"kind": "spasm", "note": "left leg"}')
        wait_until(lambda: len(query(db, "SELECT * FROM annotations")) == 1, what="mark stored")
        _publish(broker, f"{ROOT}/cmd/night", "stop")
        sub.wait_for(lambda: bool(sub.on(f"{ROOT}/night")), what="night summary")
        wait_until(lambda: query(db, "SELECT ended_at FROM nights")[0]["ended_at"] is not None, what="ended")
        _publish(broker, f"{ROOT}/cmd/night", "start")
        wait_until(lambda: len(query(db, "SELECT id FROM nights")) == 2, what="a second night")
        assert proc.poll() is None, "bad commands never stop the daemon"
    finally:
        assert stop_daemon(proc) == 0
        sub.close()
    log = (tmp_path / "d.log").read_text()
    assert log.count("MQTT command on cmd/") >= 7, "each bad command is logged"
    assert "unknown command 'delete_everything'" in log and "Traceback" not in log
    note = query(db, "SELECT kind, source, note FROM annotations")[0]
    assert (note["kind"], note["source"], note["note"]) == ("spasm", "mqtt", "left leg")
    summary = json.loads(sub.on(f"{ROOT}/night")[-1].payload)
    assert {"night_id", "counts", "total_sleep_min", "efficiency_pct", "movement_index_per_h"} <= set(summary)
    late = Subscriber(broker.host, broker.port, f"{ROOT}/night")
    try:
        late.wait_for(lambda: bool(late.messages), what="retained night summary")
        assert late.messages[0].retain
    finally:
        late.close()


@pytest.mark.slow
def test_broker_stopped_mid_night_loses_nothing(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    db = tmp_path / "b.sqlite3"
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/event")
    proc = start_daemon(_args(db, broker, "--speed", "150", "--duration-s", "5400"), tmp_path / "d.log")
    try:
        sub.wait_for(lambda: len(sub.messages) >= 2, timeout_s=60, what="first events")
        sub.close()
        broker.stop()
        before = len(stored_events(db))
        wait_until(
            lambda: len(stored_events(db)) >= before + 3, timeout_s=60, what="events during the outage"
        )
        assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] >= 3
        broker.start()
        assert proc.wait(120) == 0, (tmp_path / "d.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0, "outbox drained after the outage"
    assert "connection lost" in (tmp_path / "d.log").read_text()
    broker.stop()


@pytest.mark.slow
def test_events_unacknowledged_at_a_sigkill_are_published_after_restart(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.workdir.mkdir()  # not started: everything the first run detects stays in the outbox
    db = tmp_path / "b.sqlite3"
    proc = start_daemon(_args(db, broker, "--speed", "100", "--duration-s", "7200"), tmp_path / "d1.log")
    try:
        wait_until(lambda: len(query(db, "SELECT seq FROM outbox")) >= 3, timeout_s=60, what="queued events")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_ids = {e["id"] for e in stored_events(db)}
    assert killed_ids
    broker.start()
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/event")
    proc = start_daemon(_args(db, broker, "--speed", "0", "--duration-s", "60"), tmp_path / "d2.log")
    try:
        assert proc.wait(60) == 0
        sub.wait_for(
            lambda: killed_ids <= {json.loads(m.payload)["id"] for m in sub.messages}, what="old ids"
        )
    finally:
        sub.close()
        broker.stop()
    assert query(db, "SELECT COUNT(*) AS n FROM outbox")[0]["n"] == 0


def _make_ca_and_server_cert(d: Path) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Bedside test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-out", str(d / "server.crt"), "-extfile", str(d / "ext.cnf"))  # fmt: skip
    return d / "ca.crt", d / "server.crt", d / "server.key"


@pytest.mark.slow
def test_password_and_tls_broker_works_and_a_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = _make_ca_and_server_cert(certs)
    broker = Broker(tmp_path / "broker", users={"bedside": "right-horse"}, tls_cert=cert, tls_key=key)
    broker.workdir.mkdir()
    broker.start()
    good = tmp_path / "good.pw"
    good.write_text("right-horse\n")
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong-horse\n")

    def config(pw: Path, name: str) -> Path:
        f = tmp_path / f"{name}.toml"
        f.write_text(
            f"[mqtt]\nusername = 'bedside'\npassword_file = '{pw}'\ntls = true\ntls_ca_file = '{ca}'\n"
            "reconnect_min_s = 1.0\nreconnect_max_s = 2.0\n"
        )
        return f

    sub = Subscriber(
        broker.host, broker.port, f"{ROOT}/#", username="bedside", password="right-horse", ca_file=str(ca)
    )
    try:
        ok = start_daemon(
            [*_args(tmp_path / "ok.sqlite3", broker, "--speed", "0", "--duration-s", "900"),
             "--config", str(config(good, "good"))],
            tmp_path / "ok.log",
        )  # fmt: skip
        assert ok.wait(60) == 0, (tmp_path / "ok.log").read_text()
        stored = stored_events(tmp_path / "ok.sqlite3")
        sub.wait_for(
            lambda: len(sub.on(f"{ROOT}/event")) >= len(stored), what="events over TLS with a password"
        )
        bad_run = start_daemon(
            [*_args(tmp_path / "bad.sqlite3", broker, "--speed", "20", "--duration-s", "600"),
             "--config", str(config(bad, "bad"))],
            tmp_path / "bad.log",
        )  # fmt: skip
        try:
            wait_until(lambda: "refused the connection" in (tmp_path / "bad.log").read_text(), what="refusal")
            assert bad_run.poll() is None, "a wrong password does not crash the daemon"
        finally:
            assert stop_daemon(bad_run) == 0
    finally:
        sub.close()
        broker.stop()
    bad_log = (tmp_path / "bad.log").read_text()
    assert "Not authorized" in bad_log or "not authorised" in bad_log.lower() or "Bad user name" in bad_log
    assert "wrong-horse" not in bad_log and "right-horse" not in (tmp_path / "ok.log").read_text()
    assert stored


@pytest.mark.slow
def test_a_restless_night_is_rate_limited_on_the_wire_but_fully_stored(
    broker: Broker, tmp_path: Path
) -> None:
    db = tmp_path / "b.sqlite3"
    cfg = tmp_path / "limit.toml"
    cfg.write_text("[mqtt]\nevent_burst = 1\nevents_per_min = 0.1\n")  # one, then one per 10 min
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/#")
    proc = start_daemon([*_args(db, broker, "--speed", "0", "--duration-s", "3600"), "--config", str(cfg)],
                        tmp_path / "d.log")  # fmt: skip
    try:
        assert proc.wait(120) == 0
        sub.wait_for(lambda: [m.text for m in sub.on(f"{ROOT}/availability")][-1:] == ["offline"], what="end")
    finally:
        sub.close()
    stored = stored_events(db)
    wire = _events(sub)
    by_type_stored: dict[str, int] = {}
    for e in stored:
        by_type_stored[e["event_type"]] = by_type_stored.get(e["event_type"], 0) + 1
    by_type_wire: dict[str, int] = {}
    for e in wire:
        by_type_wire[str(e["event_type"])] = by_type_wire.get(str(e["event_type"]), 0) + 1
    assert len(wire) < len(stored), "some events were held back"
    for t, n in by_type_wire.items():
        assert n <= 1 + 0.1 * 60 + 1, (t, n)  # burst + one hour at 0.1 a minute
    last_state = json.loads(sub.on(f"{ROOT}/state")[-1].payload)
    assert last_state["suppressed_events"] == len(stored) - len(wire)
    assert sum(last_state["counts"].values()) == len(stored), "the counts include held-back events"


def test_the_last_finished_night_is_published_retained_at_start(tmp_path: Path, broker: Broker) -> None:
    """Nights written by ``bedside demo-history`` (or kept while the broker lost its retained
    messages) reach ``night`` when the daemon starts, so Home Assistant's last-night sensors are
    never left unknown until the next night ends."""
    from service.demo_history import build_history

    db = tmp_path / "b.sqlite3"
    ids = build_history(db, nights=2, raw_days=0, duration_h=1.0, unit_id=UNIT, seed=3)
    last_ended = query(db, "SELECT ended_at FROM nights WHERE id = ?", ids[-1])[0][0]
    proc = start_daemon(_args(db, broker, "--speed", "1", "--duration-s", "3600"), tmp_path / "d.log")
    try:
        sub = Subscriber(broker.host, broker.port, f"{ROOT}/night")
        sub.wait_for(lambda: bool(sub.on(f"{ROOT}/night")), what="the last night on the wire")
        late = Subscriber(broker.host, broker.port, f"{ROOT}/night")  # what Home Assistant gets later
        late.wait_for(lambda: bool(late.on(f"{ROOT}/night")), what="the retained night")
        msg = late.on(f"{ROOT}/night")[0]
        doc = json.loads(msg.payload)
        assert msg.retain and doc["ended"] == last_ended and doc["night_id"] == ids[-1]
        assert doc["time_in_bed_min"] > 30
    finally:
        assert stop_daemon(proc) == 0, (tmp_path / "d.log").read_text()
