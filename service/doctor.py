"""`bedside doctor`: after an install, check what a night needs, each in one sentence with a fix.

Each check returns a :class:`Finding`: ``ok``, ``warn`` (worth knowing, a night still works) or
``fail`` (something that would spoil a night). ``bedside doctor`` exits 1 when any check fails.
The checks, in order: the configured bus (SPI or I2C device node), the service user's groups,
lgpio and gpiozero's pin factory, the sensor answering with a reading that varies, the broker
with the configured credentials, the database writable, free disk, the clock synchronised, the
units' state. Hardware libraries are imported inside the checks (as in ``service.sources``).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import pwd
import shutil
import sqlite3
import ssl
import subprocess
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.config import Config, MqttConfig, read_secret
from service.errors import BedsideError, ConfigError
from service.status import MIN_FREE_BYTES

Level = Literal["ok", "warn", "fail"]

#: Where the installer keeps the MQTT password (the unit hands it over with LoadCredential=).
INSTALLED_CREDENTIALS = Path("/etc/bedside/credentials")
UNITS = ("bedside.service", "bedside-web.service")


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: a plain sentence and, unless ok, what to do about it."""

    check: str
    level: Level
    message: str
    fix: str = ""


@dataclass
class DoctorOptions:
    """What the checks look at. The defaults are an installed Pi; tests point them elsewhere."""

    user: str = "bedside"
    dev_dir: Path = Path("/dev")
    sensor_seconds: float = 3.0
    credentials_dir: Path = INSTALLED_CREDENTIALS
    systemctl: str = "systemctl"
    timedatectl: str = "timedatectl"
    units: Sequence[str] = UNITS
    mqtt_timeout_s: float = 5.0
    #: Builds the configured sample source (``service.sources.make_source`` unless a test says).
    make_source: Callable[[Any], tuple[Any, str]] | None = None
    extra_groups: tuple[str, ...] = field(default_factory=tuple)


# --- the bus and the groups ------------------------------------------------------------------


def check_bus(cfg: Config, opts: DoctorOptions) -> Finding:
    """The device node of the configured sensor's bus exists (SPI for the piezo, I2C for the IMU)."""
    kind = cfg.sensor.kind
    if kind in ("simulated", "replay"):
        return Finding(
            "sensor kind",
            "fail",
            f"sensor.kind is {kind!r}: the unit records a {kind} signal, not the bed.",
            'set kind = "piezo" (MCP3008/MCP3208 on SPI) or kind = "imu" (MPU-6050 on I2C) under '
            "[sensor] in /etc/bedside/bedside.toml, then: sudo systemctl restart bedside",
        )
    if kind == "piezo":
        node = opts.dev_dir / f"spidev0.{cfg.sensor.spi_device}"
        if node.exists():
            return Finding("spi", "ok", f"SPI is on ({node} exists).")
        return Finding(
            "spi",
            "fail",
            f"SPI is off: {node} does not exist, so the piezo's ADC cannot be read.",
            "sudo raspi-config nonint do_spi 0 && sudo reboot",
        )
    node = opts.dev_dir / f"i2c-{cfg.sensor.i2c_bus}"
    if node.exists():
        return Finding("i2c", "ok", f"I2C is on ({node} exists).")
    return Finding(
        "i2c",
        "fail",
        f"I2C is off: {node} does not exist, so the MPU-6050 cannot be read.",
        "sudo raspi-config nonint do_i2c 0 && sudo reboot",
    )


def needed_groups(cfg: Config) -> tuple[str, ...]:
    """The device groups the service user needs for this config (gpio for button, LED, lgpio)."""
    bus = {"piezo": ("spi",), "imu": ("i2c",)}.get(cfg.sensor.kind, ())
    return ("gpio", *bus)


def check_groups(cfg: Config, opts: DoctorOptions) -> Finding:
    """The service user exists and is in the groups that open the device nodes."""
    try:
        user = pwd.getpwnam(opts.user)
    except KeyError:
        return Finding(
            "user",
            "fail",
            f"there is no user {opts.user!r} for the service to run as.",
            "sudo ./systemd/install.sh (it creates the user and adds it to gpio, spi and i2c)",
        )
    wanted = needed_groups(cfg) + opts.extra_groups
    member: set[str] = {g.gr_name for g in grp.getgrall() if opts.user in g.gr_mem}
    with contextlib.suppress(KeyError):  # a primary group without a name
        member.add(grp.getgrgid(user.pw_gid).gr_name)
    missing = [g for g in wanted if g not in member]
    if not missing:
        return Finding("groups", "ok", f"user {opts.user} is in {', '.join(wanted)}.")
    return Finding(
        "groups",
        "fail",
        f"user {opts.user} is not in {', '.join(missing)}, so it cannot open those devices.",
        " && ".join(f"sudo usermod -aG {g} {opts.user}" for g in missing),
    )


