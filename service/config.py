"""Typed, strict configuration: a TOML file plus ``BEDSIDE_*`` environment overrides.

Every key is documented (``bedside validate-config --explain`` prints them) and carries its
unit in its name. Unknown keys are errors. An environment variable
``BEDSIDE_<SECTION>__<KEY>`` (``BEDSIDE_MQTT__PORT=1884``) or ``BEDSIDE_<KEY>`` for a top-level
key overrides the file; its value is read as a TOML value when it parses as one
(numbers, booleans, quoted strings), else as a plain string. Secrets are never stored in
the file: ``mqtt.password_file`` names a file, or the credential ``mqtt_password`` is read
from ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from service.detect.params import DetectorParams
from service.errors import ConfigError
from service.store.files import UnsafeFileError, read_regular_file

logger = logging.getLogger(__name__)

ENV_PREFIX = "BEDSIDE_"
#: Environment variables with our prefix that are not config overrides: the config file's path
#: and the dashboard's session key (a secret, so never a config-file key).
RESERVED_ENV = frozenset({"BEDSIDE_CONFIG", "BEDSIDE_SECRET_KEY"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SensorConfig(_Strict):
    """Where samples come from."""

    kind: Literal["simulated", "replay", "piezo", "imu"] = Field(
        "simulated", description="simulated (default, no hardware), replay (a file), piezo or imu."
    )
    rate_hz: float = Field(250.0, ge=1.0, le=1000.0, description="Sampling rate in Hz.")
    block_s: float = Field(0.1, gt=0.0, le=2.0, description="Seconds of samples per block.")
    speed: float = Field(
        1.0, ge=0.0, description="Simulated/replay speed: 1 = real time, 0 = as fast as possible."
    )
    seed: int = Field(0, description="Seed of the simulated night (same seed, same night).")
    sim_duration_s: float = Field(8 * 3600.0, gt=0.0, description="Length of the simulated night in seconds.")
    sim_glitches: bool = Field(True, description="Add occasional sensor glitches to the simulation.")
    sim_start: str = Field(
        "now",
        description="Clock time of the first simulated or replayed sample: 'now', 'HH:MM' (the latest such "
        "local time) or an ISO 8601 time with a zone (2026-11-21T22:30:00+01:00).",
    )
    replay_path: str | None = Field(None, description="Recording to replay (CSV or .npy).")
    replay_column: str | None = Field(None, description="Column of the recording to replay.")
    replay_time_column: str | None = Field(None, description="Time column of the recording.")
    replay_time_unit: Literal["ms", "s"] = Field("ms", description="Unit of the time column.")
    replay_rate_hz: float | None = Field(
        None,
        gt=0.0,
        le=100000.0,
        description="Sample rate of the recording in Hz (else from its time column).",
    )
    spi_channel: int = Field(0, ge=0, le=7, description="MCP3008/MCP3208 input channel.")
    differential: bool = Field(
        False, description="Read the ADC channel pair differentially (channel and its neighbour)."
    )
    spi_device: int = Field(0, ge=0, le=1, description="Hardware SPI0 chip select: 0 = CE0 (GPIO8), 1 = CE1.")
    fill_gaps: bool = Field(
        True, description="Fill samples a late sampler missed with the last value (keeps time exact)."
    )
    adc_chip: Literal["mcp3008", "mcp3208"] = Field("mcp3208", description="ADC chip on SPI.")
    i2c_bus: int = Field(1, ge=0, description="I2C bus number of the MPU-6050.")
    i2c_address: int = Field(0x68, ge=0x08, le=0x77, description="I2C address of the MPU-6050.")
    imu_axis: Literal["x", "y", "z", "magnitude"] = Field("magnitude", description="IMU axis to analyse.")
    imu_accel_range_g: Literal[2, 4, 8, 16] = Field(2, description="MPU-6050 accelerometer range in g.")

    @model_validator(mode="after")
    def _check(self) -> SensorConfig:
        sim_start_time(self.sim_start)  # raises ValueError naming the problem
        if self.kind == "replay" and not self.replay_path:
            raise ValueError("sensor.kind = 'replay' needs sensor.replay_path")
        if self.kind == "piezo" and not 50.0 <= self.rate_hz <= 1000.0:
            raise ValueError("sensor.rate_hz must be 50 to 1000 Hz for the piezo")
        if self.kind == "imu" and abs(1000.0 / round(1000.0 / self.rate_hz) - self.rate_hz) > 1e-6:
            raise ValueError(
                "sensor.rate_hz must be 1000/N Hz for the MPU-6050 (e.g. 1000, 500, 250, 200, 100)"
            )
        return self


def sim_start_time(text: str, now: datetime | None = None) -> datetime | None:
    """The UTC time ``sensor.sim_start`` names (None for 'now'); ValueError if it names none."""
    if text == "now":
        return None
    now = now or datetime.now(UTC)
    if re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", text):
        local_now = now.astimezone()
        t = local_now.replace(hour=int(text[:2]), minute=int(text[3:]), second=0, microsecond=0)
        return (t if t <= local_now else t - timedelta(days=1)).astimezone(UTC)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"sensor.sim_start: {text!r} is not 'now', HH:MM or an ISO 8601 time") from None
    if t.tzinfo is None:
        raise ValueError(f"sensor.sim_start: {text!r} needs a time zone (e.g. +01:00 or Z)")
    try:
        return t.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first UTC time Python has
        raise ValueError(f"sensor.sim_start: {text!r} is out of range in UTC") from None


class ControlsConfig(_Strict):
    """The bedside button and status LED (BCM GPIO numbers; unset = not fitted)."""

    button_pin: int | None = Field(
        None, ge=0, le=27, description="GPIO of the button (to GND): short press marks a spasm."
    )
    led_pin: int | None = Field(None, ge=0, le=27, description="GPIO of the status LED (via a resistor).")
    hold_time_s: float = Field(
        2.0, gt=0.2, le=10.0, description="Seconds held that make a long press ('I'm awake / getting up')."
    )

    @model_validator(mode="after")
    def _distinct(self) -> ControlsConfig:
        if self.button_pin is not None and self.button_pin == self.led_pin:
            raise ValueError("controls.button_pin and controls.led_pin must differ")
        return self


class StorageConfig(_Strict):
    """Where nights are kept."""

    db_path: str = Field("var/bedside.sqlite3", description="SQLite database file.")
    busy_timeout_s: float = Field(5.0, gt=0.0, description="SQLite busy timeout in seconds.")
    raw_retention_days: int = Field(
        7,
        ge=0,
        le=3650,
        description="Days the whole raw signal of each night is kept (0 = never keep whole nights). "
        "Snippets around every event are kept for the whole history.",
    )
    snippet_pad_s: float = Field(
        5.0, ge=0.0, le=60.0, description="Seconds of raw signal kept before and after each event."
    )
    snippet_max_s: float = Field(
        60.0, ge=1.0, le=600.0, description="Longest raw snippet kept for one event, seconds."
    )


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class SessionsConfig(_Strict):
    """When a night starts and ends (local clock times, HH:MM)."""

    mode: Literal["auto", "run"] = Field(
        "auto",
        description="auto: a night starts on bed entry and ends on the last bed exit after the morning "
        "window starts (or by command/button); run: each daemon run is one night (replays, tests).",
    )
    evening_start: str = Field(
        "19:00", pattern=_HHMM, description="Bed entries from this time start a night."
    )
    evening_end: str = Field("04:00", pattern=_HHMM, description="...until this time (next morning).")
    morning_start: str = Field(
        "05:00", pattern=_HHMM, description="A bed exit after this time can end the night."
    )
    morning_end: str = Field(
        "13:00", pattern=_HHMM, description="A night still open with an empty bed ends at this time."
    )
    exit_confirm_min: float = Field(
        20.0,
        ge=1.0,
        le=240.0,
        description="Minutes the bed must stay empty after a morning bed exit before the night ends "
        "(back in bed sooner: the night goes on).",
    )
    nap_end_min: float = Field(
        10.0,
        ge=1.0,
        le=240.0,
        description="Minutes of empty bed that end a session begun outside the evening.",
    )
    night_min_in_bed_h: float = Field(
        3.0,
        ge=0.5,
        le=12.0,
        description="A session begun outside the evening window with at least this many hours in bed counts "
        "as a night (shift work), else as a nap.",
    )
    timezone: str | None = Field(
        None, description="IANA time zone for the windows (e.g. Europe/Berlin); unset = the system's."
    )

    @model_validator(mode="after")
    def _check(self) -> SessionsConfig:
        if self.timezone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"sessions.timezone: unknown time zone {self.timezone!r}") from None
        return self


class MqttConfig(_Strict):
    """The link to the home hub."""

    enabled: bool = Field(True, description="Publish to an MQTT broker.")
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    base_topic: str = Field("bedside", min_length=1, description="Topic root: <base>/<unit>/...")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="HA discovery prefix.")
    username: str | None = Field(None, description="Broker user name.")
    password_file: str | None = Field(None, description="File holding the broker password.")
    tls: bool = Field(False, description="Connect with TLS.")
    tls_ca_file: str | None = Field(None, description="CA certificate file for TLS.")
    tls_cert_file: str | None = Field(None, description="Client certificate file (optional).")
    tls_key_file: str | None = Field(None, description="Client key file (optional).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    reconnect_min_s: float = Field(1.0, gt=0.0, description="First reconnect delay, seconds.")
    reconnect_max_s: float = Field(60.0, gt=0.0, description="Longest reconnect delay, seconds.")
    discovery: bool = Field(True, description="Announce the unit to Home Assistant by MQTT discovery.")
    event_burst: int = Field(
        10, ge=1, le=1000, description="Events of one type published at once before the rate limit applies."
    )
    events_per_min: float = Field(
        2.0, ge=0.0, description="Events of one type published per minute after a burst (0 = no limit)."
    )
    moving_off_delay_s: float = Field(
        10.0, ge=0.0, le=600.0, description="Seconds of stillness before `moving` goes OFF on the hub."
    )

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if "/" in self.base_topic.strip("/") or any(c in self.base_topic for c in "#+"):
            raise ValueError("mqtt.base_topic must be one topic level without '/', '#' or '+'")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must be >= mqtt.reconnect_min_s")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("mqtt.tls_cert_file and mqtt.tls_key_file go together")
        return self


class WebConfig(_Strict):
    """The dashboard. A login is required whenever it listens beyond loopback (docs/dashboard.md)."""

    enabled: bool = Field(True, description="Start the dashboard with `bedside run`.")
    host: str = Field(
        "127.0.0.1",
        description=(
            "Address the dashboard listens on. Loopback (127.0.0.1, ::1) needs no login; any other "
            "address (0.0.0.0 for the LAN) requires the password set with `bedside set-password`."
        ),
    )
    port: int = Field(8080, ge=0, le=65535, description="Dashboard TCP port (0 = any free).")
    require_login: bool = Field(
        False,
        description="Require the login on loopback too (e.g. behind a reverse proxy on the same machine).",
    )
    password_file: str | None = Field(
        None,
        description="File holding the dashboard password's hash (default: web-password beside the database).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names the dashboard answers to besides IP addresses, localhost and this machine's "
            "name and name.local (e.g. a reverse proxy's name; '.example.org' takes its subdomains too). "
            "Other names are refused, against DNS rebinding."
        ),
    )

    @model_validator(mode="after")
    def _host_is_an_address(self) -> WebConfig:
        host = self.host.strip()
        if not host or any(c.isspace() for c in host):
            raise ValueError(f"web.host must be one address such as 127.0.0.1 or 0.0.0.0, got {self.host!r}")
        return self


class LoggingConfig(_Strict):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


def _detector_model() -> type[BaseModel]:
    """The ``[detector]`` section, generated from DetectorParams so each threshold is defined once."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(DetectorParams):
        fields[f.name] = (f.type, Field(f.default, description=f.metadata.get("doc", "")))
    return create_model(
        "DetectorConfig", __config__=ConfigDict(extra="forbid", strict=True, frozen=True), **fields
    )


