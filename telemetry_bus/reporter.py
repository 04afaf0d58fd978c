"""The reporter: what a platform service embeds to be seen on the operator dashboard.

    rep = Reporter("ingest", "ingest-1", mqtt_url="mqtt://127.0.0.1:1883",
                   depends_on=["mqtt", "influxdb"])   # optional: edges of the dependency graph
    await rep.start()
    rep.inc("messages_received")            # counter (hot path: well under 2 us)
    rep.set_gauge("queue_depth", 12)         # gauge (last value wins)
    rep.observe("influx_write_ms", 3.2)      # latency histogram
    rep.event("parse_error", "Invalid JSON from dev-042", severity="error")
    rep.set_health("degraded", "influx slow")
    await rep.stop()                         # publishes status offline/shutdown

Two layers, as everywhere in opsdash: :class:`ReporterCore` is pure (no I/O, time passed in) and
keeps the pending interval; :class:`Reporter` adds the MQTT loop around it: retained ``status`` online
at connect, Last Will offline/lost, one ``metrics`` message per interval (QoS 1), events as they
happen, offline/shutdown on a clean stop, reconnects with jittered, capped backoff.

While the broker is unreachable nothing is lost and memory stays bounded: every counter keeps one
pending number, every histogram one pending histogram (its buckets are capped), gauges their last
value. The next message after a reconnect carries the whole outage as one interval. A message that
may not have reached the broker is re-sent with the *same* ``seq``, so the aggregator folds it once.
Events are kept in a bounded queue (the oldest are dropped and counted in ``events_dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final, Literal

import aiomqtt

from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import MqttConfig, MqttEndpoint, ReporterConfig
from telemetry_bus.contract import (
    MAX_DEPENDS_ON,
    Event,
    Metrics,
    Status,
    check_name,
    encode,
    topics,
)
from telemetry_bus.histogram import REPORTER_MAX_BUCKETS, ExpHistogram
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever

__all__ = ["Reporter", "ReporterCore", "new_boot_id"]

log = logging.getLogger("opsdash.reporter")

_METRIC_RE_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
MAX_EVENTS_QUEUED: Final = 1000
MAX_SERIES: Final = 256


def new_boot_id() -> str:
    """A fresh id for one run of a process: time-ordered, unique enough (ms time + random)."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def _check_metric(name: str) -> str:
    if not (0 < len(name) <= 64 and "a" <= name[0] <= "z" and set(name) <= _METRIC_RE_CHARS):
        raise ValueError(f"metric name must match [a-z][a-z0-9_]{{0,63}}, got {name!r}")
    return name


class ReporterCore:
    """The pending interval of one instance; ``take(now)`` turns it into the next metrics message."""

    def __init__(self, boot: str, interval_s: float = 1.0, now: float = 0.0) -> None:
        self.boot = boot
        self.interval_s = interval_s
        self.seq = 0
        self.counters: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.gauges: dict[str, int | float] = {}
        self.hists: dict[str, ExpHistogram] = {}
        self.health: Literal["ok", "degraded", "down"] = "ok"
        self.detail = ""
        self.t0 = now
        self.event_seq = 0
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS_QUEUED)
        self.events_dropped = 0

    def _new_series(self, name: str) -> None:
        _check_metric(name)
        if len(self.totals) + len(self.gauges) + len(self.hists) >= MAX_SERIES:
            raise ValueError(f"too many series in one reporter (max {MAX_SERIES}), refusing {name!r}")

    def inc(self, name: str, n: int = 1) -> None:
        if n < 0:
            raise ValueError(f"counter increments must be >= 0, got {n!r} for {name!r}")
        counters = self.counters
        if name in counters:
            counters[name] += n
        else:
            if name not in self.totals:
                self._new_series(name)
                self.totals[name] = 0
            counters[name] = n

    def set_gauge(self, name: str, value: int | float) -> None:
        """A count (an int: queue depth, connections) stays an int on the wire; anything else is a float."""
        if name not in self.gauges:
            self._new_series(name)
        if not math.isfinite(value):
            raise ValueError(f"gauge {name!r} must be finite, got {value!r}")
        self.gauges[name] = value if type(value) is int else float(value)

    def observe(self, name: str, value: float) -> None:
        h = self.hists.get(name)
        if h is None:
            self._new_series(name)
            h = self.hists[name] = ExpHistogram(max_buckets=REPORTER_MAX_BUCKETS)
        h.record(value)

    def set_health(self, health: Literal["ok", "degraded", "down"], detail: str = "") -> None:
        if health not in ("ok", "degraded", "down"):
            raise ValueError(f"health must be ok, degraded or down, got {health!r}")
        self.health = health
        self.detail = detail[:2000]

    def event(self, kind: str, message: str, now: float, severity: str = "error",
              attrs: dict[str, str] | None = None) -> None:
        _check_metric(kind)
        if severity not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError(f"severity must be debug/info/warning/error/critical, got {severity!r}")
        if len(self.events) == self.events.maxlen:
            self.events_dropped += 1
        self.event_seq += 1
        self.events.append(Event(
            boot=self.boot, seq=self.event_seq, ts=now, kind=kind,
            severity=severity,  # type: ignore[arg-type]
            message=message[:2000],
            attrs={str(k)[:64]: str(v)[:128] for k, v in list((attrs or {}).items())[:32]},
        ))

    def take(self, now: float) -> Metrics:
        """Close the pending interval: the metrics message for [t0, now], then start a new interval."""
        self.seq += 1
        counters = self.counters
        for k, v in counters.items():
            self.totals[k] += v
        if self.events_dropped:
            counters["events_dropped"] = counters.get("events_dropped", 0) + self.events_dropped
            self.totals["events_dropped"] = self.totals.get("events_dropped", 0) + self.events_dropped
            self.events_dropped = 0
        msg = Metrics(
            boot=self.boot, seq=self.seq, t0=self.t0, t1=now, health=self.health, detail=self.detail,
            counters=counters, totals=dict(self.totals), gauges=dict(self.gauges),
            hist={k: h.to_wire() for k, h in self.hists.items() if h.count},
            interval_s=self.interval_s,
        )
        self.counters = dict.fromkeys(self.counters, 0)
        for k, h in self.hists.items():
            if h.count:
                self.hists[k] = ExpHistogram(max_buckets=REPORTER_MAX_BUCKETS)
        self.t0 = now
        return msg

    def status(self, state: Literal["online", "offline"], now: float, reason: str = "",
               version: str = "", depends_on: tuple[str, ...] = ()) -> Status:
        return Status(state=state, boot=self.boot, version=version, interval_s=self.interval_s,
                      ts=now, reason=reason, depends_on=list(depends_on))


