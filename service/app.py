"""The daemon: start in written order, pump blocks through the detector, fan out, stop in reverse.

One asyncio loop. The sample source iterates Blocks (a live sensor samples on its own thread);
the detector is pure and fast, so it runs on the loop; the store (aiosqlite) and the MQTT
link (paho's thread) cross into the loop as they must. Every event is written to SQLite,
with its outbox row, before MQTT sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from hardware.block import Block, SampleSource
from service import __version__
from service.commands import (
    ButtonPress,
    Command,
    CommandError,
    MarkCommand,
    NightCommand,
    ProfileCommand,
    parse_command,
)
from service.config import Config, detector_params_for
from service.detect import Detector
from service.detect.types import MOVEMENT_TYPES, Epoch, Event, Output, State, Vitals
from service.discovery import discovery_json
from service.live import LiveState
from service.mqtt import MqttLink
from service.payloads import event_row
from service.ratelimit import EventLimiter, MovingDebounce
from service.rawsignal import ChunkCutter, RawRing, snippet_span
from service.sdnotify import notify, watchdog_interval_s
from service.sessions import Action, End, SessionTracker, Start, rules_from_config
from service.store.signal_codec import encode
from service.store.store import Store
from service.timefmt import iso_utc, parse_iso_utc, utc_now
from service.topics import Topics

if TYPE_CHECKING:
    from hardware.controls import Controls

logger = logging.getLogger(__name__)

#: Live state is written to the database at most this often when it changed (unless a flag flips)...
LIVE_WRITE_PERIOD_S = 1.0
#: ...and this often when nothing but its time changed (a heartbeat for `bedside status`).
LIVE_HEARTBEAT_S = 10.0
#: While the live state says messages wait in the outbox, the outbox is counted again this often, so
#: the figure falls within about a second of the broker's acknowledgements (seconds).
OUTBOX_RECOUNT_S = 0.5
#: Vitals-only changes of the retained MQTT state are published at most this often.
STATE_PUBLISH_PERIOD_S = 10.0
#: The sensor counts as healthy again this many seconds (stream time) after its last fault.
SENSOR_OK_AFTER_S = 60.0
#: A fault still in progress this long is reported at once (its event comes when it ends).
FAULT_OPEN_REPORT_S = 2.0
#: How many event ids are remembered to resolve an awakening's cause.
CAUSE_MEMORY = 1000
#: Seconds of raw signal held for event snippets (an event is emitted a little after it ends).
RING_S = 600.0
#: A night left open by a restart is resumed when its newest data is at most this old.
RESUME_WITHIN = timedelta(hours=3)
#: A resumed night whose stream begins more than this after its last stored data has a hole in its
#: signal: a sensor_fault with ``no_data_s`` (after a kill, the raw signal since the last whole
#: chunk was never stored, so the hole counts from there).
NO_DATA_MIN_S = 2.0
#: A forward jump of the wall clock by more than this re-anchors the stream clock (a Pi without
#: a real-time clock boots with a stale time until NTP sets it).
CLOCK_JUMP_S = 120.0
#: Session rules are checked this often, in stream seconds.
SESSION_TICK_S = 1.0
#: Events found while no night is open are kept this long (stream seconds): a night that starts at
#: a bed entry the detector decides a little later takes the movements since then (settling in).
UNTRACKED_KEEP_S = 600.0
#: Commands and button presses waiting to be applied, at most; more are dropped (a flood), logged
#: at most once per COMMAND_DROP_LOG_S.
MAX_QUEUED_COMMANDS = 1000
COMMAND_DROP_LOG_S = 10.0
#: On stop, the commands still queued are applied for at most this long; the rest are dropped (logged).
COMMAND_DRAIN_S = 5.0


class Daemon:
    """Runs one sample source through the detector into the store, MQTT and the dashboard."""

    def __init__(self, cfg: Config, source: SampleSource, source_label: str) -> None:
        self.cfg = cfg
        self.source = source
        self.source_label = source_label
        self.topics = Topics(cfg.mqtt.base_topic, cfg.unit_id, cfg.mqtt.discovery_prefix)
        self.live = LiveState()
        self.store: Store | None = None
        self.mqtt: MqttLink | None = None
        self.detector: Detector | None = None
        self.night_id: str | None = None
        self._web: subprocess.Popen[bytes] | None = None
        self._stream_start: datetime | None = None
        self._event_ids: OrderedDict[int, str] = OrderedDict()
        self._pending_chunks: list[Any] = []
        self._stopping = asyncio.Event()
        self._undo: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._last_live_write = 0.0
        self._last_outbox_count = 0.0
        self._last_live_doc: dict[str, Any] = {}
        self._last_state_publish = 0.0
        self._last_watchdog = 0.0
        self._watchdog_s = watchdog_interval_s()
        self._fault_until_s = 0.0
        self._next_index: int | None = None
        self._last_sample = 0.0
        self.dropped_samples = 0
        self.controls: Controls | None = None
        # MQTT commands and button presses, applied one at a time in arrival order by one task.
        self._commands: asyncio.Queue[Command | ButtonPress | None] = asyncio.Queue(MAX_QUEUED_COMMANDS)
        self._commands_task: asyncio.Task[None] | None = None
        self._commands_closed = False
        self._commands_abandon = False
        self._commands_dropped = 0
        self._command_drop_logged = float("-inf")
        # Held while the session rules decide and their actions are carried out (see _decide).
        self._session_lock = asyncio.Lock()
        self.profile = cfg.detector_params().profile
        self.live.profile = self.profile
        self.limiter = EventLimiter(burst=cfg.mqtt.event_burst, per_min=cfg.mqtt.events_per_min)
        self.debounce = MovingDebounce(off_delay_s=cfg.mqtt.moving_off_delay_s)
        self._moving_raw = False
        self._asleep_s = self._in_bed_s = 0.0
        self.untracked_events = 0
        self._untracked: deque[Event] = deque()
        self._just_ended: tuple[str, End] | None = None
        self.blocks = 0
        self.events_written = 0
        self.auto_sessions = cfg.sessions.mode == "auto"
        self.rules = rules_from_config(cfg.sessions)
        self.sessions = SessionTracker(self.rules)
        self.night_started: datetime | None = None
        self._left_open: list[dict[str, Any]] = []
        self._ring: RawRing | None = None
        self._chunks: ChunkCutter | None = None
        self._pending_snippets: list[tuple[str, str, int, int, int]] = []
        self._last_tick_s = -SESSION_TICK_S
        self._clock_back_warned = False

    # ----- start and stop --------------------------------------------------------------------
    async def start(self) -> None:
        """Open store, connect MQTT, start the night, start the dashboard, create the detector.

        Stopping runs these backwards, so the night's summary and the final state are queued
        before the MQTT link drains and publishes ``offline``."""
        await self._step("store", self._open_store, self._close_store)
        if self.cfg.mqtt.enabled:
            await self._step("MQTT link", self._start_mqtt, self._stop_mqtt)
        await self._step("night", self._begin_tracking, self._finish_tracking)
        await self._step("commands", self._start_commands, self._stop_commands)
        if self.cfg.web.enabled:
            await self._step("dashboard", self._start_web, self._stop_web)
        if self.cfg.controls.button_pin is not None or self.cfg.controls.led_pin is not None:
            await self._step("button and LED", self._start_controls, self._stop_controls)
        await self._step("detector", self._start_detector, self._flush_detector)
        await self._step("sampler", self._noop, self._close_source)
        notify(f"READY=1\nSTATUS=recording night {self.night_id}")

    async def stop(self) -> None:
        """Undo the start steps in reverse, logging each; one failing step does not skip the rest."""
        notify("STOPPING=1")
        while self._undo:
            name, undo = self._undo.pop()
            logger.info("stopping: %s", name)
            try:
                await undo()
            except Exception:
                logger.exception("stopping: %s failed", name)
        logger.info("stopped")

    async def _step(
        self, name: str, do: Callable[[], Awaitable[None]], undo: Callable[[], Awaitable[None]]
    ) -> None:
        logger.info("starting: %s", name)
        await do()
        self._undo.append((name, undo))

    async def _noop(self) -> None:
        return None

    async def _open_store(self) -> None:
        self.store = await Store.open(self.cfg.storage.db_path, self.cfg.storage.busy_timeout_s)
        self.live.outbox_len = await self.store.outbox_len()

    async def _close_store(self) -> None:
        assert self.store is not None
        await self.store.close()

    async def _begin_tracking(self) -> None:
        """Find nights a crash or restart left open; the first block decides whether the newest goes on.

        In ``run`` mode the night starts with the stream; in ``auto`` mode on bed entry."""
        assert self.store is not None
        self._left_open = await self.store.open_nights(self.cfg.unit_id)

    async def _resume_or_close(self, t0: datetime) -> datetime:
        """The newest night left open goes on if the stream starts within RESUME_WITHIN of its last data,
        before or after it (auto mode); every other one is closed at its last data, with its summary.

        A stream that begins before the night's last data (a Pi without a real-time clock restored an
        older time after a power cut, or a replay ran ahead of the wall clock) is moved to begin at
        it, as a clock set back is never followed: times stay in order. A stream that begins
        more than NO_DATA_MIN_S after it leaves a hole in the night, recorded as a ``sensor_fault``
        with ``no_data_s`` (the sensor failed, the unit restarted or the power was out).
        Returns the stream's start time, moved or not."""
        for night in self._left_open:
            last = parse_iso_utc(night["last_at"])
            gap = t0 - last
            if self.auto_sessions and self.night_id is None and -RESUME_WITHIN <= gap <= RESUME_WITHIN:
                if gap < timedelta(0):
                    assert self._stream_start is not None
                    logger.warning(
                        "this stream began %s before the open night's last data: its times continue "
                        "after it", -gap,
                    )  # fmt: skip
                    self._stream_start += -gap
                    t0 = last
                self.night_id = night["id"]
                self.night_started = parse_iso_utc(night["started_at"])
                self.sessions.resume(self.night_started, night["kind"], in_bed=None, at=t0)
                self._enter_night(t0)
                logger.info(
                    "night %s was left open %s before this stream began: it goes on",
                    night["id"],
                    max(gap, timedelta(0)),
                )
                if gap.total_seconds() > NO_DATA_MIN_S:
                    await self._record_no_data(last, t0)
            else:
                await self._close_left_open(night["id"], night["last_at"], night["kind"])
        self._left_open = []
        return t0

    async def _record_no_data(self, last: datetime, t0: datetime) -> None:
        """The open night has no data from ``last`` to ``t0`` (this stream's start): a sensor fault."""
        assert self._stream_start is not None
        hole = Event(
            seq=-1,  # never an awakening's cause
            type="sensor_fault",
            start_s=(last - self._stream_start).total_seconds(),
            end_s=(t0 - self._stream_start).total_seconds(),
            intensity=0.0,
            profile=self.profile,
            details={"no_data_s": round((t0 - last).total_seconds(), 3)},
        )
        await self._on_event(hole)

    async def _close_left_open(self, night_id: str, last_at: str, kind: str) -> None:
        assert self.store is not None
        await self.store.flush()
        summary = await self._summary_of(night_id, last_at, kind)
        await self.store.end_night(night_id, last_at, summary, kind=kind, end_reason="daemon_stop")
        logger.info("night %s left open by an earlier run closed at %s", night_id, last_at)

    async def _finish_tracking(self) -> None:
        """On stop: keep what the stream gave; in ``auto`` mode an open night stays open for the next run."""
        await self._store_raw(final=True)
        if self.night_id is None:
            return
        if self.auto_sessions:
            logger.info("night %s stays open: it goes on if Bedside restarts within %s", self.night_id,
                        RESUME_WITHIN)  # fmt: skip
            return
        await self._decide(lambda: self.sessions.command_stop(self._stream_now(), reason="daemon_stop"))

    def _stream_dt(self, t_s: float) -> datetime:
        assert self._stream_start is not None
        return self._stream_start + timedelta(seconds=t_s)

    def _stream_now(self) -> datetime:
        """The stream clock now (the wall clock before the first block)."""
        if self._stream_start is None or self._next_index is None:
            return utc_now()
        return self._stream_dt(self._next_index / self.source.rate_hz)

    async def _decide(self, rule: Callable[[], list[Action]]) -> None:
        """Ask the session rules (``rule`` calls the tracker) and carry out their answer as one step.

        The pump (bed changes, the passing of time) and the command task (``cmd/night``, the button)
        both come here; the session lock keeps another decision from running while a night is being
        started or ended, so the tracker and ``night_id`` never disagree. Not re-entrant: nothing
        that runs under it may come here again."""
        async with self._session_lock:
            await self._apply(rule())

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Start):
                await self._start_night(action)
            elif isinstance(action, End):
                await self._end_night(action)

    async def _start_night(self, start: Start) -> None:
        assert self.store is not None
        if self.night_id is not None:
            logger.info("night %s is already being tracked", self.night_id)
            return
        self._just_ended = None
        self.night_id = f"{start.at:%Y%m%dT%H%M%SZ}-{self.cfg.unit_id}-{uuid.uuid4().hex[:6]}"
        self.night_started = start.at
        await self.store.start_night(
            self.night_id,
            self.cfg.unit_id,
            iso_utc(start.at),
            self.profile,
            self.source_label,
            kind=start.kind,
            night_date=start.night_date.isoformat(),
            start_reason=start.reason,
            rate_hz=self.source.rate_hz,
        )
        self._enter_night(start.at)
        logger.info(
            "%s %s started (%s; source: %s)", start.kind, self.night_id, start.reason, self.source_label
        )
        await self._take_untracked(start.at)

    async def _take_untracked(self, started: datetime) -> None:
        """Record the events found since the night's start before it was opened (presence decides a
        bed entry some seconds after it happened); older ones stay unrecorded."""
        held, self._untracked = list(self._untracked), deque()
        for event in held:
            if self._stream_dt(event.start_s) >= started - timedelta(seconds=1):
                self.untracked_events -= 1
                await self._on_event(event)

    def _enter_night(self, started: datetime) -> None:
        """Reset tonight's figures and begin keeping raw signal (from the start, if the ring has it)."""
        self.live.night_id = self.night_id
        self.live.counts.clear()
        self.live.tracking = True
        self._asleep_s = self._in_bed_s = 0.0
        self._chunks = None
        if self.cfg.storage.raw_retention_days > 0 and self._stream_start is not None:
            rate = self.source.rate_hz
            first = max(0, round((started - self._stream_start).total_seconds() * rate))
            if self._ring is not None:
                first = max(first, self._ring.start_index)
            self._chunks = ChunkCutter(rate, first)
            if self._ring is not None and self._ring.end_index > first:
                held = self._ring.slice(first, self._ring.end_index)
                if held is not None:
                    self._pending_chunks = self._chunks.add(first, held)

    async def _end_night(self, end: End) -> None:
        assert self.store is not None
        if self.night_id is None:
            return
        night_id = self.night_id
        await self._store_raw(final=True)
        summary = await self._close_night(night_id, end)
        logger.info("%s %s ended (%s): %s", end.kind, night_id, end.reason, _brief(summary))
        self._just_ended = (night_id, end)
        self.night_id = self.live.night_id = None
        self.night_started = None
        self._chunks = None
        self.live.tracking = False
        if self.mqtt is not None:
            self.mqtt.kick()
        await self._prune_raw()
        if end.kind == "night":
            await self._check_trend()
        await self._publish_live(force=True)

    async def _close_night(self, night_id: str, end: End) -> dict[str, Any]:
        """Store the night's end with its summary, and queue the retained ``night`` message."""
        assert self.store is not None
        ended = iso_utc(end.at)
        await self.store.flush()  # the summary reads every epoch and vitals row
        summary = await self._summary_of(night_id, ended, end.kind)
        payload = json.dumps({**summary, "ended": ended}, separators=(",", ":"))
        outbox = [(self.topics.night, payload, 1, True)] if self.mqtt is not None else []
        await self.store.end_night(night_id, ended, summary, outbox, kind=end.kind, end_reason=end.reason)
        return summary

    def _late_night(self, event: Event) -> str | None:
        """The night that just ended, if ``event`` began inside it: the detector decides some events
        (an awakening needs minutes of look-ahead) after a command or button press ended the night."""
        if self._just_ended is None:
            return None
        night_id, end = self._just_ended
        return night_id if self._stream_dt(event.start_s) < end.at else None

    async def _summary_of(self, night_id: str, ended: str, kind: str) -> dict[str, Any]:
        """The night's summary from what is stored (service.history), or tonight's counts if that fails."""
        tz = self.rules.tz

        def compute() -> dict[str, Any] | None:
            from service.history.load import connect, load_night
            from service.history.summary import summarize_night

            conn = connect(self.cfg.storage.db_path, readonly=True)
            try:
                data = load_night(conn, night_id)
                if data is None:
                    return None
                data = dataclasses.replace(data, night={**data.night, "ended_at": ended, "kind": kind})
                return summarize_night(data, tz=tz)
            finally:
                conn.close()

        try:
            summary = await asyncio.to_thread(compute)
        except Exception:
            logger.exception("summary of night %s failed; keeping tonight's counts only", night_id)
            summary = None
        return summary if summary is not None else self._night_summary(night_id)

    def _night_summary(self, night_id: str) -> dict[str, Any]:
        """Tonight's counts as the daemon kept them (a fallback when the stored summary fails)."""
        movements = sum(self.live.counts[t] for t in MOVEMENT_TYPES)
        return {
            "night_id": night_id,
            "counts": dict(sorted(self.live.counts.items())),
            "movements": movements,
            "time_in_bed_min": round(self._in_bed_s / 60.0, 1),
            "total_sleep_min": round(self._asleep_s / 60.0, 1),
            "efficiency_pct": round(100.0 * self._asleep_s / self._in_bed_s, 1) if self._in_bed_s else None,
            "movement_index_per_h": self.live.movements_per_hour,
            "profile": self.profile,
        }

    async def _prune_raw(self) -> None:
        assert self.store is not None
        days = self.cfg.storage.raw_retention_days
        removed = await self.store.prune_raw(iso_utc(utc_now() - timedelta(days=days)))
        if removed:
            logger.info("raw signal older than %d day(s) removed (%d chunks); snippets kept", days, removed)

    async def _check_trend(self) -> None:
        """Apply the change rule to the nights so far; a flagged rise becomes a notice (never a diagnosis)."""
        assert self.store is not None

        def compute() -> dict[str, Any]:
            from service.history.load import connect, list_nights
            from service.history.trends import change_rule

            conn = connect(self.cfg.storage.db_path, readonly=True)
            try:
                return change_rule(list_nights(conn, kind="night")).as_dict()
            finally:
                conn.close()

        try:
            report = await asyncio.to_thread(compute)
        except Exception:
            logger.exception("trend check failed")
            return
        created = iso_utc(utc_now())
        if report.get("flagged"):
            active = await self.store.active_notice("trend_rise")
            if active is None or active["message"] != report.get("message"):
                await self.store.add_notice(
                    uuid.uuid4().hex, created, "trend_rise", str(report["message"]), report
                )
                logger.warning("notice: %s", report["message"])
        await self._publish_notice()

    async def _publish_notice(self) -> None:
        """The retained ``notice`` topic: the active trend notice, or none."""
        assert self.store is not None
        if self.mqtt is None:
            return
        active = await self.store.active_notice("trend_rise")
        doc: dict[str, Any] = {"active": active is not None, "kind": "trend_rise"}
        if active is not None:
            doc.update(message=active["message"], created=active["created_at"], id=active["id"])
        self.mqtt.publish_retained(self.topics.notice, doc)

    async def _store_raw(self, *, final: bool = False) -> None:
        """Write finished raw chunks and the snippets whose signal the ring now holds."""
        assert self.store is not None
        if self._ring is None:
            return
        ring, rate = self._ring, self._ring.rate_hz
        chunks = list(self._pending_chunks)
        self._pending_chunks = []
        if final and self._chunks is not None:
            chunks += self._chunks.flush()
        if self.night_id is not None and self.night_started is not None and self._stream_start is not None:
            for chunk in chunks:
                at = self._stream_dt(chunk.start_index / rate)
                offset = round((at - self.night_started).total_seconds() * rate)
                encoding, blob = encode(chunk.samples)
                await self.store.add_raw_chunk(
                    self.night_id, offset, iso_utc(at), rate, int(chunk.samples.size), encoding, blob
                )
        keep: list[tuple[str, str, int, int, int]] = []
        for event_id, night_id, a, b, end_b in self._pending_snippets:
            if ring.end_index < b and not final:
                keep.append((event_id, night_id, a, b, end_b))
                continue
            if a < ring.start_index:
                # A long event (a PLM series) whose start the ring no longer holds: keep its last part.
                a, b = max(ring.start_index, end_b - (b - a)), end_b
            samples = ring.slice(a, b)
            if samples is None:
                continue
            a = max(a, ring.start_index)
            encoding, blob = encode(samples)
            await self.store.add_snippet(
                event_id, night_id, self._utc(a / rate), rate, int(samples.size), encoding, blob
            )
        self._pending_snippets = keep

    async def _start_mqtt(self) -> None:
        assert self.store is not None
        self.mqtt = MqttLink(
            self.cfg.mqtt,
            self.topics,
            self.store,
            on_command=self._on_command,
            on_connection_change=self._on_mqtt_connection,
            discovery=discovery_json(self.topics, __version__) if self.cfg.mqtt.discovery else None,
        )
        await self._queue_last_night()
        self.mqtt.start()
        if self.live.outbox_len:
            logger.info("%d message(s) waiting in the outbox from before", self.live.outbox_len)
            self.mqtt.kick()

    async def _queue_last_night(self) -> None:
        """Queue the last finished night's summary, retained, unless one is already waiting: a broker
        that lost its retained messages, or nights written by ``bedside demo-history``, would otherwise
        leave Home Assistant's "last night" sensors unknown until the next night ends."""
        assert self.store is not None
        last = await self.store.last_finished_night(self.cfg.unit_id)
        if last is None or await self.store.outbox_waits_on(self.topics.night):
            return
        summary = last["summary"] or await self._summary_of(last["id"], last["ended_at"], last["kind"])
        payload = json.dumps({**summary, "ended": last["ended_at"]}, separators=(",", ":"))
        await self.store.add_outbox([(self.topics.night, payload, 1, True)], iso_utc(utc_now()))
        self.live.outbox_len = await self.store.outbox_len()

    async def _stop_mqtt(self) -> None:
        assert self.mqtt is not None and self.store is not None
        await self.mqtt.stop()
        self.live.mqtt_connected = False
        self.live.outbox_len = await self.store.outbox_len()
        self.live.updated_at = iso_utc(utc_now())
        await self.store.set_live_state(self.cfg.unit_id, self.live.updated_at, self.live.as_dict())

    async def _start_web(self) -> None:
        cmd = [
            sys.executable, "-m", "service", "web",
            "--db", self.cfg.storage.db_path,
            "--host", self.cfg.web.host,
            "--port", str(self.cfg.web.port),
            "--unit-id", self.cfg.unit_id,
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if self.cfg.web.require_login:
            cmd.append("--require-login")
        if self.cfg.web.password_file:
            cmd += ["--password-file", self.cfg.web.password_file]
        for name in self.cfg.web.allowed_hosts:
            cmd += ["--allowed-host", name]
        self._web = subprocess.Popen(cmd)
        logger.info("dashboard at http://%s:%d (pid %d)", self.cfg.web.host, self.cfg.web.port, self._web.pid)

    async def _stop_web(self) -> None:
        assert self._web is not None
        self._web.terminate()
        try:
            await asyncio.to_thread(self._web.wait, 5.0)
        except subprocess.TimeoutExpired:
            self._web.kill()
            await asyncio.to_thread(self._web.wait)

    async def _start_controls(self) -> None:
        from hardware.controls import Controls

        loop = asyncio.get_running_loop()

        def on_button(action: str) -> None:  # gpiozero's thread: cross to the loop
            loop.call_soon_threadsafe(self._queue_command, ButtonPress(action))

        c = self.cfg.controls
        self.controls = Controls(
            button_pin=c.button_pin, led_pin=c.led_pin, on_button=on_button, hold_time_s=c.hold_time_s
        )
        self.controls.set_health("ok")

    async def _stop_controls(self) -> None:
        assert self.controls is not None
        self.controls.set_health("stopped")
        self.controls.close()
        self.controls = None

    async def _button_pressed(self, action: str) -> None:
        """A short press marks a spasm; a long one says "I'm awake", or starts a night if none is open."""
        kind = {"mark": "spasm_mark", "awake": "awake_mark"}.get(action)
        if kind is None:
            logger.warning("unknown button action %r ignored", action)
            return
        if action == "awake":
            async with self._session_lock:
                starts = self.night_id is None and self._stream_start is not None
                if starts:  # "going to bed now"
                    await self._apply(self.sessions.command_start(self._stream_now(), reason="button"))
            if starts:
                await self._publish_live(force=True)
                return
        await self.annotate(kind, source="button")

    # ----- commands: one queue, one task --------------------------------------------------------
    async def _start_commands(self) -> None:
        self._commands_task = asyncio.create_task(self._run_commands(), name="commands")

    async def _stop_commands(self) -> None:
        """Apply what is queued for up to COMMAND_DRAIN_S, then drop the rest (logged); new ones are
        refused from now on. A command being applied is always finished."""
        assert self._commands_task is not None
        self._commands_closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._commands.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._commands_task), COMMAND_DRAIN_S)
        except TimeoutError:
            self._commands_abandon = True
            with contextlib.suppress(asyncio.QueueFull):
                self._commands.put_nowait(None)  # wakes the task if it waits on an empty queue
            await self._commands_task
        left = sum(item is not None for item in self._drain_queue())
        if left:
            logger.warning("stopping: %d queued command(s) not applied", left)

    def _drain_queue(self) -> list[Command | ButtonPress | None]:
        items = []
        while not self._commands.empty():
            items.append(self._commands.get_nowait())
        return items

    async def _run_commands(self) -> None:
        """The one consumer of the command queue: each command is applied whole before the next."""
        while not self._commands_abandon:
            item = await self._commands.get()
            if item is None:
                if self._commands_closed:
                    return
                continue
            try:
                await self._carry_out(item)
            except Exception:  # a command must never take the daemon down, nor stop the queue
                logger.exception("command %s failed; ignored", item)

    def _queue_command(self, item: Command | ButtonPress) -> None:
        """Queue a parsed command or a button press (on the loop); a full queue drops it (logged)."""
        if self._commands_closed:
            logger.info("%s ignored: Bedside is stopping", item)
            return
        try:
            self._commands.put_nowait(item)
        except asyncio.QueueFull:
            self._commands_dropped += 1
            now = time.monotonic()
            if now - self._command_drop_logged >= COMMAND_DROP_LOG_S:
                self._command_drop_logged = now
                logger.warning(
                    "commands arrive faster than they are applied: %d dropped so far (%d waiting)",
                    self._commands_dropped, MAX_QUEUED_COMMANDS,
                )  # fmt: skip

    async def _carry_out(self, item: Command | ButtonPress) -> None:
        if isinstance(item, ButtonPress):
            await self._button_pressed(item.action)
            return
        logger.info("MQTT command: %s", item)
        if isinstance(item, NightCommand):
            if item.action == "start":
                await self._decide(lambda: self.sessions.command_start(self._stream_now()))
            else:
                await self._decide(lambda: self.sessions.command_stop(self._stream_now()))
            await self._publish_live(force=True)
        elif isinstance(item, MarkCommand):
            await self.annotate(item.kind, source="mqtt", note=item.note)
        elif isinstance(item, ProfileCommand):
            await self.set_profile(item.profile)

    async def annotate(self, kind: str, *, source: str, note: str = "") -> None:
        """Keep a user's mark on tonight ("that was a spasm", "I'm awake") as ground truth."""
        assert self.store is not None
        await self.store.add_annotation(
            uuid.uuid4().hex, self.night_id, iso_utc(utc_now()), kind, source, note
        )
        logger.info("annotation %s from %s", kind, source)

    async def _start_detector(self) -> None:
        assert self.store is not None
        params = detector_params_for(self.cfg, self.source)
        cal = await self.store.latest_calibration(self.cfg.sensor.kind)
        if cal and cal.get("presence_floor_rms") and params.presence_floor_rms == 0:
            params = dataclasses.replace(params, presence_floor_rms=float(cal["presence_floor_rms"]))
            logger.info(
                "using the calibration of %s (empty-bed floor %.4g)",
                cal["created_at"],
                params.presence_floor_rms,
            )
        self.detector = Detector(rate_hz=self.source.rate_hz, params=params)

    async def _flush_detector(self) -> None:
        assert self.detector is not None
        await self._handle(self.detector.flush())

    async def _close_source(self) -> None:
        await self.source.close()

    # ----- running ---------------------------------------------------------------------------
    def request_stop(self, why: str) -> None:
        """Ask the pump to stop after the current block (safe from signal handlers)."""
        if not self._stopping.is_set():
            logger.info("stop requested (%s)", why)
            self._stopping.set()

    async def run(self) -> int:
        """Start, pump until the source ends or a stop is requested, stop. Returns an exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        try:
            await self.start()
            await self._pump()
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 0

    async def _pump(self) -> None:
        assert self.detector is not None
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        iterator = aiter(self.source)
        try:
            while not self._stopping.is_set():
                next_block = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({next_block, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if next_block not in done:
                    next_block.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_block
                    break
                try:
                    block = next_block.result()
                except StopAsyncIteration:
                    logger.info("source ended after %d blocks", self.blocks)
                    break
                if self._stream_start is None:
                    await self._stream_began(block)
                else:
                    await self._check_clock(block)
                self.blocks += 1
                await self._fill_gap(block)
                await self._handle(self.detector.process(block.samples))
                if block.n:
                    self._last_sample = float(block.samples[-1])
                    self._next_index = block.index + block.n
                    await self._keep_raw(block)
                t_s = (block.index + block.n) / block.rate_hz
                # run mode: each run is one night, which no session rule ends
                if self.auto_sessions and t_s - self._last_tick_s >= SESSION_TICK_S:
                    self._last_tick_s = t_s
                    await self._decide(functools.partial(self.sessions.tick, self._stream_dt(t_s)))
                if self.detector.fault_open_s >= FAULT_OPEN_REPORT_S:
                    await self._fault_in_progress(t_s)
                elif not self.live.sensor_ok:
                    self._check_sensor_recovered(t_s)
                await self._check_storage()
                if self.live.moving and not self.debounce.update(self._moving_raw, t_s):
                    self.live.moving = False
                    await self._publish_live(force=True)
                else:
                    await self._publish_live(force=False)  # throttled: the dashboard's "now" stays fresh
                self._feed_watchdog()
        finally:
            stop_wait.cancel()

    async def _stream_began(self, block: Block) -> None:
        """The first block fixes the stream clock; then the night starts (run mode) or resumes."""
        self._stream_start = block.t0 - timedelta(seconds=block.index / block.rate_hz)
        self._ring = RawRing(block.rate_hz, RING_S)
        t0 = self._stream_dt(block.index / block.rate_hz)
        async with self._session_lock:  # a command may be starting or ending a night meanwhile
            t0 = await self._resume_or_close(t0)
            if not self.auto_sessions:
                await self._apply(self.sessions.command_start(t0, reason="daemon"))
        await self._publish_notice()

    async def _check_clock(self, block: Block) -> None:
        """A wall clock that jumps forward (NTP setting a Pi that booted with a stale time) re-anchors
        the stream clock, so tonight's times and windows follow the real time; events keep their order.
        A clock that goes back is not followed (times stay monotonic) and is logged once."""
        assert self._stream_start is not None
        expected = self._stream_dt(block.index / block.rate_hz)
        jump = (block.t0 - expected).total_seconds()
        if jump > CLOCK_JUMP_S:
            delta = timedelta(seconds=jump)
            logger.warning("wall clock jumped forward by %.0f s: stream times re-anchored", jump)
            async with self._session_lock:  # the open night moves as one with the tracker
                self._stream_start += delta
                self.sessions.shift(delta)
                if self.night_id is not None and self.night_started is not None:
                    assert self.store is not None
                    self.night_started += delta
                    await self.store.shift_night(
                        self.night_id,
                        iso_utc(self.night_started),
                        self.rules.night_date(self.night_started).isoformat(),
                        jump,
                    )
        elif jump < -CLOCK_JUMP_S and not self._clock_back_warned:
            self._clock_back_warned = True
            logger.warning("wall clock went back by %.0f s: stream times keep running forward", -jump)

    async def _keep_raw(self, block: Block) -> None:
        """Hold the block in the ring for snippets and, while a night is open, in its raw chunks."""
        assert self._ring is not None
        samples = block.samples if block.samples.ndim == 1 else block.samples[:, 0]
        self._ring.extend(block.index, samples)
        if self._chunks is not None and self.night_id is not None:
            self._pending_chunks += self._chunks.add(block.index, samples)
        if self._pending_chunks or self._pending_snippets:
            await self._store_raw()

    async def _fill_gap(self, block: Block) -> None:
        """Samples the source lost (a dropped block) are filled with the last value, so the
        detector's sample clock stays exact; the loss is logged and counted."""
        assert self.detector is not None
        if self._next_index is None or block.index <= self._next_index:
            return
        gap = block.index - self._next_index
        self.dropped_samples += gap
        logger.warning("sensor: %d sample(s) lost before sample %d; filled", gap, block.index)
        step = int(60 * block.rate_hz)
        for start in range(0, gap, step):
            n = min(step, gap - start)
            await self._handle(self.detector.process(np.full(n, self._last_sample, dtype=np.float32)))
        # The source lost these samples: that is a sensor fault the detector cannot see in the
        # (filled) signal, so it is reported here. seq -1: never an awakening's cause.
        fault = Event(
            seq=-1,
            type="sensor_fault",
            start_s=self._next_index / block.rate_hz,
            end_s=block.index / block.rate_hz,
            intensity=0.0,
            profile=self.profile,
            details={"dropped_samples": float(gap)},
        )
        await self._on_event(fault)
        await self._publish_live(force=True)

    async def _check_storage(self) -> None:
        """While the database refuses writes (disk full, locked), retry the held ones now and then;
        the retained state says so (``storage_ok``) until they are written."""
        assert self.store is not None
        if self.store.problem is None and self.live.storage_problem is None:
            return
        await self.store.retry_held()
        if self.store.problem != self.live.storage_problem:
            self.live.storage_problem = self.store.problem
            await self._publish_live(force=True)

    async def _fault_in_progress(self, t_s: float) -> None:
        """A fault that has not ended yet (unplugged, stuck, on a rail): the sensor is not ok now."""
        self._fault_until_s = max(self._fault_until_s, t_s + SENSOR_OK_AFTER_S)
        if self.live.sensor_ok:
            assert self.detector is not None
            logger.warning("sensor: fault in progress for %.0f s (unplugged, stuck or on a rail)",
                           self.detector.fault_open_s)  # fmt: skip
            self.live.sensor_ok = False
            self._show_health()
            await self._publish_live(force=True)

    def _check_sensor_recovered(self, t_s: float) -> None:
        if t_s >= self._fault_until_s:
            self.live.sensor_ok = True
            logger.info("sensor healthy again")
            self._show_health()

    def _show_health(self) -> None:
        if self.controls is not None:
            self.controls.set_health("ok" if self.live.sensor_ok else "fault")

    def _feed_watchdog(self) -> None:
        if self._watchdog_s is None:
            return
        now = time.monotonic()
        if now - self._last_watchdog >= self._watchdog_s:
            notify("WATCHDOG=1")
            self._last_watchdog = now

    # ----- fan-out ---------------------------------------------------------------------------
    async def _handle(self, outputs: list[Output]) -> None:
        if not outputs:
            return
        flipped = False
        for out in outputs:
            if isinstance(out, Event):
                await self._on_event(out)
                flipped = True
            elif isinstance(out, State):
                flipped |= self._on_state(out)
                if self.auto_sessions and out.in_bed is not None:
                    bed = functools.partial(self.sessions.bed, self._stream_dt(out.t_s), out.in_bed)
                    await self._decide(bed)
            elif isinstance(out, Epoch):
                await self._on_epoch(out)
            elif isinstance(out, Vitals):
                await self._on_vitals(out)
        await self._publish_live(force=flipped)

    def _utc(self, t_s: float) -> str:
        assert self._stream_start is not None
        return iso_utc(self._stream_start + timedelta(seconds=t_s))

    async def _on_event(self, event: Event) -> None:
        assert self.store is not None and self._stream_start is not None
        if event.type == "sensor_fault" and "no_data_s" not in event.details:  # not a past hole
            self.live.sensor_ok = False
            self._show_health()
            self._fault_until_s = max(self._fault_until_s, event.end_s + SENSOR_OK_AFTER_S)
        if event.type == "bed_entry" and self.auto_sessions and self.night_id is None:
            # Never nested in _decide: the night _take_untracked (under the lock) feeds is already open.
            await self._decide(lambda: self.sessions.bed(self._stream_dt(event.start_s), True))
        night_id = self.night_id or self._late_night(event)
        if night_id is None:
            self.untracked_events += 1
            self._untracked.append(event)
            while self._untracked and self._untracked[0].end_s < event.end_s - UNTRACKED_KEEP_S:
                self._untracked.popleft()
            logger.debug("%s not recorded: no night is open", event.type)
            return
        event_id = uuid.uuid4().hex
        self._event_ids[event.seq] = event_id
        while len(self._event_ids) > CAUSE_MEMORY:
            self._event_ids.popitem(last=False)
        cause_id = self._event_ids.get(event.cause_seq) if event.cause_seq is not None else None
        row = event_row(
            event,
            event_id=event_id,
            night_id=night_id,
            stream_start=self._stream_start,
            cause_id=cause_id,
        )
        publish = self.limiter.allow(event.type, event.end_s)
        outbox = []
        if publish:
            payload = json.dumps({**row, "unit_id": self.cfg.unit_id}, separators=(",", ":"))
            outbox.append((self.topics.event, payload, 1, False))
        else:
            self.live.suppressed_events = self.limiter.suppressed
            logger.debug("%s stored but not published: over the rate limit", event.type)
        await self.store.add_event(row, outbox, iso_utc(utc_now()))
        self.events_written += 1
        if self._ring is not None:
            rate = self._ring.rate_hz
            a_s, b_s = snippet_span(
                event.start_s, event.end_s, self.cfg.storage.snippet_pad_s, self.cfg.storage.snippet_max_s
            )
            end_b = round((event.end_s + self.cfg.storage.snippet_pad_s) * rate)
            self._pending_snippets.append((event_id, night_id, round(a_s * rate), round(b_s * rate), end_b))
        if night_id == self.night_id:
            self.live.counts[event.type] += 1
            self._update_rates()
        elif self._just_ended is not None:  # a late event of the night that just ended: summarise again
            logger.info("%s found after night %s ended, inside it: kept there", event.type, night_id)
            await self._close_night(*self._just_ended)
        if publish and self.mqtt is not None:
            self.live.outbox_len += 1
            self.mqtt.kick()

    def _on_state(self, state: State) -> bool:
        self._moving_raw = state.moving
        moving = self.debounce.update(state.moving, state.t_s)
        changed = (state.in_bed, moving, state.asleep) != (
            self.live.in_bed,
            self.live.moving,
            self.live.asleep,
        )
        self.live.in_bed, self.live.moving, self.live.asleep = state.in_bed, moving, state.asleep
        if state.in_bed is False:
            self.live.heart_bpm = self.live.breath_bpm = None
        return changed

    def _update_rates(self) -> None:
        hours = self._asleep_s / 3600.0
        moves = sum(self.live.counts[t] for t in MOVEMENT_TYPES)
        self.live.movements_per_hour = round(moves / hours, 1) if hours >= 0.5 else None

    async def _on_epoch(self, epoch: Epoch) -> None:
        assert self.store is not None
        if self.night_id is None:
            return
        self._in_bed_s += epoch.duration_s if epoch.in_bed else 0.0
        self._asleep_s += epoch.duration_s if epoch.asleep else 0.0
        self._update_rates()
        await self.store.add_epoch(
            self.night_id,
            self._utc(epoch.start_s),
            epoch.duration_s,
            float(epoch.count),
            epoch.asleep,
            epoch.in_bed,
        )

    async def _on_vitals(self, vitals: Vitals) -> None:
        assert self.store is not None
        self.live.heart_bpm, self.live.breath_bpm = vitals.heart_bpm, vitals.breath_bpm
        if self.night_id is None:
            return
        await self.store.add_vitals(self.night_id, self._utc(vitals.t_s), vitals.heart_bpm, vitals.breath_bpm)

    async def _publish_live(self, *, force: bool) -> None:
        assert self.store is not None
        now = time.monotonic()
        recounted = False
        if self.mqtt is not None:
            self.live.mqtt_connected = self.mqtt.connected
            # Acknowledgements arrive on their own time: count what really waits, not what was queued.
            if force or (self.live.outbox_len and now - self._last_outbox_count >= OUTBOX_RECOUNT_S):
                waiting = await self.store.outbox_len()
                recounted = waiting != self.live.outbox_len  # written at once, not a second later
                self.live.outbox_len, self._last_outbox_count = waiting, now
            if force or now - self._last_state_publish >= STATE_PUBLISH_PERIOD_S:
                self.mqtt.publish_retained(self.topics.state, self.live.as_dict())
                self._last_state_publish = now
        since = now - self._last_live_write
        if (
            force
            or recounted
            or since >= LIVE_HEARTBEAT_S
            or (since >= LIVE_WRITE_PERIOD_S and self._live_changed())
        ):
            self.live.updated_at = iso_utc(utc_now())
            doc = self.live.as_dict()
            await self.store.set_live_state(self.cfg.unit_id, self.live.updated_at, doc)
            self._last_live_write = now
            self._last_live_doc = {k: v for k, v in doc.items() if k != "updated_at"}

    def _live_changed(self) -> bool:
        doc = {k: v for k, v in self.live.as_dict().items() if k != "updated_at"}
        return doc != self._last_live_doc

    def _on_mqtt_connection(self, connected: bool) -> None:
        self.live.mqtt_connected = connected

    def _on_command(self, name: str, payload: bytes) -> None:
        """A message on ``cmd/<name>`` (on the loop): parsed now, queued to be applied in order.
        Bad ones are logged and ignored."""
        try:
            command = parse_command(name, payload)
        except CommandError as exc:
            logger.warning("MQTT command on cmd/%s ignored: %s", name[:60], exc)
            return
        self._queue_command(command)

    async def set_profile(self, profile: str) -> None:
        """Switch the PLM rule profile; series that end from now on are labelled with it."""
        if profile == self.profile:
            return
        self.profile = profile
        self.live.profile = profile
        if self.detector is not None:
            self.detector.set_profile(profile)
        await self._publish_live(force=True)


def _brief(summary: dict[str, Any]) -> str:
    keys = ("time_in_bed_min", "total_sleep_min", "efficiency_pct", "movements", "awakenings")
    return ", ".join(f"{k}={summary[k]}" for k in keys if k in summary)