if TYPE_CHECKING:
    DetectorConfig = BaseModel
else:
    DetectorConfig = _detector_model()


class Config(_Strict):
    """The whole configuration. Defaults run the demo with no file at all."""

    unit_id: str = Field(
        "bedside",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name of this unit: letters, digits, '-' and '_' (used in topics and ids).",
    )
    sensor: SensorConfig = Field(default_factory=SensorConfig)  # type: ignore[arg-type]
    controls: ControlsConfig = Field(default_factory=ControlsConfig)  # type: ignore[arg-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)  # type: ignore[arg-type]
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)  # type: ignore[arg-type]
    mqtt: MqttConfig = Field(default_factory=MqttConfig)  # type: ignore[arg-type]
    web: WebConfig = Field(default_factory=WebConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]
    detector: DetectorConfig = Field(default_factory=DetectorConfig)

    def detector_params(self) -> DetectorParams:
        """The detector settings as the detector takes them."""
        return DetectorParams(**self.detector.model_dump())


def detector_params_for(cfg: Config, source: object) -> DetectorParams:
    """The configured detector settings, with the ADC full scale taken from the source when the
    config leaves it unknown (0): a source with ``bits`` reads counts 0 .. 2**bits - 1."""
    params = cfg.detector_params()
    bits = getattr(source, "bits", None)
    if params.adc_full_scale_counts == 0 and isinstance(bits, int):
        params = dataclasses.replace(params, adc_full_scale_counts=float(2**bits - 1))
    return params


