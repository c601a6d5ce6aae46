"""The ``bedside`` command: run, analyze, validate-config, web; nights, report, export, tag, checkin.

Exit codes: 0 success; 1 runtime failure; 2 bad command line (argparse), or bad input the
history commands refuse (unknown night id, malformed date or tag, an output path that would
overwrite an export); 3 invalid configuration; 4 unreadable recording or sensor (also: the
night's whole raw signal, needed for EDF, was pruned); 5 database problem (missing file,
unreadable or too old a schema). Errors are one clear message on stderr, never a traceback
for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from hardware.timing import SettingError
from service import __version__
from service.errors import BedsideError, ConfigError, RecordingError, SensorError, StoreError

logger = logging.getLogger("bedside")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG, EXIT_INPUT, EXIT_STORE = 0, 1, 2, 3, 4, 5
#: The reader of our standard output went away (128 + SIGPIPE, what a shell tool killed by it returns).
EXIT_BROKEN_PIPE = 141


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
    web.add_argument("--require-login", action="store_true", help="require the login on loopback too")
    web.add_argument("--password-file", help="file holding the password hash (default: beside the database)")
    web.add_argument(
        "--allowed-host", action="append", metavar="NAME", help="one more Host name to answer to (repeatable)"
    )
    web.add_argument(
        "--parent-pid", type=int, help="stop when this process ends (the daemon passes its own pid)"
    )

    setpw = sub.add_parser(
        "set-password", help="set the dashboard password (needed when it listens beyond loopback)"
    )
    setpw.add_argument("--config", help="TOML config file")
    setpw.add_argument("--db", help="SQLite database file (the password file goes beside it)")
    setpw.add_argument("--stdin", action="store_true", help="read the password from one line of stdin")
    _history_parsers(sub)
    _doctor_parser(sub)
    return p


def _doctor_parser(sub: Any) -> None:
    doc = sub.add_parser(
        "doctor",
        help="check SPI/I2C, groups, pins, sensor, broker, database, clock, units; exit 1 on a problem",
    )
    doc.add_argument(
        "--config", help="TOML config (default: $BEDSIDE_CONFIG, else /etc/bedside/bedside.toml)"
    )
    doc.add_argument("--db", help="SQLite database file (default: storage.db_path of the config)")
    doc.add_argument("--user", default="bedside", help="the service user (default bedside)")
    doc.add_argument("--seconds", type=float, default=3.0, help="how long to read the sensor (default 3)")
    doc.add_argument("--json", action="store_true", help="print the findings as JSON")


def _cmd_doctor(args: argparse.Namespace) -> int:
    from service.config import load_config
    from service.doctor import DoctorOptions, failed, print_findings, run_checks

    path = args.config or os.environ.get("BEDSIDE_CONFIG")
    if path is None and os.path.exists("/etc/bedside/bedside.toml"):
        path = "/etc/bedside/bedside.toml"
    cfg = load_config(path, overrides={"storage": {"db_path": args.db}} if args.db else None)
    findings = run_checks(cfg, DoctorOptions(user=args.user, sensor_seconds=args.seconds))
    print_findings(findings, as_json=args.json)
    return EXIT_FAILURE if failed(findings) else EXIT_OK


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: $BEDSIDE_CONFIG or built-in defaults)")
    p.add_argument("--db", help="SQLite database file (default: storage.db_path of the config)")


def _history_parsers(sub: Any) -> None:
    """The history commands: nights, report, export, tag, checkin."""
    ni = sub.add_parser("nights", help="list the recorded nights, newest first")
    _db_args(ni)
    ni.add_argument("--last", type=_positive_int, default=14, help="how many nights (default 14)")
    ni.add_argument(
        "--kind", choices=["night", "nap", "all"], default="all", help="which sessions (default all)"
    )
    ni.add_argument(
        "--tz", help="IANA time zone for clock times (default: sessions.timezone or the system's)"
    )
    ni.add_argument("--json", action="store_true", help="print a JSON list (each night with its summary)")
    ni.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    rep = sub.add_parser("report", help="write the printable HTML report over the last nights")
    _db_args(rep)
    rep.add_argument("--last", type=_positive_int, default=14, help="how many nights (default 14)")
    rep.add_argument("--out", required=True, help="HTML file to write ('-' for standard output)")
    rep.add_argument(
        "--tz", help="IANA time zone for clock times (default: sessions.timezone or the system's)"
    )
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    ex = sub.add_parser(
        "export",
        help="export nights as CSV tables (folder or .zip) or one night as EDF+",
        description="CSV: nights, events, epochs, vitals, tags, checkins (docs/exports.md). "
        "EDF+: one night's whole raw signal with events as annotations.",
    )
    _db_args(ex)
    which = ex.add_mutually_exclusive_group(required=True)
    which.add_argument("--night", metavar="ID", help="the night's id (see `bedside nights`)")
    which.add_argument("--all", action="store_true", help="every night (CSV only)")
    which.add_argument(
        "--from", dest="from_date", metavar="YYYY-MM-DD", help="nights from this date (CSV only)"
    )
    ex.add_argument("--to", dest="to_date", metavar="YYYY-MM-DD", help="...up to this date (with --from)")
    ex.add_argument("--format", choices=["csv", "edf"], required=True, help="csv or edf")
    ex.add_argument(
        "--out", required=True, help="csv: a new folder, or a file ending in .zip; edf: the .edf file"
    )
    ex.add_argument("--patient-code", default="", help="EDF patient code (default: anonymous)")
    ex.add_argument("--tz", help="IANA time zone for the nights' local hours (default as configured)")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    tg = sub.add_parser("tag", help="tag a night with an intervention, or list the tags")
    _db_args(tg)
    tg.add_argument(
        "tag", nargs="?", help="stretching, heat, medication, caffeine, alcohol, late_exercise, custom"
    )
    tg.add_argument("--date", help="the night's evening date, YYYY-MM-DD")
    tg.add_argument("--detail", default="", help="medication or custom tag name (needed for those)")
    tg.add_argument("--at", dest="at_local", metavar="HH:MM", help="local time taken or done")
    tg.add_argument("--list", action="store_true", help="list the tags (of --date, or all)")
    tg.add_argument("--remove", type=int, metavar="TAG_ID", help="remove the tag with this id (see --list)")

    ci = sub.add_parser("checkin", help="record the morning check-in for a night")
    _db_args(ci)
    ci.add_argument("--date", required=True, help="the night's evening date, YYYY-MM-DD")
    ci.add_argument(
        "--quality", type=int, choices=range(1, 6), metavar="1-5", help="sleep quality, 1 poor .. 5 good"
    )
    ci.add_argument(
        "--severity",
        type=int,
        choices=range(1, 6),
        metavar="1-5",
        help="spasm severity, 1 none/mild .. 5 severe",
    )
    ci.add_argument("--note", default="", help="free text")

    dh = sub.add_parser(
        "demo-history", help="fill a database with simulated past nights, tags and check-ins (for a demo)"
    )
    _db_args(dh)
    dh.add_argument("--nights", type=_positive_int, default=30, help="how many nights (default 30)")
    dh.add_argument("--rate-hz", type=float, default=50.0, help="simulated sample rate (default 50)")
    dh.add_argument("--seed", type=int, default=0, help="seed of the simulated nights")
    dh.add_argument("--if-empty", action="store_true", help="do nothing when the database already has nights")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    from service.signal_check import recording_problems

    overrides = {"detector": {"profile": args.profile}} if args.profile else None
    cfg = load_config(args.config, overrides=overrides)
    rec = load_recording(
        args.recording,
        column=args.column,
        rate_hz=args.rate_hz,
        time_column=args.time_column,
        time_unit=args.time_unit,
    )
    for problem in recording_problems(rec.samples):
        print(f"bedside analyze: warning: {problem}", file=sys.stderr)
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
    if doc.get("damaged"):
        return EXIT_STORE
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
    if args.require_login:
        web["require_login"] = True
    if args.password_file:
        web["password_file"] = args.password_file
    if args.allowed_host:
        web["allowed_hosts"] = args.allowed_host
    if web:
        overrides["web"] = web
    if args.unit_id:
        overrides["unit_id"] = args.unit_id
    cfg = load_config(args.config, overrides=overrides)
    _setup_logging(cfg.logging.level)
    serve(
        cfg.storage.db_path,
        host=cfg.web.host,
        port=cfg.web.port,
        unit_id=cfg.unit_id,
        require_login=cfg.web.require_login,
        password_file=cfg.web.password_file,
        parent_pid=args.parent_pid,
        allowed_hosts=list(cfg.web.allowed_hosts),
    )
    return EXIT_OK


def _cmd_set_password(args: argparse.Namespace) -> int:
    """Ask for the dashboard password twice (or read one line from stdin) and store its hash.

    Often run as root in the service user's folder (docs/install.md), so the file is written
    without following links (``web.security.write_password_file``) and, as root, handed to
    the folder's owner on its descriptor: a link planted there is refused, never written through."""
    import getpass

    from service.config import load_config
    from service.store.files import check_not_a_link
    from web.security import PasswordError, password_file_beside, write_password_file

    cfg = load_config(args.config, overrides={"storage": {"db_path": args.db}} if args.db else None)
    try:
        # The default file is beside the database; a database path that is a link would move it.
        check_not_a_link(cfg.storage.db_path, "database file")
    except OSError as exc:
        print(f"bedside set-password: {exc}; nothing changed", file=sys.stderr)
        return EXIT_STORE
    path = cfg.web.password_file or str(password_file_beside(cfg.storage.db_path))
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New dashboard password: ")
        if getpass.getpass("Again: ") != password:
            print("bedside set-password: the two passwords differ; nothing changed", file=sys.stderr)
            return EXIT_USAGE
    try:
        write_password_file(path, password, give_to_folder_owner=True)
    except PasswordError as exc:
        print(f"bedside set-password: {exc}; nothing changed", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"bedside set-password: cannot write {path}: {exc}; nothing changed", file=sys.stderr)
        return EXIT_FAILURE
    print(f"dashboard password stored (hash only) in {path}; it takes effect at the next login")
    return EXIT_OK