class Reporter:
    """A platform service's connection to the ops bus (see the module docstring for the API)."""

    def __init__(
        self,
        service: str,
        instance: str | None = None,
        *,
        mqtt_url: str | None = None,
        topic_root: str | None = None,
        interval_s: float | None = None,
        version: str = "",
        depends_on: list[str] | tuple[str, ...] = (),
        boot: str | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        keepalive_s: int = 5,
        clock: Callable[[], float] = time.time,
        nats: bool | None = None,
    ) -> None:
        if nats is None:
            nats = os.environ.get("OPSDASH_MQTT__NATS", "").strip().lower() in ("1", "true", "yes")
        mqtt = MqttConfig(
            url=mqtt_url or os.environ.get("OPSDASH_MQTT_URL", "mqtt://127.0.0.1:1883"),
            topic_root=topic_root or os.environ.get("OPSDASH_TOPIC_ROOT", "$ops"),
            keepalive_s=keepalive_s, nats=nats,
        )
        # On NATS a '.' in a topic level disconnects the client: names are published with '_' there.
        self.service = mqtt.topic_name(check_name("service", service))
        self.instance = mqtt.topic_name(
            check_name("instance", instance or f"{os.uname().nodename.lower()}-{os.getpid()}"))
        #: the brokers of mqtt_url in turn (failover to the next node of a cluster)
        self.brokers = Brokers(mqtt.endpoints())
        self.nats = mqtt.nats
        self.root = mqtt.topic_root
        interval = interval_s or float(os.environ.get("OPSDASH_INTERVAL_S", "1"))
        if not 0.05 <= interval <= 3600:
            raise ValueError(f"interval_s must be in [0.05, 3600], got {interval!r}")
        if backoff_max_s < backoff_initial_s or backoff_initial_s <= 0:
            raise ValueError(f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff_initial_s!r}, "
                             f"{backoff_max_s!r}")
        self.version = version
        if len(depends_on) > MAX_DEPENDS_ON:
            raise ValueError(f"depends_on takes at most {MAX_DEPENDS_ON} names, got {len(depends_on)}")
        #: what this service needs (the dashboard's dependency graph); sent in every status
        self.depends_on = tuple(dict.fromkeys(check_name("depends_on entry", d) for d in depends_on))
        self.keepalive_s = keepalive_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.core = ReporterCore(boot or new_boot_id(), interval, clock())
        self.connected = asyncio.Event()
        self.sent_metrics = 0
        self.connects = 0
        self._unsent: Metrics | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        t = topics
        self._t_status = t.status(self.root, self.service, self.instance)
        self._t_metrics = t.metrics(self.root, self.service, self.instance)
        self._t_events = t.events(self.root, self.service, self.instance)
        # Hot-path shortcuts: bound methods of the pure core, no extra call layer.
        self.inc = self.core.inc
        self.set_gauge = self.core.set_gauge
        self.observe = self.core.observe
        self.set_health = self.core.set_health

    @classmethod
    def from_config(cls, service: str, instance: str | None, mqtt: MqttConfig, cfg: ReporterConfig, *,
                    version: str = "", depends_on: list[str] | tuple[str, ...] = (),
                    clock: Callable[[], float] = time.time) -> Reporter:
        """A reporter on the bus of ``mqtt`` with the intervals and backoff of ``cfg`` (no environment
        lookups: everything comes from the configuration)."""
        return cls(service, instance, mqtt_url=mqtt.url, topic_root=mqtt.topic_root,
                   interval_s=cfg.interval_s, version=version, depends_on=depends_on,
                   backoff_initial_s=cfg.backoff_initial_s, backoff_max_s=cfg.backoff_max_s,
                   keepalive_s=mqtt.keepalive_s, clock=clock, nats=mqtt.nats)

    @property
    def boot(self) -> str:
        return self.core.boot

    @property
    def interval_s(self) -> float:
        return self.core.interval_s

    def event(self, kind: str, message: str = "", severity: str = "error",
              attrs: dict[str, str] | None = None, ts: float | None = None) -> None:
        """Record a notable event; it is published at once (or after a reconnect).

        ``ts`` is when it happened (default now); the log handler passes the record's own time.
        """
        self.core.event(kind, message, self.clock() if ts is None else ts, severity, attrs)
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background loop; returns at once (connection happens in the background)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"reporter:{self.service}/{self.instance}")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Send the last interval and status offline/shutdown, then disconnect."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        task = self._task
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            await cancel_and_wait([task])
        self._task = None

    async def __aenter__(self) -> Reporter:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # -- the MQTT loop ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> MqttEndpoint:
        """The broker this reporter uses now (or tries next)."""
        return self.brokers.current

    def _client(self) -> aiomqtt.Client:
        ep = self.endpoint
        will = aiomqtt.Will(self._t_status,
                            encode(self.core.status("offline", self.clock(), "lost", self.version,
                                                    self.depends_on)),
                            qos=1, retain=True)
        return aiomqtt.Client(
            ep.host, ep.port, username=ep.username, password=ep.password,
            identifier=f"{self.service}.{self.instance}.{self.core.boot}"[:64],
            will=will, keepalive=self.keepalive_s, clean_session=True, timeout=10,
            tls_params=aiomqtt.TLSParameters() if ep.tls else None,
        )

    async def _run(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)

        async def session() -> None:
            async with self._client() as client:
                self.connects += 1
                backoff.reset()
                await client.publish(self._t_status, encode(self.core.status(
                    "online", self.clock(), "", self.version, self.depends_on)), qos=1, retain=True)
                self.connected.set()
                log.debug("%s/%s connected", self.service, self.instance)
                await self._connected_loop(client)

        hinted = False

        def lost(exc: Exception) -> None:
            nonlocal hinted
            self.connected.clear()
            # NATS drops a client whose topics (its Last Will's too) have a '.', before CONNACK: say
            # why instead of retrying quietly.
            dotted = "." in f"{self.service}{self.instance}"
            if not hinted and self.connects == 0 and dotted and not self.nats:
                hinted = True
                log.warning("%s/%s: no connection yet (%s). If the broker is NATS, names with '.' are "
                            "refused there: set OPSDASH_MQTT__NATS=true (Reporter(nats=True)) to publish "
                            "them with '_' (docs/scale.md)", self.service, self.instance, exc)

        if not self._stopping:
            await reconnect_forever(session, backoff, what=f"{self.service}/{self.instance}", logger=log,
                                    on_lost=lost, sleep=self._sleep_or_stop,
                                    stopping=lambda: self._stopping, brokers=self.brokers)

    async def _sleep_or_stop(self, delay: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _connected_loop(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        interval = self.core.interval_s
        next_at = loop.time() + interval
        if self._unsent is not None:  # may or may not have reached the broker: same seq again
            await client.publish(self._t_metrics, encode(self._unsent), qos=1)
            self._unsent = None
        while True:
            await self._flush_events(client)
            if self._stopping:
                await self._send_metrics(client)
                await client.publish(self._t_status, encode(self.core.status(
                    "offline", self.clock(), "shutdown", self.version,
                    self.depends_on)), qos=1, retain=True)
                return
            now = loop.time()
            if now >= next_at:
                await self._send_metrics(client)
                next_at += interval
                if next_at < now:  # fell far behind (stalled loop): skip, don't burst
                    next_at = now + interval
                continue
            self._wake.clear()
            if self.core.events or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), next_at - now)

    async def _send_metrics(self, client: aiomqtt.Client) -> None:
        msg = self.core.take(self.clock())
        self._unsent = msg
        await client.publish(self._t_metrics, encode(msg), qos=1)
        self._unsent = None
        self.sent_metrics += 1

    async def _flush_events(self, client: aiomqtt.Client) -> None:
        events = self.core.events
        while events:
            ev = events[0]
            await client.publish(self._t_events, encode(ev), qos=1)
            events.popleft()
