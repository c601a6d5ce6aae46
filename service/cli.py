"""The ``bedside`` command: run, analyze, validate-config, web.

Exit codes: 0 success; 1 runtime failure; 2 bad command line (argparse); 3 invalid
configuration; 4 unreadable recording or sensor; 5 database problem. Errors are one clear
message on stderr, never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from hardware.timing import SettingError
from service import __version__
from service.errors import BedsideError, ConfigError, RecordingError, SensorError, StoreError

logger = logging.getLogger("bedside")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG, EXIT_INPUT, EXIT_STORE = 0, 1, 2, 3, 4, 5


def _setup_logging(level: str) -> None:
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):  # journald adds its own timestamps
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bedside",
        description="Bedside movement monitor: counts and reports movements in bed; never diagnoses.",
    )
    p.add_argument("--version", action="version", version=f"bedside {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (simulated sensor by default)")
    _sensor_args(run)
    run.add_argument("--db", help="SQLite database file")
    run.add_argument("--mqtt-host", help="MQTT broker host")
    run.add_argument("--mqtt-port", type=int, help="MQTT broker port")
    run.add_argument("--no-mqtt", action="store_true", help="do not connect to a broker")
    run.add_argument("--unit-id", help="name of this unit (topics, ids)")
    run.add_argument("--web-port", type=int, help="dashboard port")
    run.add_argument("--no-web", action="store_true", help="do not start the dashboard")

    an = sub.add_parser("analyze", help="run the detector over a recording and print what it finds")
    an.add_argument("recording", help="CSV file, or .npy array of samples (needs --rate-hz)")
    an.add_argument("--rate-hz", type=float, help="sample rate (else from the time column)")
    an.add_argument("--column", help="CSV column with the signal")
    an.add_argument("--time-column", help="CSV column with time stamps")
    an.add_argument("--time-unit", choices=["ms", "s"], default="ms", help="unit of the time column")
    an.add_argument("--profile", choices=["aasm", "wasm2016"], help="rule profile for PLM series")
    an.add_argument("--config", help="config file whose [detector] section to use")
    an.add_argument("--json", action="store_true", help="print the full JSON document")

    ss = sub.add_parser("score-sleep", help="score sleep/wake from epoch activity counts (CSV or .AWD)")
    ss.add_argument("counts", help="CSV of counts per epoch, or an Actiwatch .AWD export")
    ss.add_argument(
        "--epoch-s", type=float, choices=[30.0, 60.0], help="epoch length (CSV; .AWD says its own)"
    )
    ss.add_argument("--column", help="CSV column with the counts")
    ss.add_argument("--time-column", help="CSV time column (accepted; epochs are taken as contiguous)")
    ss.add_argument("--config", help="config file whose [detector] section to use")
    ss.add_argument("--json", action="store_true", help="print the full JSON document")

    pr = sub.add_parser("probe", help="show the live signal level, achieved rate and jitter")
    _sensor_args(pr)
    pr.add_argument("--seconds", type=float, default=10.0, help="how long to watch (default 10)")
    pr.add_argument("--json", action="store_true", help="one JSON object per second")

    cal = sub.add_parser("calibrate", help="guided: empty bed, lying still, tap test; saves the levels")
    _sensor_args(cal)
    cal.add_argument("--db", help="SQLite database file (where the calibration is kept)")
    cal.add_argument("--empty-s", type=float, default=60.0, help="seconds of empty bed (default 60)")
    cal.add_argument("--still-s", type=float, default=60.0, help="seconds lying still (default 60)")
    cal.add_argument("--tap-s", type=float, default=15.0, help="seconds of the tap test (default 15)")
    cal.add_argument("--yes", action="store_true", help="do not wait for Enter between steps")

    st = sub.add_parser("status", help="health of the unit from its database; exit 1 when unhealthy")
    st.add_argument("--config", help="TOML config file")
    st.add_argument("--db", help="SQLite database file")
    st.add_argument("--json", action="store_true", help="print the health document as JSON")

    vc = sub.add_parser("validate-config", help="check a config file; exit 0 if valid")
    vc.add_argument("path", nargs="?", help="TOML config file")
    vc.add_argument("--explain", action="store_true", help="print every key with its default and meaning")

    web = sub.add_parser("web", help="serve the dashboard (waitress)")
    web.add_argument("--config", help="TOML config file")
    web.add_argument("--db", help="SQLite database file")
    web.add_argument("--host", help="listen address")
    web.add_argument("--port", type=int, help="listen port")
    web.add_argument("--unit-id", help="unit name")
    return p


def _sensor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: $BEDSIDE_CONFIG or built-in defaults)")
    p.add_argument("--sensor", help="simulated | replay:PATH | piezo | imu")
    p.add_argument("--speed", type=float, help="simulated/replay speed (1 = real time, 0 = fastest)")
    p.add_argument("--duration-s", type=float, help="length of the simulated night in seconds")
    p.add_argument("--seed", type=int, help="seed of the simulated night")
    p.add_argument("--rate-hz", type=float, help="sampling rate in Hz")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            o.setdefault(section, {})[key] = value

    if args.sensor:
        if args.sensor.startswith("replay:"):
            put("sensor", "kind", "replay")
            put("sensor", "replay_path", args.sensor[len("replay:") :])
        else:
            put("sensor", "kind", args.sensor)
    put("sensor", "speed", args.speed)
    put("sensor", "sim_duration_s", args.duration_s)
    put("sensor", "seed", args.seed)
    is_replay = bool(args.sensor and args.sensor.startswith("replay:"))
    put("sensor", "replay_rate_hz" if is_replay else "rate_hz", args.rate_hz)
    put("storage", "db_path", getattr(args, "db", None))
    put("mqtt", "host", getattr(args, "mqtt_host", None))
    put("mqtt", "port", getattr(args, "mqtt_port", None))
    if getattr(args, "no_mqtt", False):
        put("mqtt", "enabled", False)
    put("web", "port", getattr(args, "web_port", None))
    if getattr(args, "no_web", False):
        put("web", "enabled", False)
    put("logging", "level", args.log_level)
    if getattr(args, "unit_id", None):
        o["unit_id"] = args.unit_id
    return o


def _cmd_run(args: argparse.Namespace) -> int:
    from service.app import Daemon
    from service.config import load_config
    from service.sources import make_source

    cfg = load_config(args.config, overrides=_run_overrides(args))
    _setup_logging(cfg.logging.level)
    source, label = make_source(cfg.sensor)
    if cfg.sensor.kind == "piezo":
        # The sampler is a Python thread: let it take the GIL within 0.5 ms of its deadline
        # instead of the default 5 ms (hardware/README.md, "timing").
        sys.setswitchinterval(0.0005)
    logger.info("bedside %s starting: unit %s, %s", __version__, cfg.unit_id, label)
    return asyncio.run(Daemon(cfg, source, label).run())


def _cmd_analyze(args: argparse.Namespace) -> int:
    from hardware.replay import load_recording
    from service.analyze import analysis_json
    from service.config import load_config

    overrides = {"detector": {"profile": args.profile}} if args.profile else None
    cfg = load_config(args.config, overrides=overrides)
    rec = load_recording(
        args.recording,
        column=args.column,
        rate_hz=args.rate_hz,
        time_column=args.time_column,
        time_unit=args.time_unit,
    )
    doc = analysis_json(rec.samples, rec.rate_hz, cfg.detector_params())
    if args.json:
        json.dump(doc, sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
    else:
        r = doc["recording"]
        print(
            f"{args.recording}: {r['samples']} samples at {r['rate_hz']:g} Hz "
            f"({r['duration_s'] / 60:.1f} min)"
        )
        for e in doc["events"]:
            print(f"  {e['start_s']:10.2f} s  {e['type']:<15} {e['duration_s']:7.2f} s  x{e['intensity']}")
        print(f"summary: {json.dumps(doc['summary'])}")
    return EXIT_OK


def _cmd_score_sleep(args: argparse.Namespace) -> int:
    from hardware.actigraphy import read_awd, read_counts_csv
    from service.config import load_config
    from service.score_sleep import score_json

    cfg = load_config(args.config)
    if args.counts.lower().endswith(".awd"):
        data = read_awd(args.counts)
    else:
        if not args.column or not args.epoch_s:
            print("bedside score-sleep: a CSV needs --column and --epoch-s", file=sys.stderr)
            return EXIT_USAGE
        data = read_counts_csv(args.counts, args.column, args.epoch_s)
    doc = score_json(data, cfg.detector_params())
    if args.json:
        json.dump(doc, sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
        return EXIT_OK
    s = doc["summary"]
    print(f"{data.source}: {doc['recording']['epochs']} epochs of {data.epoch_s:g} s")

    def clock(t_s: float) -> str:
        return "?" if data.start is None else (data.start + timedelta(seconds=t_s)).strftime("%a %H:%M")

    for night in doc.get("nights", []):
        ours, ck = night["main_sleep"], night["cole_kripke"]
        line = f"  night of {night['night']}: "
        if ours is None:
            line += "no main sleep"
        else:
            line += f"{clock(ours['sleep_onset_s'])} .. {clock(ours['sleep_offset_s'])}"
            line += f", WASO {ours['waso_min']:.0f} min, {ours['awakenings']} awakenings"
        if ck is not None:
            line += f"   (Cole-Kripke {clock(ck['sleep_onset_s'])} .. {clock(ck['sleep_offset_s'])})"
        print(line)
    print(f"summary: {json.dumps(s)}")
    return EXIT_OK


def _cmd_probe(args: argparse.Namespace) -> int:
    from service.config import load_config
    from service.probe import run_probe
    from service.sources import make_source

    overrides = _run_overrides(args)
    if args.speed is None:
        overrides.setdefault("sensor", {})["speed"] = 1.0  # watch a simulation in real time
    cfg = load_config(args.config, overrides=overrides)
    _setup_logging(cfg.logging.level)
    source, label = make_source(cfg.sensor)
    print(f"probing {label} for {args.seconds:g} s (Ctrl-C stops)", flush=True)
    return run_probe(source, args.seconds, args.json)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from service.calibrate import calibrate, phases
    from service.config import load_config
    from service.sources import make_source
    from service.store.store import Store
    from service.timefmt import iso_utc, utc_now

    cfg = load_config(args.config, overrides=_run_overrides(args))
    _setup_logging(cfg.logging.level)
    if not args.yes and not sys.stdin.isatty():
        print("bedside calibrate: needs a terminal to wait for Enter, or --yes", file=sys.stderr)
        return EXIT_USAGE
    source, label = make_source(cfg.sensor)

    def ask(text: str) -> None:
        print(text, flush=True)
        if not args.yes:
            input()

    async def go() -> int:
        print(f"Calibrating {label}.", flush=True)
        steps = phases(args.empty_s, args.still_s, args.tap_s)
        bits = getattr(source, "bits", None)
        full_scale = float(2**bits - 1) if isinstance(bits, int) else None
        result = await calibrate(source, steps=steps, ask=ask, say=print, full_scale=full_scale)
        store = await Store.open(cfg.storage.db_path, cfg.storage.busy_timeout_s)
        try:
            await store.add_calibration(
                iso_utc(utc_now()),
                cfg.sensor.kind,
                source.rate_hz,
                result.usable,
                result.values,
                result.verdict,
            )
        finally:
            await store.close()
        print(json.dumps(result.values, indent=2))
        if result.usable:
            print(f"Calibration saved: the signal is usable (heart rate seen: {result.values['heart_bpm']}).")
            return EXIT_OK
        print("The signal is NOT usable:", file=sys.stderr)
        for reason in result.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return EXIT_FAILURE

    return asyncio.run(go())


def _cmd_status(args: argparse.Namespace) -> int:
    from service.config import load_config
    from service.status import health, print_health

    cfg = load_config(args.config, overrides={"storage": {"db_path": args.db}} if args.db else None)
    doc = health(cfg.storage.db_path, cfg.unit_id)
    if args.json:
        print(json.dumps(doc))
    else:
        print_health(doc)
    return EXIT_OK if doc["healthy"] else EXIT_FAILURE


def _cmd_validate(args: argparse.Namespace) -> int:
    from service.config import explain, load_config

    if args.explain:
        print(explain(), end="")
        return EXIT_OK
    if not args.path:
        print("bedside validate-config: give a config file path (or --explain)", file=sys.stderr)
        return EXIT_USAGE
    load_config(args.path, environ={})
    print(f"{args.path}: valid")
    return EXIT_OK


def _cmd_web(args: argparse.Namespace) -> int:
    from service.config import load_config
    from web.serve import serve

    overrides: dict[str, Any] = {}
    if args.db:
        overrides["storage"] = {"db_path": args.db}
    web: dict[str, Any] = {}
    if args.host:
        web["host"] = args.host
    if args.port is not None:
        web["port"] = args.port
    if web:
        overrides["web"] = web
    if args.unit_id:
        overrides["unit_id"] = args.unit_id
    cfg = load_config(args.config, overrides=overrides)
    _setup_logging(cfg.logging.level)
    serve(cfg.storage.db_path, host=cfg.web.host, port=cfg.web.port, unit_id=cfg.unit_id)
    return EXIT_OK


COMMANDS = {
    "run": _cmd_run,
    "analyze": _cmd_analyze,
    "score-sleep": _cmd_score_sleep,
    "probe": _cmd_probe,
    "calibrate": _cmd_calibrate,
    "status": _cmd_status,
    "validate-config": _cmd_validate,
    "web": _cmd_web,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bedside`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except EOFError:
        print("bedside: input ended before the procedure finished", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, SettingError) as exc:
        print(f"bedside: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (RecordingError, SensorError) as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except StoreError as exc:
        print(f"bedside: database error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except BedsideError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