# --- GPIO -------------------------------------------------------------------------------------


def check_pins() -> list[Finding]:
    """lgpio imports and gpiozero builds its pin factory (on a Pi: LGPIOFactory on /dev/gpiochip*)."""
    from gpiozero import Device, GPIOZeroError, PinFactoryFallback

    out: list[Finding] = []
    try:
        with warnings.catch_warnings(record=True) as fallbacks:  # gpiozero says why each one failed
            warnings.simplefilter("always", PinFactoryFallback)
            factory = Device.pin_factory or Device._default_pin_factory()
        Device.pin_factory = factory
    except (GPIOZeroError, OSError, ImportError) as exc:
        why = "; ".join(str(w.message).removeprefix("Falling back from ") for w in fallbacks) or str(exc)
        return [
            Finding(
                "pins",
                "fail",
                f"gpiozero has no usable pin factory ({why}).",
                "sudo apt install python3-lgpio, and check that the user can open /dev/gpiochip0",
            )
        ]
    name = type(factory).__name__
    mock = name.startswith("Mock")
    try:
        import lgpio  # noqa: F401
    except ImportError as exc:
        if mock:
            out.append(
                Finding("lgpio", "warn", f"lgpio is not importable ({exc}); pins are gpiozero's mock.")
            )
        else:
            out.append(
                Finding(
                    "lgpio",
                    "fail",
                    f"lgpio is not importable ({exc}): gpiozero cannot drive the Pi's pins.",
                    "sudo apt install python3-lgpio && sudo ./systemd/install.sh",
                )
            )
    else:
        out.append(Finding("lgpio", "ok", "lgpio is importable."))
    try:
        board = factory.board_info
        where = f" on a {board.model} rev {board.revision}" if board is not None else ""
    except (GPIOZeroError, OSError) as exc:
        return [*out, Finding("pins", "fail", f"{name} cannot tell which board this is ({exc}).", "")]
    level: Level = "warn" if mock else "ok"
    note = " (mock pins: no real GPIO is read)" if mock else ""
    out.append(Finding("pins", level, f"gpiozero's pin factory is {name}{where}{note}."))
    return out


# --- the sensor -------------------------------------------------------------------------------


def check_sensor(cfg: Config, opts: DoctorOptions, service_active: bool) -> Finding:
    """Read the configured sensor for ``sensor_seconds`` and check that the reading varies."""
    if cfg.sensor.kind in ("simulated", "replay"):
        return Finding(
            "sensor",
            "warn",
            f"no sensor read: sensor.kind is {cfg.sensor.kind!r}.",
            "see the sensor kind above",
        )
    if service_active:
        return Finding(
            "sensor",
            "warn",
            "not read: bedside.service is running and owns the sensor; its health is in `bedside status`.",
            "sudo systemctl stop bedside, run bedside doctor again, then: sudo systemctl start bedside",
        )
    from service.probe import probe
    from service.sources import make_source

    make = opts.make_source or make_source
    try:
        source, label = make(cfg.sensor)
        final = asyncio.run(probe(source, opts.sensor_seconds, report=lambda doc: None))
    except (BedsideError, OSError, ValueError) as exc:
        bus = "SPI wiring (CE0, SCLK, MOSI, MISO)" if cfg.sensor.kind == "piezo" else "I2C wiring (SDA, SCL)"
        return Finding(
            "sensor",
            "fail",
            f"the {cfg.sensor.kind} sensor did not answer: {exc}.",
            f"check the {bus} and power against hardware/README.md, then: bedside probe",
        )
    if not final:
        return Finding(
            "sensor", "fail", f"{label} gave no samples in {opts.sensor_seconds:g} s.", "bedside probe"
        )
    problems = final.get("problems") or []
    level = final["level"]
    if problems:
        return Finding(
            "sensor",
            "fail",
            f"{label} answers, but {problems[0]}.",
            "check the wiring (hardware/README.md), then watch it: bedside probe --seconds 20",
        )
    return Finding(
        "sensor",
        "ok",
        f"{label} answers: level {level['median']:g}, range {level['minimum']:g}..{level['maximum']:g}, "
        f"{final['achieved_rate_hz']:g} of {cfg.sensor.rate_hz:g} Hz.",
    )