# --- history commands: nights, report, export, tag, checkin ------------------------------------


def _history(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the history errors into the documented exit codes, with the command's name."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        import sqlite3

        from service.export import ExportError, RawSignalMissingError
        from service.history.user_data import UserDataError

        name = f"bedside {args.command}"
        try:
            return fn(args)
        except RawSignalMissingError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except (ExportError, UserDataError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except sqlite3.Error as exc:
            print(
                f"{name}: database error: {exc} (is this a Bedside database of this version?)",
                file=sys.stderr,
            )
            return EXIT_STORE

    return wrapper


def _history_db(args: argparse.Namespace, *, readonly: bool = True) -> tuple[Any, Any]:
    """The configuration and a connection to its database (``--db`` wins over the config)."""
    from service.config import load_config
    from service.history.load import connect
    from service.store.store import check_integrity

    cfg = load_config(args.config, overrides={"storage": {"db_path": args.db}} if args.db else None)
    if os.path.isfile(cfg.storage.db_path):  # (connect names a missing one)
        check_integrity(cfg.storage.db_path)  # a damaged file is named, never read on or written
    return cfg, connect(cfg.storage.db_path, readonly=readonly)


def _zone(args: argparse.Namespace, cfg: Any) -> Any:
    """``--tz``, else ``sessions.timezone``, as a ZoneInfo; None means the system's local zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from service.export import ExportError

    name = getattr(args, "tz", None) or getattr(getattr(cfg, "sessions", None), "timezone", None)
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExportError(f"unknown time zone {name!r} (give an IANA name such as Europe/Berlin)") from None


def _check_out_parent(path: str) -> None:
    from pathlib import Path

    from service.export import ExportError

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise ExportError(f"cannot write {path}: folder {parent} does not exist")


@_history
def _cmd_nights(args: argparse.Namespace) -> int:
    from service.history.load import in_progress, list_nights, load_night, tags_by_date
    from service.history.summary import summarize_night
    from service.progress import Progress
    from service.timefmt import parse_iso_utc

    cfg, conn = _history_db(args)
    with conn:
        tz = _zone(args, cfg)
        rows = list_nights(conn, kind=None if args.kind == "all" else args.kind, limit=args.last)
        tags = tags_by_date(conn)
        raw = {r[0] for r in conn.execute("SELECT DISTINCT night_id FROM raw_chunks")}
        docs: list[dict[str, Any]] = []
        # Each night is summarised again from its rows (so relabels count), which takes a while
        # for a long --last: a bar, on a terminal only, like report and export.
        with Progress("summarising nights", total=len(rows), quiet=args.quiet) as bar:
            for row in rows:
                data = load_night(conn, row["id"])
                summary = summarize_night(data, tz=tz) if data is not None else None
                bar.advance()
                docs.append(
                    {
                        **{
                            k: row.get(k)
                            for k in ("id", "night_date", "kind", "started_at", "ended_at", "profile")
                        },
                        "in_progress": in_progress(row),
                        "raw_signal_kept": row["id"] in raw,
                        "tags": tags.get(str(row.get("night_date")), []),
                        "summary": summary,
                    }
                )
    conn.close()
    if args.json:
        json.dump(docs, sys.stdout, separators=(",", ":"))
        sys.stdout.write("\n")
        return EXIT_OK
    if not docs:
        print("no nights recorded yet")
        return EXIT_OK

    def hm(minutes: Any) -> str:
        return "-" if minutes is None else f"{round(minutes) // 60}:{round(minutes) % 60:02d}"

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = f"{'night of':<10} {'kind':<5} {'bed':>5} {'in bed':>6} {'sleep':>5} {'eff%':>4} "
    head += f"{'awak':>6} {'index/h':>7} {'PLM':>3} {'spasm':>5} {'EDF':>3}  id  tags"
    print(head)
    for d in docs:
        s = d["summary"] or {}
        bed = parse_iso_utc(d["started_at"]).astimezone(tz).strftime("%H:%M")
        awak = f"{s.get('awakenings', 0)}({s.get('awakenings_after_movement', 0)})"
        tag_text = ",".join(t["tag"] + (f":{t['detail']}" if t.get("detail") else "") for t in d["tags"])
        if d["in_progress"]:  # its figures so far would read as a short, bad night
            print(
                f"{d['night_date'] or '-':<10} {d['kind']:<5} {bed:>5} {'in progress':<42} "
                f"{'yes' if d['raw_signal_kept'] else 'no':>3}  {d['id']}  {tag_text}"
            )
            continue
        print(
            f"{d['night_date'] or '-':<10} {d['kind']:<5} {bed:>5} {hm(s.get('time_in_bed_min')):>6} "
            f"{hm(s.get('total_sleep_min')):>5} {num(s.get('efficiency_pct'), '.0f'):>4} {awak:>6} "
            f"{num(s.get('movement_index_per_h'), '.1f'):>7} {s.get('plm_series', 0):>3} "
            f"{(s.get('spasms') or {}).get('count', 0):>5} {'yes' if d['raw_signal_kept'] else 'no':>3}  "
            f"{d['id']}  {tag_text}"
        )
    return EXIT_OK


@_history
def _cmd_report(args: argparse.Namespace) -> int:
    from service.export.report import render_report
    from service.progress import progress_callback

    if args.out != "-":
        _check_out_parent(args.out)
    cfg, conn = _history_db(args)
    try:
        tz = _zone(args, cfg)
        with progress_callback("reading nights", quiet=args.quiet) as step:
            html = render_report(conn, last=args.last, tz=tz, progress=step)
    finally:
        conn.close()
    if args.out == "-":
        sys.stdout.write(html)
        return EXIT_OK
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(html)
    print(f"wrote {args.out}")
    return EXIT_OK


@_history
def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.export import ExportError
    from service.progress import progress_callback

    if args.to_date and not args.from_date:
        raise ExportError("--to needs --from")
    _check_out_parent(args.out)
    cfg, conn = _history_db(args)
    try:
        if args.format == "edf":
            from service.export.edf import write_edf

            if not args.night:
                raise ExportError("EDF export is one night at a time: give --night ID (see `bedside nights`)")
            if Path(args.out).exists():
                raise ExportError(f"{args.out} already exists; give a new file name")
            with progress_callback("writing EDF", quiet=args.quiet) as step:
                res = write_edf(conn, args.night, args.out, patient_code=args.patient_code, progress=step)
            print(
                f"wrote {res.path}: {res.samples} samples at {res.rate_hz:g} Hz from "
                f"{res.start.isoformat()}, {res.annotations} annotations, {res.gap_s:g} s of gaps filled"
            )
            return EXIT_OK
        from service.export.csv_export import export_csv, select_nights

        ids = select_nights(conn, night_id=args.night, from_date=args.from_date, to_date=args.to_date)
        if not ids and not args.all:
            raise ExportError(f"no nights from {args.from_date} to {args.to_date or 'now'}")
        tz = _zone(args, cfg)
        with progress_callback("exporting nights", quiet=args.quiet) as step:
            done = export_csv(conn, ids, args.out, all_user_data=args.all, tz=tz, progress=step)
    finally:
        conn.close()
    where = done.files[0] if len(done.files) == 1 else args.out
    rows = done.rows
    print(f"wrote {len(rows)} CSV tables to {where}: {rows['nights']} nights, {rows['events']} events")
    return EXIT_OK


@_history
def _cmd_tag(args: argparse.Namespace) -> int:
    from service.history.load import tags_by_date
    from service.history.user_data import TAGS_NEEDING_DETAIL, UserDataError, add_tag, remove_tag

    if args.list:
        _cfg, conn = _history_db(args)
        try:
            tags = tags_by_date(conn)
        finally:
            conn.close()
        if args.date:
            tags = {args.date: tags.get(args.date, [])}
        print(f"{'id':>5}  {'night of':<10}  {'tag':<14} {'at':<5}  detail")
        for night_date, items in tags.items():
            for t in items:
                print(
                    f"{t['id']:>5}  {night_date:<10}  {t['tag']:<14} {t['at_local'] or '-':<5}  {t['detail']}"
                )
        return EXIT_OK
    if args.remove is not None:
        _cfg, conn = _history_db(args, readonly=False)
        try:
            if not remove_tag(conn, args.remove):
                raise UserDataError(f"no tag with id {args.remove} (see `bedside tag --list`)")
        finally:
            conn.close()
        print(f"removed tag {args.remove}")
        return EXIT_OK
    if not args.tag or not args.date:
        raise UserDataError("give --date YYYY-MM-DD and a TAG (or --list, or --remove TAG_ID)")
    if args.tag in TAGS_NEEDING_DETAIL and not args.detail.strip():
        raise UserDataError(f"a {args.tag} tag needs --detail NAME (the {args.tag}'s name)")
    _cfg, conn = _history_db(args, readonly=False)
    try:
        tag_id = add_tag(conn, args.date, args.tag, detail=args.detail, at_local=args.at_local, source="cli")
    finally:
        conn.close()
    what = (
        args.tag
        + (f" ({args.detail})" if args.detail else "")
        + (f" at {args.at_local}" if args.at_local else "")
    )
    print(f"night of {args.date}: tagged {what} (tag id {tag_id})")
    return EXIT_OK


@_history
def _cmd_checkin(args: argparse.Namespace) -> int:
    from service.history.user_data import UserDataError, set_checkin

    if args.quality is None and args.severity is None and not args.note:
        raise UserDataError("give at least one of --quality, --severity or --note")
    _cfg, conn = _history_db(args, readonly=False)
    try:
        set_checkin(conn, args.date, sleep_quality=args.quality, spasm_severity=args.severity, note=args.note)
    finally:
        conn.close()
    print(f"night of {args.date}: check-in saved")
    return EXIT_OK


def _cmd_demo_history(args: argparse.Namespace) -> int:
    import sqlite3
    from pathlib import Path

    from service.config import load_config
    from service.demo_history import build_history
    from service.sessions import rules_from_config

    cfg = load_config(args.config)
    db = Path(args.db or cfg.storage.db_path)
    if args.if_empty and db.exists():
        conn = sqlite3.connect(db)
        try:
            has = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'nights'").fetchone()[0]
            if has and conn.execute("SELECT count(*) FROM nights").fetchone()[0]:
                print(f"{db} already has nights: left as it is")
                return EXIT_OK
        finally:
            conn.close()
    print(f"simulating {args.nights} nights into {db} (about a second each) ...", file=sys.stderr)
    rules = rules_from_config(cfg.sessions)
    ids = build_history(
        db,
        nights=args.nights,
        rate_hz=args.rate_hz,
        seed=args.seed,
        raw_days=cfg.storage.raw_retention_days,
        tz=rules.tz,
        rules=rules,
    )
    print(f"{len(ids)} simulated nights written to {db}")
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
    "set-password": _cmd_set_password,
    "nights": _cmd_nights,
    "report": _cmd_report,
    "export": _cmd_export,
    "tag": _cmd_tag,
    "checkin": _cmd_checkin,
    "demo-history": _cmd_demo_history,
    "doctor": _cmd_doctor,
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
    except BrokenPipeError:
        # The reader went away (``bedside analyze --json | head``): stop quietly, as a shell tool
        # killed by SIGPIPE would, and keep Python's exit-time flush from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