def _parse_env_value(raw: str) -> Any:
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        # Not TOML, nested too deep for the parser, or an integer of more than 4300 digits:
        # the text itself, which the key's check then refuses by name if it wants a number.
        return raw
    # A TOML date or time is kept as the text it was (keys that take times take text).
    return raw if isinstance(value, datetime | date | dt_time) else value


def env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """Nested dict of overrides from ``BEDSIDE_*`` variables (keys lower-cased)."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty key part")
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name}: {part} is not a section")
            node = child
        node[path[-1]] = _parse_env_value(raw)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: {err.error_count()} problem(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling; `bedside validate-config --explain` lists keys)"
        else:
            reason = e["msg"]
            if "input" in e and not isinstance(e["input"], dict):
                got = repr(e["input"])
                reason += f" (got {got if len(got) <= 80 else got[:60] + f'... ({len(got)} characters)'})"
        lines.append(f"  {key}: {reason}")
    return "\n".join(lines)


#: Deeper than this, TOML arrays and inline tables are refused before the parser's recursion fails.
MAX_TOML_DEPTH = 100
#: Python's limit on the digits of an integer read from text (``sys.get_int_max_str_digits``).
_LONG_INTEGER = re.compile(r"[0-9][0-9_]{4300,}")


def _where(text: str, pos: int) -> str:
    """``line N (section.key)`` for a position in a TOML text: the key whose value holds it."""
    line_start = text.rfind("\n", 0, pos) + 1
    lineno = text.count("\n", 0, pos) + 1
    key = re.match(r"\s*([A-Za-z0-9_.\"'-]+)\s*=", text[line_start : line_start + 200])
    headers = re.findall(r"(?m)^\s*\[+\s*([A-Za-z0-9_.\"'-]+)\s*\]+", text[:line_start])
    if key is None:
        return f"line {lineno}"
    name = key.group(1) if not headers else f"{headers[-1]}.{key.group(1)}"
    return f"line {lineno} ({name})"


def _too_deep_at(text: str) -> int | None:
    """Where arrays or inline tables first nest deeper than MAX_TOML_DEPTH, or None (brackets in
    strings are counted too: this only says where to look)."""
    depth = 0
    for pos, ch in enumerate(text):
        if ch in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return pos
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n" and depth <= 2:  # a table header's brackets close on their line
            depth = 0
    return None


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    """TOML text as a dict; ConfigError naming ``origin``, the line and the key otherwise (also for
    what the parser does not catch itself: nesting deeper than MAX_TOML_DEPTH, integers too long
    for Python to read)."""
    deep = _too_deep_at(text)
    if deep is not None:
        raise ConfigError(
            f"{origin}: {_where(text, deep)}: arrays or tables nested more than {MAX_TOML_DEPTH} deep"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: invalid TOML: {exc}") from None
    except (RecursionError, ValueError) as exc:
        long_int = _LONG_INTEGER.search(text)
        where = _where(text, long_int.start()) if long_int else "a value"
        if isinstance(exc, RecursionError):
            what = "arrays or tables nested too deep"
        else:
            what = "an integer of more than 4300 digits" if long_int else f"cannot be read ({exc})"
        raise ConfigError(f"{origin}: {where}: {what}") from None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file as a dict; ConfigError naming the file and the problem otherwise.

    Only a regular file of at most MAX_SMALL_FILE_BYTES is read: a FIFO, a device (a link to
    ``/dev/zero``) or a directory is refused at once."""
    origin = f"config file {path}"
    try:
        raw = read_regular_file(path)
    except FileNotFoundError:
        raise ConfigError(f"{origin}: not found") from None
    except PermissionError:
        raise ConfigError(f"{origin}: permission denied") from None
    except UnsafeFileError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin}: not UTF-8 text ({exc.reason})") from None
    return parse_toml(text, origin)


