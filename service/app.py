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
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from hardware.block import Block, SampleSource
from service import __version__
from service.commands import CommandError, MarkCommand, NightCommand, ProfileCommand, parse_command
from service.config import Config, detector_params_for
from service.detect import Detector
from service.detect.types import MOVEMENT_TYPES, Epoch, Event, Output, State, Vitals
from service.discovery import discovery_json
from service.live import LiveState
from service.mqtt import MqttLink
from service.payloads import event_row
from service.ratelimit import EventLimiter, MovingDebounce
from service.sdnotify import notify, watchdog_interval_s
from service.store.store import Store
from service.timefmt import iso_utc, utc_now
from service.topics import Topics

if TYPE_CHECKING:
    from hardware.controls import Controls

logger = logging.getLogger(__name__)

#: Live state is written to the database at most this often unless a flag flips.
LIVE_WRITE_PERIOD_S = 1.0
#: Vitals-only changes of the retained MQTT state are published at most this often.
STATE_PUBLISH_PERIOD_S = 10.0
#: The sensor counts as healthy again this many seconds (stream time) after its last fault.
SENSOR_OK_AFTER_S = 60.0
#: How many event ids are remembered to resolve an awakening's cause.
CAUSE_MEMORY = 1000


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
        self._stopping = asyncio.Event()
        self._undo: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._last_live_write = 0.0
        self._last_state_publish = 0.0
        self._last_watchdog = 0.0
        self._watchdog_s = watchdog_interval_s()
        self._fault_until_s = 0.0
        self._next_index: int | None = None
        self._last_sample = 0.0
        self.dropped_samples = 0
        self.controls: Controls | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.profile = cfg.detector_params().profile
        self.live.profile = self.profile
        self.limiter = EventLimiter(burst=cfg.mqtt.event_burst, per_min=cfg.mqtt.events_per_min)
        self.debounce = MovingDebounce(off_delay_s=cfg.mqtt.moving_off_delay_s)
        self._moving_raw = False
        self._asleep_s = self._in_bed_s = 0.0
        self.untracked_events = 0
        self.blocks = 0
        self.events_written = 0

    # ----- start and stop --------------------------------------------------------------------
    async def start(self) -> None:
        """Open store, connect MQTT, start the night, start the dashboard, create the detector.

        Stopping runs these backwards, so the night's summary and the final state are queued
        before the MQTT link drains and publishes ``offline``."""
        await self._step("store", self._open_store, self._close_store)
        if self.cfg.mqtt.enabled:
            await self._step("MQTT link", self._start_mqtt, self._stop_mqtt)
        await self._step("night", self._start_night, self._end_night)
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
        if self._tasks:  # annotations still being written
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    async def _start_night(self) -> None:
        assert self.store is not None
        if self.night_id is not None:
            logger.info("night %s is already being tracked", self.night_id)
            return
        now = utc_now()
        self.night_id = f"{now:%Y%m%dT%H%M%SZ}-{self.cfg.unit_id}-{uuid.uuid4().hex[:6]}"
        await self.store.start_night(
            self.night_id,
            self.cfg.unit_id,
            iso_utc(now),
            self.profile,
            self.source_label,
        )
        self.live.night_id = self.night_id
        self.live.counts.clear()
        self.live.tracking = True
        self._asleep_s = self._in_bed_s = 0.0
        logger.info("night %s started (source: %s)", self.night_id, self.source_label)

    async def _end_night(self) -> None:
        assert self.store is not None
        if self.night_id is None:
            return
        summary = self._night_summary()
        ended = utc_now()
        payload = json.dumps({**summary, "ended": iso_utc(ended)}, separators=(",", ":"))
        outbox = [(self.topics.night, payload, 1, True)] if self.mqtt is not None else []
        await self.store.end_night(self.night_id, iso_utc(ended), summary, outbox)
        logger.info("night %s ended: %s", self.night_id, summary)
        self.night_id = self.live.night_id = None
        self.live.tracking = False
        if self.mqtt is not None:
            self.mqtt.kick()
        await self._publish_live(force=True)

    def _night_summary(self) -> dict[str, Any]:
        """What the ``night`` topic carries (the Nights issue deepens it)."""
        movements = sum(self.live.counts[t] for t in MOVEMENT_TYPES)
        return {
            "night_id": self.night_id,
            "counts": dict(sorted(self.live.counts.items())),
            "movements": movements,
            "time_in_bed_min": round(self._in_bed_s / 60.0, 1),
            "sleep_min": round(self._asleep_s / 60.0, 1),
            "efficiency_pct": round(100.0 * self._asleep_s / self._in_bed_s, 1) if self._in_bed_s else None,
            "movements_per_hour": self.live.movements_per_hour,
            "profile": self.profile,
        }

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
        self.mqtt.start()
        if self.live.outbox_len:
            logger.info("%d message(s) waiting in the outbox from before", self.live.outbox_len)
            self.mqtt.kick()

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
        ]  # fmt: skip
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
            loop.call_soon_threadsafe(self._on_button, action)

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

    def _on_button(self, action: str) -> None:
        kind = {"mark": "spasm_mark", "awake": "awake_mark"}.get(action)
        if kind is None:
            logger.warning("unknown button action %r ignored", action)
            return
        self._spawn(self.annotate(kind, source="button"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                    self._stream_start = block.t0 - timedelta(seconds=block.index / block.rate_hz)
                self.blocks += 1
                await self._fill_gap(block)
                await self._handle(self.detector.process(block.samples))
                if block.n:
                    self._last_sample = float(block.samples[-1])
                    self._next_index = block.index + block.n
                t_s = (block.index + block.n) / block.rate_hz
                if not self.live.sensor_ok:
                    self._check_sensor_recovered(t_s)
                if self.live.moving and not self.debounce.update(self._moving_raw, t_s):
                    self.live.moving = False
                    await self._publish_live(force=True)
                else:
                    await self._publish_live(force=False)  # throttled: the dashboard's "now" stays fresh
                self._feed_watchdog()
        finally:
            stop_wait.cancel()

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
        if event.type == "sensor_fault":
            self.live.sensor_ok = False
            self._show_health()
            self._fault_until_s = max(self._fault_until_s, event.end_s + SENSOR_OK_AFTER_S)
        if self.night_id is None:
            self.untracked_events += 1
            logger.debug("%s not recorded: tracking is off", event.type)
            return
        event_id = uuid.uuid4().hex
        self._event_ids[event.seq] = event_id
        while len(self._event_ids) > CAUSE_MEMORY:
            self._event_ids.popitem(last=False)
        cause_id = self._event_ids.get(event.cause_seq) if event.cause_seq is not None else None
        row = event_row(
            event,
            event_id=event_id,
            night_id=self.night_id,
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
        self.live.counts[event.type] += 1
        self._update_rates()
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
        if self.mqtt is not None:
            self.live.mqtt_connected = self.mqtt.connected
            self.live.outbox_len = await self.store.outbox_len() if force else self.live.outbox_len
            if force or now - self._last_state_publish >= STATE_PUBLISH_PERIOD_S:
                self.mqtt.publish_retained(self.topics.state, self.live.as_dict())
                self._last_state_publish = now
        if force or now - self._last_live_write >= LIVE_WRITE_PERIOD_S:
            self.live.updated_at = iso_utc(utc_now())
            await self.store.set_live_state(self.cfg.unit_id, self.live.updated_at, self.live.as_dict())
            self._last_live_write = now

    def _on_mqtt_connection(self, connected: bool) -> None:
        self.live.mqtt_connected = connected

    def _on_command(self, name: str, payload: bytes) -> None:
        """A message on ``cmd/<name>`` (on the loop). Bad ones are logged and ignored."""
        try:
            command = parse_command(name, payload)
        except CommandError as exc:
            logger.warning("MQTT command on cmd/%s ignored: %s", name[:60], exc)
            return
        logger.info("MQTT command: %s", command)
        if isinstance(command, NightCommand):
            self._spawn(self._start_night() if command.action == "start" else self._end_night())
            self._spawn(self._publish_live(force=True))
        elif isinstance(command, MarkCommand):
            self._spawn(self.annotate(command.kind, source="mqtt", note=command.note))
        elif isinstance(command, ProfileCommand):
            self.set_profile(command.profile)

    def set_profile(self, profile: str) -> None:
        """Switch the PLM rule profile; series that end from now on are labelled with it."""
        if profile == self.profile:
            return
        self.profile = profile
        self.live.profile = profile
        if self.detector is not None:
            self.detector.set_profile(profile)
        self._spawn(self._publish_live(force=True))
