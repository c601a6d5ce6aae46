"""The MQTT link to the home hub: availability, the outbox drain, retained state, commands.

paho runs its own network thread (``loop_start``); every paho callback crosses to the
asyncio loop with ``loop.call_soon_threadsafe`` and nothing blocking runs on the loop.

Delivery: events are already in SQLite with an outbox row when they reach this module. The
drain task publishes outbox rows in order (QoS 1) while connected and deletes a row only when
the broker's PUBACK for it arrives. paho re-sends un-acknowledged QoS 1 messages itself after a
reconnect; rows still in the outbox after a crash are published again at the next start, so a
consumer may see an id twice and must drop duplicates by ``id``.

Home Assistant's ``online`` on its status topic republishes the discovery configs, at most once per
REDISCOVERY_INTERVAL_S and never while the previous republish is still unacknowledged: more
``online`` messages in between are folded into one republish at the end of the interval, so a
flood costs a few republishes and a log line each, not one per message. Retained messages on the
command and status topics are ignored: the broker hands them out again at every reconnect (the
discovery is announced at every connect anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from service.config import MqttConfig, read_secret
from service.errors import ConfigError
from service.store.store import Store
from service.topics import Topics

logger = logging.getLogger(__name__)

#: Outbox messages handed to paho and not yet acknowledged, at most.
MAX_IN_FLIGHT = 100
#: Home Assistant's ``online`` republishes discovery at most this often (seconds).
REDISCOVERY_INTERVAL_S = 5.0
#: A republish whose messages are not all acknowledged yet delays the next one by this much (seconds).
REDISCOVERY_RECHECK_S = 1.0
#: Retained command topics remembered to log each once; past this many, no more lines.
MAX_RETAINED_LOGGED = 64

CommandHandler = Callable[[str, bytes], None]


class MqttLink:
    """One paho client for the daemon. Create, ``start()``, then ``await stop()``.

    ``on_command(name, payload)`` is called on the asyncio loop for each message under
    ``<root>/cmd/``; the handler validates it (bad input is logged and ignored there).
    """

    def __init__(
        self,
        cfg: MqttConfig,
        topics: Topics,
        store: Store,
        *,
        on_command: CommandHandler | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        discovery: list[tuple[str, str]] | None = None,
    ) -> None:
        self._cfg = cfg
        self.topics = topics
        self._store = store
        self._on_command = on_command
        self._on_connection_change = on_connection_change
        self._discovery = discovery or []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._wake = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self._in_flight: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked: list[int] = []
        self._sent_upto = 0
        self._last_state: str | None = None
        self._retained: dict[str, str] = {}  # written on the loop, read on paho's thread
        self._retained_lock = threading.Lock()
        self.connected = False
        self._closing = False
        self._refusal_logged: str | None = None
        self.published = 0
        self._last_rediscovery = float("-inf")  # loop time of the last republish
        self._rediscovery: asyncio.TimerHandle | None = None  # a republish waiting for its turn
        self._rediscovery_folded = 0  # ``online`` messages folded into the waiting republish
        self._rediscovery_sent: list[mqtt.MQTTMessageInfo] = []
        self._retained_logged: set[str] = set()
        self.rediscoveries = 0

    # ----- lifecycle -------------------------------------------------------------------------
    def _build_client(self) -> mqtt.Client:
        cfg = self._cfg
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bedside-{self.topics.unit_id}",
            clean_session=True,
        )
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        if cfg.username:
            password = read_secret(cfg.password_file, "mqtt_password")
            client.username_pw_set(cfg.username, password)
        elif cfg.password_file:
            raise ConfigError("mqtt.password_file is set but mqtt.username is not")
        if cfg.tls:
            try:
                client.tls_set(
                    ca_certs=cfg.tls_ca_file,
                    certfile=cfg.tls_cert_file,
                    keyfile=cfg.tls_key_file,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"mqtt.tls_ca_file / tls_cert_file: cannot load ({exc})") from None
        client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)), max_delay=max(1, round(cfg.reconnect_max_s))
        )
        client.max_inflight_messages_set(MAX_IN_FLIGHT)
        client.on_connect = self._paho_on_connect
        client.on_disconnect = self._paho_on_disconnect
        client.on_publish = self._paho_on_publish
        client.on_message = self._paho_on_message
        client.on_connect_fail = self._paho_on_connect_fail
        return client

    def start(self) -> None:
        """Begin connecting in the background; never blocks, never fails on an absent broker."""
        self._loop = asyncio.get_running_loop()
        self._client = self._build_client()
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self._client.loop_start()
        self._drain_task = asyncio.create_task(self._drain(), name="mqtt-drain")
        logger.info("MQTT: connecting to %s:%d in the background", self._cfg.host, self._cfg.port)

    async def stop(self, drain_timeout_s: float = 3.0) -> None:
        """Let the outbox drain a little, publish ``offline`` (retained), disconnect.

        What is not acknowledged by then stays in the outbox for the next start.
        """
        client = self._client
        if client is None:
            return
        if self.connected:
            deadline = asyncio.get_running_loop().time() + drain_timeout_s
            while asyncio.get_running_loop().time() < deadline:
                if await self._store.outbox_len() == 0 and not self._in_flight:
                    break
                self._wake.set()
                await asyncio.sleep(0.05)
            await self._flush_acks()
            info = client.publish(self.topics.availability, "offline", qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, 2.0)
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
        await self._flush_acks()
        if self._rediscovery is not None:
            self._rediscovery.cancel()
            self._rediscovery = None
        self._closing = True
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._client = None
        self.connected = False
        logger.info("MQTT: disconnected")

    # ----- publishing ------------------------------------------------------------------------
    def kick(self) -> None:
        """New rows are in the outbox: wake the drain."""
        self._wake.set()

    def publish_retained(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish a retained JSON document now if connected; it is re-sent on every connect."""
        text = json.dumps(payload, separators=(",", ":"))
        with self._retained_lock:
            self._retained[topic] = text
        if self.connected and self._client is not None:
            self._client.publish(topic, text, qos=1, retain=True)

    async def _flush_acks(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            await self._store.outbox_ack(acked)
            self.published += len(acked)

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_acks()
            while self.connected and self._client is not None:
                room = MAX_IN_FLIGHT - len(self._in_flight)
                if room <= 0:
                    break
                rows = await self._store.outbox_pending(after_seq=self._sent_upto, limit=room)
                if not rows:
                    break
                for row in rows:
                    info = self._client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                    if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                        logger.warning("MQTT: publish refused locally (%s); retrying later", info.rc)
                        break
                    self._in_flight[info.mid] = row.seq
                    self._sent_upto = row.seq

    # ----- paho callbacks (paho's thread) ------------------------------------------------------
    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _paho_on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self._call(self._refused, str(reason))
            return
        # Subscribing here restores subscriptions after every reconnect.
        client.subscribe(self.topics.command_filter, qos=1)
        if self._discovery:
            client.subscribe(self.topics.ha_status, qos=1)
        self._announce(client)
        self._call(self._connected)

    def _announce(self, client: mqtt.Client) -> list[mqtt.MQTTMessageInfo]:
        """Discovery configs, then ``online``, then the retained documents (any thread)."""
        sent = [client.publish(topic, text, qos=1, retain=True) for topic, text in self._discovery]
        sent.append(client.publish(self.topics.availability, "online", qos=1, retain=True))
        with self._retained_lock:
            retained = list(self._retained.items())
        sent += [client.publish(topic, text, qos=1, retain=True) for topic, text in retained]
        return sent

    def _paho_on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._call(self._unreachable)

    def _paho_on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._call(self._disconnected, str(reason))

    def _paho_on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        self._call(self._ack, mid)

    def _paho_on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._message, msg.topic, bytes(msg.payload), bool(msg.retain))

    # ----- the same events on the asyncio loop -------------------------------------------------
    def _refused(self, reason: str) -> None:
        if self._refusal_logged != reason:
            logger.error(
                "MQTT: broker %s:%d refused the connection: %s (check mqtt.username, the password "
                "and TLS settings); events stay in the outbox",
                self._cfg.host,
                self._cfg.port,
                reason,
            )
            self._refusal_logged = reason

    def _unreachable(self) -> None:
        if self._refusal_logged != "unreachable":
            logger.warning(
                "MQTT: cannot connect to %s:%d (broker down, wrong host or port, or a TLS failure: check "
                "mqtt.tls_ca_file); retrying with backoff, events stay in the outbox",
                self._cfg.host,
                self._cfg.port,
            )
            self._refusal_logged = "unreachable"

    def _connected(self) -> None:
        self.connected = True
        self._refusal_logged = None
        # The connect announced the unit: a republish still waiting is covered by it.
        self._last_rediscovery = asyncio.get_running_loop().time()
        self._rediscovery_sent = []
        if self._rediscovery is not None:
            self._rediscovery.cancel()
            self._rediscovery = None
            self._rediscovery_folded = 0
        logger.info("MQTT: connected to %s:%d", self._cfg.host, self._cfg.port)
        if self._on_connection_change:
            self._on_connection_change(True)
        self._wake.set()

    def _disconnected(self, reason: str) -> None:
        if self.connected and not self._closing:
            logger.warning("MQTT: connection lost (%s); reconnecting with backoff", reason)
        self.connected = False
        if self._on_connection_change:
            self._on_connection_change(False)

    def _ack(self, mid: int) -> None:
        seq = self._in_flight.pop(mid, None)
        if seq is not None:
            self._acked.append(seq)
            self._wake.set()

    def _message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if topic == self.topics.ha_status:
            # A retained ``online`` comes with every (re)subscribe, right after the connect announced.
            if payload.strip() == b"online" and not retained:
                self._home_assistant_online()
            return
        prefix = self.topics.root + "/cmd/"
        if retained and topic.startswith(prefix):
            if topic not in self._retained_logged and len(self._retained_logged) < MAX_RETAINED_LOGGED:
                self._retained_logged.add(topic)
                logger.warning(
                    "MQTT: retained message on %s ignored (commands are never retained: it would be "
                    "applied again at every reconnect; clear it with an empty retained message)",
                    topic[:120],
                )
            return
        if topic.startswith(prefix) and self._on_command is not None:
            try:
                self._on_command(topic[len(prefix) :], payload)
            except Exception:  # a bad command must never take the daemon down
                logger.exception("MQTT: command on %s failed; ignored", topic)

    # ----- Home Assistant's rediscovery (on the loop) ----------------------------------------------
    def _home_assistant_online(self) -> None:
        """Home Assistant announced ``online``: republish discovery now, or fold into the waiting one."""
        if self._rediscovery is not None:
            self._rediscovery_folded += 1
            return
        loop = asyncio.get_running_loop()
        wait_s = self._last_rediscovery + REDISCOVERY_INTERVAL_S - loop.time()
        if wait_s > 0 or self._rediscovery_busy():
            self._rediscovery_folded = 1
            self._rediscovery = loop.call_later(max(wait_s, REDISCOVERY_RECHECK_S), self._rediscover)
            return
        self._rediscover()

    def _rediscovery_busy(self) -> bool:
        """Whether messages of the last republish still wait for the broker's acknowledgement."""
        return self.connected and any(
            info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not info.is_published()
            for info in self._rediscovery_sent
        )

    def _rediscover(self) -> None:
        self._rediscovery = None
        if self._client is None or self._closing or not self.connected:
            self._rediscovery_folded = 0  # the next connect announces the unit anyway
            return
        if self._rediscovery_busy():
            loop = asyncio.get_running_loop()
            self._rediscovery = loop.call_later(REDISCOVERY_RECHECK_S, self._rediscover)
            return
        folded, self._rediscovery_folded = self._rediscovery_folded, 0
        logger.info(
            "MQTT: Home Assistant is online; announcing the unit again%s",
            f" ({folded} 'online' message(s) since the last announcement folded into this one)"
            if folded > 1
            else "",
        )
        self._last_rediscovery = asyncio.get_running_loop().time()
        self._rediscovery_sent = self._announce(self._client)
        self.rediscoveries += 1