def load_config(
    path: str | Path | None = None,
    *,
    environ: dict[str, str] | os._Environ[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Load and validate: defaults < file < environment < ``overrides`` (from the CLI).

    ``path`` None reads ``$BEDSIDE_CONFIG`` if set, else nothing. Raises ConfigError with
    one line per problem, each naming the key.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get("BEDSIDE_CONFIG"):
        path = env["BEDSIDE_CONFIG"]
    data: dict[str, Any] = read_toml(Path(path)) if path is not None else {}
    origin = str(path) if path is not None else "configuration"
    data = _merge(data, env_overrides(env))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None


def _toml_line(name: str, value: Any) -> str:
    if value is None:
        return f"# {name} = (not set)"
    if isinstance(value, bool):
        return f"{name} = {str(value).lower()}"
    if isinstance(value, str):
        return f"{name} = {json.dumps(value)}"
    return f"{name} = {value!r}"


def explain() -> str:
    """Every key with its default and description, as TOML comments (for --explain)."""
    lines: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                lines.append(f"\n[{prefix}{name}]  # {ann.__doc__ or ''}".rstrip())
                walk(ann, f"{prefix}{name}.")
            else:
                default = info.get_default(call_default_factory=True)
                lines.append(f"# {info.description}")
                lines.append(_toml_line(name, default))

    walk(Config, "")
    return "\n".join(lines).strip() + "\n"


def read_secret(file_path: str | None, credential: str) -> str | None:
    """A secret from ``file_path`` or from ``$CREDENTIALS_DIRECTORY/<credential>``; None if neither.

    Trailing newlines are stripped. A named file that cannot be read is a ConfigError.
    """
    candidates: list[tuple[str, Path]] = []
    if file_path:
        candidates.append((f"password file {file_path}", Path(file_path)))
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and not file_path:
        p = Path(cred_dir) / credential
        if p.exists():
            candidates.append((f"credential {credential}", p))
    for label, p in candidates:
        try:
            return read_regular_file(p).decode("utf-8").rstrip("\r\n")
        except UnsafeFileError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{label}: not UTF-8 text ({exc.reason})") from None
    return None