# --- the broker -------------------------------------------------------------------------------


def _mqtt_password(cfg: MqttConfig, opts: DoctorOptions) -> str | None:
    """As the daemon reads it, plus the installer's credential file when run outside the unit."""
    password = read_secret(cfg.password_file, "mqtt_password")
    if password is None and not cfg.password_file and not os.environ.get("CREDENTIALS_DIRECTORY"):
        path = opts.credentials_dir / "mqtt_password"
        if path.exists():
            try:
                password = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {path} ({exc.strerror}): run bedside doctor with sudo"
                ) from None
    return password


def check_broker(cfg: Config, opts: DoctorOptions) -> Finding:
    """Connect to the configured broker with the configured user, password and TLS; then leave."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    m = cfg.mqtt
    where = f"{m.host}:{m.port}"
    if not m.enabled:
        return Finding(
            "broker", "warn", "MQTT is off (mqtt.enabled = false): nothing reaches Home Assistant."
        )
    try:
        password = _mqtt_password(m, opts)
    except ConfigError as exc:
        return Finding("broker", "fail", f"the MQTT password cannot be read: {exc}.", "sudo bedside doctor")
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bedside-doctor-{os.getpid()}"
    )
    if m.username:
        client.username_pw_set(m.username, password)
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        if m.tls:
            client.tls_set(
                ca_certs=m.tls_ca_file,
                certfile=m.tls_cert_file,
                keyfile=m.tls_key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.connect(m.host, m.port, keepalive=max(5, m.keepalive_s))
        client.loop_start()
        answered = done.wait(opts.mqtt_timeout_s)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Finding(
            "broker",
            "fail",
            f"the broker at {where} cannot be reached: {exc}.",
            "check mqtt.host and mqtt.port in /etc/bedside/bedside.toml and that the broker runs "
            "(Home Assistant: Settings > Add-ons > Mosquitto broker)",
        )
    finally:
        client.loop_stop()
        client.disconnect()
    if not answered:
        return Finding(
            "broker",
            "fail",
            f"the broker at {where} did not answer within {opts.mqtt_timeout_s:g} s.",
            "check the address, the port and any firewall between the Pi and the broker",
        )
    reason = result["reason"]
    if getattr(reason, "is_failure", False):
        who = f"user {m.username!r}" if m.username else "an anonymous client"
        return Finding(
            "broker",
            "fail",
            f"the broker at {where} refused {who}: {reason}.",
            "set mqtt.username in /etc/bedside/bedside.toml and the password in "
            "/etc/bedside/credentials/mqtt_password (one line), then: sudo systemctl restart bedside",
        )
    who = f" as {m.username}" if m.username else ""
    return Finding("broker", "ok", f"the broker at {where} accepts the connection{who}.")


# --- storage, clock, units --------------------------------------------------------------------


def check_database(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    """The database (or its folder) can be written, by the service user when run as root; free disk."""
    db = Path(cfg.storage.db_path)
    folder = db.parent if str(db.parent) else Path(".")
    if not folder.is_dir():
        return [
            Finding(
                "database",
                "fail",
                f"the database folder {folder} does not exist.",
                "sudo ./systemd/install.sh (it creates /var/lib/bedside), or fix storage.db_path",
            )
        ]
    out: list[Finding] = []
    try:
        if db.exists():
            conn = sqlite3.connect(db, timeout=2)
            try:
                conn.execute("BEGIN IMMEDIATE")  # takes the write lock; changes nothing
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        elif not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot create files in {folder}")
    except (sqlite3.Error, OSError) as exc:
        out.append(
            Finding(
                "database",
                "fail",
                f"the database {db} cannot be written: {exc}.",
                f"sudo chown -R {opts.user}:{opts.user} {folder} (and check the disk)",
            )
        )
    else:
        owner_note = ""
        if os.geteuid() == 0:
            try:
                uid = pwd.getpwnam(opts.user).pw_uid
            except KeyError:
                uid = None
            target = db if db.exists() else folder
            if uid is not None and target.stat().st_uid != uid:
                out.append(
                    Finding(
                        "database",
                        "fail",
                        f"{target} is not owned by {opts.user}, so the service cannot write it.",
                        f"sudo chown {opts.user}:{opts.user} {target}",
                    )
                )
                owner_note = "skip"
        if not owner_note:
            what = "is writable" if db.exists() else "does not exist yet; its folder is writable"
            out.append(Finding("database", "ok", f"the database {db} {what}."))
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        out.append(
            Finding(
                "disk",
                "fail",
                f"only {free / 2**20:.0f} MiB free on the disk of {folder} (a night needs about 7 MiB, "
                f"below {MIN_FREE_BYTES // 2**20} MiB the unit reports unhealthy).",
                "free space (sudo apt clean; sudo journalctl --vacuum-size=50M) or lower "
                "storage.raw_retention_days",
            )
        )
    else:
        out.append(Finding("disk", "ok", f"{free / 2**30:.1f} GiB free for the database."))
    return out


def _run(argv: Sequence[str]) -> tuple[int, str] | None:
    """(exit code, stdout) of a system tool, or None when it is not there."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (FileNotFoundError, PermissionError, subprocess.TimeoutExpired):
        return None
    return proc.returncode, proc.stdout.strip()


def check_clock(opts: DoctorOptions) -> Finding:
    """NTP has synchronised the clock (a Pi has no battery clock: a night needs the right time)."""
    got = _run([opts.timedatectl, "show", "--property=NTPSynchronized", "--value"])
    if got is None or got[0] != 0 or got[1] not in ("yes", "no"):
        return Finding(
            "clock",
            "warn",
            "cannot tell whether the clock is synchronised (no timedatectl answer).",
            "timedatectl status",
        )
    if got[1] == "yes":
        return Finding("clock", "ok", "the clock is synchronised by NTP.")
    return Finding(
        "clock",
        "fail",
        "the clock is not synchronised: nights would be dated by a wrong clock.",
        "check the network, then: sudo timedatectl set-ntp true; timedatectl timesync-status",
    )


def unit_state(opts: DoctorOptions, unit: str) -> tuple[str, str] | None:
    """(is-enabled, is-active) of a unit, or None when systemd is not running here."""
    enabled = _run([opts.systemctl, "is-enabled", unit])
    active = _run([opts.systemctl, "is-active", unit])
    if enabled is None or active is None:
        return None
    known_active = {"active", "inactive", "failed", "activating", "deactivating", "reloading"}
    if active[1] not in known_active:
        return None
    return enabled[1] or "unknown", active[1]


def check_units(opts: DoctorOptions) -> list[Finding]:
    """Both units enabled (start at boot) and running."""
    out: list[Finding] = []
    for unit in opts.units:
        state = unit_state(opts, unit)
        if state is None:
            return [
                Finding(
                    "units",
                    "warn",
                    "systemd is not running here: the units' state is unknown.",
                    "systemctl status bedside bedside-web",
                )
            ]
        enabled, active = state
        short = unit.removesuffix(".service")
        daemon = unit == "bedside.service"
        if enabled != "enabled":
            out.append(
                Finding(
                    short,
                    "fail" if daemon else "warn",
                    f"{unit} is {enabled}: it will not start at boot.",
                    f"sudo systemctl enable --now {unit}",
                )
            )
        elif active != "active":
            out.append(
                Finding(
                    short,
                    "fail" if daemon else "warn",
                    f"{unit} is {active}.",
                    f"journalctl -u {short} -n 50 (why), then: sudo systemctl restart {unit}",
                )
            )
        else:
            out.append(Finding(short, "ok", f"{unit} is enabled and running."))
    return out


# --- all together -----------------------------------------------------------------------------


def run_checks(cfg: Config, opts: DoctorOptions) -> list[Finding]:
    """Every check, in the order a person would fix them."""
    findings = [check_bus(cfg, opts), check_groups(cfg, opts), *check_pins()]
    units = check_units(opts)
    daemon_active = any(f.check == "bedside" and f.level == "ok" for f in units)
    findings.append(check_sensor(cfg, opts, service_active=daemon_active))
    findings.append(check_broker(cfg, opts))
    findings += check_database(cfg, opts)
    findings.append(check_clock(opts))
    findings += units
    return findings


def failed(findings: Sequence[Finding]) -> bool:
    """True when any check would spoil a night."""
    return any(f.level == "fail" for f in findings)


def print_findings(findings: Sequence[Finding], as_json: bool = False) -> None:
    """One line per check (and its fix), then a verdict; or one JSON document."""
    if as_json:
        doc = {"ok": not failed(findings), "checks": [asdict(f) for f in findings]}
        print(json.dumps(doc, indent=1))
        return
    for f in findings:
        print(f"{f.level.upper():<4}  {f.check:<12} {f.message}")
        if f.fix and f.level != "ok":
            print(f"{'':<18} fix: {f.fix}")
    bad = sum(f.level == "fail" for f in findings)
    print("ready for a night" if not bad else f"{bad} problem(s) would spoil a night: fix them and run again")
