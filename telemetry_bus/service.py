"""The aggregator process: the thin MQTT adapter around the pure :class:`~telemetry_bus.fold.Fold`.

It subscribes ``<root>/v1/svc/#`` and ``<root>/v1/probe/#`` (QoS 1) with a persistent session
(MQTT 3.1.1 ``clean_session=False`` and a fixed client id), so the broker queues what arrives while the
aggregator restarts (deploy/mosquitto.conf raises ``max_queued_messages`` for that). Every tick it
publishes the view's merge patch on ``<root>/v1/view/patch`` (QoS 0) and, at start, after each
reconnect and every ``snapshot_every_s``, the whole view retained on ``<root>/v1/view/snapshot``.

The fold keeps its state across broker outages; the clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import aiomqtt
import msgspec

from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import AggregatorConfig, MqttConfig
from telemetry_bus.contract import ViewPatch, ViewSnapshot, decode_patch, decode_snapshot, encode, topics
from telemetry_bus.fold import Fold, TickOutput
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever
from telemetry_bus.shards import (
    ShardMerger,
    ShardSection,
    ShardStatus,
    parse_shard,
    shard_config,
    shard_of,
    shard_topics,
)
from telemetry_bus.view import SectionBuilder

if TYPE_CHECKING:
    from alerts.bus import AlertsSection
    from telemetry_bus.reporter import Reporter

__all__ = ["AggregatorService"]

log = logging.getLogger("opsdash.aggregator")
T = TypeVar("T")

#: A call to the broker (a subscribe, a QoS 1 publish) gives up after this long with nothing from the
#: broker at all. While messages keep arriving it waits on: a session the broker kept
#: (clean_session=False) gets every message queued while we were away before the SUBACK, and with a
#: large backlog a fixed 10 s timeout dropped the connection and started over behind the same backlog
#: (40,000 queued messages took 181 s, bench/bench_shards.py); a stuck node (NATS while a peer is down)
#: still fails over after this long.
STALL_S = 10.0


class AggregatorService:
    """Feeds the fold from the broker and publishes the view; ``run()`` until cancelled.

    Built by the command (``opsdash.wiring.build_aggregator``), which also adds the view sections of
    other parts (``graph``, ``alerts``) to ``fold.view``. ``alerts``: the alerts section, whose bus
    topics (retained alert state in, alert messages out) this service carries; ``history_url``: the
    history database, when history is on (series backfill at start, one record per second out).
    """

    def __init__(self, acfg: AggregatorConfig, mqtt: MqttConfig, clock: Callable[[], float] = time.time, *,
                 alerts: AlertsSection | None = None, history_url: str | None = None) -> None:
        self.acfg = acfg
        self.mqtt = mqtt
        self.root = mqtt.topic_root
        self.clock = clock
        #: the brokers of mqtt.url in turn (failover to the next node of a cluster)
        self.brokers = Brokers(mqtt.endpoints())
        #: aggregator shards (telemetry_bus/shards.py): this one folds the services hashing to shard/shards
        self.shard, self.shards = parse_shard(acfg.shard)
        self.fold = Fold(shard_config(acfg, self.shard, self.shards), self.root, clock())
        self.merger: ShardMerger | None = None
        self.leading = self.shards == 1
        self._svc_prefix = f"{self.root}/v1/svc/"
        self._shard_prefix = f"{self.root}/v1/shard/"
        #: services of this shard subscribed one by one (found by their retained status)
        self._subscribed: set[str] = set()
        self._owner_cache: dict[str, bool] = {}
        self._received = 0  # messages from the broker (progress while a call waits, see _patient)
        self._shard_seconds: dict[int, list[dict[str, Any]]] = {}
        self._own_seconds: dict[int, dict[str, Any]] = {}
        self._partial_snapshot_at = -math.inf
        if self.shards > 1:
            self.fold.view.add("shard", ShardSection(self.shard, self.shards))
            self.merger = ShardMerger(self.shard, self.shards, acfg)
        #: alerts (design.md section 9): the section's bus side; the wiring adds it to fold.view
        self.alerts = alerts
        #: the last view published (with shards: the merged view, on the leading shard)
        self.last: TickOutput | None = None
        self.connected = asyncio.Event()
        self.published_patches = 0
        self.published_snapshots = 0
        self._client: aiomqtt.Client | None = None
        self._last_snapshot_at = -math.inf
        self._need_snapshot = True
        self._news_at: float | None = None  # arrival of the first message since the last tick
        self._news = asyncio.Event()
        #: opsdash watches itself: set by the wiring (opsdash.wiring.run_aggregator), fed with the
        #: fold's own counters every tick.
        self.reporter: Reporter | None = None
        self._reported = {"messages_folded": 0, "quarantined": 0, "duplicates": 0, "missing_intervals": 0}
        #: history on: publish each second's record for the recorder (history/second.py)
        self.history_url = history_url
        self.history = history_url is not None
        self._feed_pending: list[dict[str, Any]] = []
        self._second_sent = 0
        self._second_tasks: set[asyncio.Task[None]] = set()
        self.seconds_dropped = 0  # records not sent because the broker stopped acknowledging

    def add_section(self, name: str, builder: SectionBuilder, *, after: str | None = None) -> None:
        """A view section of another part (``graph``, ``alerts``): on the fold's view, or with shards on
        the merged view (built by the leading shard)."""
        if self.merger is not None:
            self.merger.post.add(name, builder)
        else:
            self.fold.view.add(name, builder, after=after)

    async def _patient(self, call: Coroutine[Any, Any, T]) -> T:
        """Await a broker call while the broker keeps sending (see STALL_S); MqttError when it is silent."""
        task = asyncio.ensure_future(call)
        try:
            while True:
                seen = self._received
                done, _ = await asyncio.wait({task}, timeout=STALL_S)
                if done:
                    return task.result()
                if self._received == seen:
                    raise aiomqtt.MqttError(f"Operation timed out (no word from the broker in {STALL_S:g} s)")
        finally:
            if not task.done():
                task.cancel()

    async def _subscribe(self, client: aiomqtt.Client, topic: str) -> None:
        await self._patient(client.subscribe(topic, qos=1, timeout=math.inf))

    def _mine(self, service: str) -> bool:
        return shard_of(service, self.shards) == self.shard

    def _status(self, state: str, reason: str | None = None) -> ShardStatus:
        return ShardStatus(state=state, shard=self.acfg.shard,  # type: ignore[arg-type]
                           aggregator=self.acfg.id, ts=self.clock(), reason=reason)

    def _on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes):
            payload = str(payload).encode() if payload is not None else b""
        now = self.clock()
        self._received += 1
        if self.merger is not None and not self._sharded_message(message.topic.value, payload, now):
            return
        if self.alerts is not None and self.alerts.handles(message.topic.value):
            self.alerts.feed(message.topic.value, payload, now)
            return
        if self._news_at is None:
            self._news_at = now
            self._news.set()
        try:
            self.fold.feed(message.topic.value, payload, now, bool(message.retain))
        except Exception:  # a bug in the fold must not kill the connection: count it, keep going
            log.exception("aggregator: fold failed on a message from %s", message.topic.value)
            self.fold.quarantine(message.topic.value, "internal error while folding (see the log)",
                                 self.clock())

    def _sharded_message(self, topic: str, payload: bytes, now: float) -> bool:
        """With shards: take a shard's message, drop other shards' services; True = fold it."""
        assert self.merger is not None
        if topic.startswith(self._shard_prefix):
            where = shard_topics.parse(self.root, topic)
            if where is None or not payload:
                return False
            k, kind = where
            try:
                match kind:
                    case "status":
                        self.merger.on_status(k, msgspec.json.decode(payload, type=ShardStatus), now)
                    case "snapshot":
                        self.merger.on_snapshot(k, decode_snapshot(payload), now)
                    case "patch":
                        self.merger.on_patch(k, decode_patch(payload), now)
                    case "second":
                        if self.leading:
                            rec = msgspec.json.decode(payload)
                            self._shard_seconds.setdefault(int(rec["ts"]), []).append(rec)
            except Exception as exc:  # a bad shard message must not stop this one
                log.warning("aggregator: bad message on %s (%s: %s)", topic, type(exc).__name__, exc)
                return False
            if kind == "patch" and self.leading and self._news_at is None:
                self._news_at = now  # the merged view follows the other shards' ticks at once
                self._news.set()
            return False
        if topic.startswith(self._svc_prefix):
            name = topic[len(self._svc_prefix):].split("/", 1)[0]
            mine = self._owner_cache.get(name)
            if mine is None:
                if len(self._owner_cache) > 65536:
                    self._owner_cache.clear()
                mine = self._owner_cache[name] = self._mine(name)
            if not mine:
                return False
            if name not in self._subscribed and self._client is not None:
                self._subscribed.add(name)
                task = asyncio.create_task(self._subscribe_service(self._client, name))
                self._second_tasks.add(task)
                task.add_done_callback(self._second_tasks.discard)
        return True

    async def _subscribe_service(self, client: aiomqtt.Client, name: str) -> None:
        try:
            await self._subscribe(client, f"{self._svc_prefix}{name}/#")
            log.info("aggregator shard %s: folding service %s", self.acfg.shard, name)
        except aiomqtt.MqttError as exc:
            self._subscribed.discard(name)  # tried again with its next status message
            log.warning("aggregator: could not subscribe to service %s (%s)", name, exc)

    def _new_client(self) -> aiomqtt.Client:
        ep = self.brokers.current
        will = None
        if self.merger is not None:
            will = aiomqtt.Will(shard_topics.status(self.root, self.shard),
                                msgspec.json.encode(self._status("offline", "lost")), qos=1, retain=True)
        return aiomqtt.Client(
            ep.host, ep.port, username=ep.username, password=ep.password, will=will,
            queue_type=_folding_queue(self._on_message),
            identifier=f"opsdash-aggregator-{self.acfg.id}", clean_session=False,
            keepalive=self.mqtt.keepalive_s, timeout=10,
            tls_params=aiomqtt.TLSParameters() if ep.tls else None,
        )

    async def run(self) -> None:
        """Run until cancelled; a failure of either loop ends both."""
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(self._connection_loop(), name="aggregator:mqtt"),
            asyncio.create_task(self._tick_loop(), name="aggregator:tick"),
        ]
        if self.history:
            tasks.append(asyncio.create_task(self._backfill(), name="aggregator:backfill"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            await asyncio.shield(cancel_and_wait([*tasks, *self._second_tasks]))

    async def _backfill(self) -> None:
        """Restart without amnesia: the last series_len seconds of the view's series from history
        (history/backfill.py), beside the first ticks. A database that is away or slow (starting beside
        us in docker-compose, or busy) is tried again with backoff for as long as a backfill can still
        fill part of the series; then it only costs the backfill."""
        from history.backfill import series_from_history

        assert self.history_url is not None
        backoff = Backoff(1.0, 15.0)
        give_up = self.clock() + self.fold.series_len
        while True:
            try:
                points = await series_from_history(self.history_url, self.clock(), self.fold.series_len,
                                                   self.acfg.window_s)
                break
            except Exception as exc:
                delay = backoff.next_delay()
                if self.clock() + delay >= give_up:
                    log.warning("aggregator: no series backfill from history (%s: %s); gave up after %d "
                                "tries", type(exc).__name__, exc, backoff.failures)
                    return
                log.warning("aggregator: series backfill from history failed (%s: %s); trying again in "
                            "%.1f s", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
        for name, pts in points.items():
            self.fold.preload_series(name, pts)
        self._need_snapshot = True  # clients get the backfilled series with the next snapshot
        log.info("aggregator: series backfilled from history (%d points)", sum(map(len, points.values())))
        if self.alerts is not None:  # the disk forecast's six hours (alerts/history.py)
            from alerts.history import disk_samples_from_history

            try:
                samples = await disk_samples_from_history(self.history_url, self.clock())
            except Exception as exc:
                log.warning("aggregator: no disk samples from history (%s: %s)", type(exc).__name__, exc)
                return
            self.alerts.engine.seed_disk(samples)
            log.info("aggregator: %d disk samples from history for the forecast", len(samples))

    async def _connection_loop(self) -> None:
        backoff = Backoff(0.2, 5.0)

        async def session() -> None:
            async with self._new_client() as client:
                if self.merger is None:
                    await self._subscribe(client, f"{self.root}/v1/svc/#")
                    await self._subscribe(client, f"{self.root}/v1/probe/#")
                else:
                    # each shard receives only its services: found by their retained status, then
                    # subscribed one by one (receiving all and dropping most would not spread the work)
                    self._client = client
                    await self._subscribe(client, f"{self._shard_prefix}+/+")
                    hello = msgspec.json.encode(self._status("online"))
                    await self._patient(client.publish(shard_topics.status(self.root, self.shard), hello,
                                                       qos=1, retain=True, timeout=math.inf))
                    for name in sorted(self._subscribed | set(self.fold.cfg.expected_services)):
                        self._subscribed.add(name)
                        await self._subscribe(client, f"{self._svc_prefix}{name}/#")
                    await self._subscribe(client, f"{self._svc_prefix}+/+/status")
                    if self.shard == 0:
                        await self._subscribe(client, f"{self.root}/v1/probe/#")
                if self.alerts is not None:
                    for t in self.alerts.subscriptions():
                        await self._subscribe(client, t)
                    # the echo comes after the retained alert state: then alerts are evaluated
                    await self._patient(client.publish(self.alerts.sync_topic, b"1", qos=1, timeout=math.inf))
                self._client = client
                self._need_snapshot = True  # gateways may have missed patches while we were away
                self.connected.set()
                backoff.reset()
                log.info("aggregator %s subscribed on %s:%s under %s", self.acfg.id, *self._where(),
                         self.root)
                # Messages are folded as they arrive (see _folding_queue); this only waits for the
                # connection to end, which raises MqttError.
                try:
                    async for _ in client.messages:
                        pass
                except asyncio.CancelledError:
                    if self.merger is not None:  # a clean stop sends no Last Will: say it ourselves
                        bye = msgspec.json.encode(self._status("offline", "stopped"))
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(client.publish(shard_topics.status(self.root, self.shard),
                                                                  bye, qos=1, retain=True), 2)
                            # a clean DISCONNECT now, or the broker sends our Last Will ("lost") after it
                            await asyncio.wait_for(client.__aexit__(None, None, None), 2)
                    raise

        def lost(_exc: Exception) -> None:
            self._client = None
            self.connected.clear()

        await reconnect_forever(session, backoff, what="aggregator", logger=log, on_lost=lost,
                                brokers=self.brokers)

    def _where(self) -> tuple[str, int]:
        ep = self.brokers.current
        return ep.host, ep.port

    async def _tick_loop(self) -> None:
        tick, early = self.acfg.tick_s, self.acfg.early_tick_s
        last_tick, work = -math.inf, 0.0
        while True:
            # Regular ticks on whole multiples of tick_s of the clock (series points line up across
            # restarts); early ticks `early` after news, spaced by at least 4 x the last tick's work.
            now = self.clock()
            regular = (math.floor(now / tick) + 1) * tick + 0.005
            wake = regular
            if early > 0 and self._news_at is not None:
                wake = min(regular, max(self._news_at + early, last_tick + max(early, 4 * work)))
            if self.alerts is not None:  # a pending alert's for_s ends: tick then (alerts/bus.py)
                due = self.alerts.next_deadline()
                if due is not None:
                    wake = min(wake, max(due + 0.002, last_tick + max(early, 4 * work)))
            if early > 0 and self._news_at is None:
                self._news.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._news.wait(), max(0.0, wake - now))
                    continue  # news: recompute when to tick
            else:
                await asyncio.sleep(max(0.0, wake - now))
            full = self.clock() >= regular - 0.001
            self._news_at = None
            started = time.perf_counter()
            out = self.fold.tick(self.clock(), full=full)
            if self.merger is None:
                self.last = out
                await self._publish(out)
                if self.history:
                    await self._publish_second(out, full)
            else:
                await self._sharded_tick(out, full)
            work = time.perf_counter() - started
            last_tick = self.clock()
            if self.reporter is not None:
                self._report(self.reporter, work * 1000)

    async def _sharded_tick(self, out: TickOutput, full: bool) -> None:
        """Publish this shard's partial view; the leading shard also merges and publishes the view."""
        assert self.merger is not None
        client = self._client
        if client is not None:
            try:
                if out.base > 0:
                    patch = ViewPatch(seq=out.seq, base=out.base, ts=out.ts, patch=out.patch,
                                      append=out.append, errors=out.errors)
                    self._background(self._publish_qos1(client, shard_topics.patch(self.root, self.shard),
                                                        encode(patch), what="this shard's view"))
                if out.ts - self._partial_snapshot_at >= self.acfg.snapshot_every_s or out.base == 0:
                    snap = encode(ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view))
                    self._background(self._publish_qos1(client, shard_topics.snapshot(self.root, self.shard),
                                                        snap, retain=True, what="this shard's view"))
                    self._partial_snapshot_at = out.ts
            except aiomqtt.MqttError as exc:
                log.warning("aggregator: could not publish this shard's view (%s)", exc)
                self._partial_snapshot_at = -math.inf
        self.merger.own(out.view, out.seq, self._status("online"), out.ts, out.patch)
        leading = self.merger.leader() == self.shard
        if leading != self.leading:
            log.info("aggregator shard %s: %s", self.acfg.shard,
                     "now merges and publishes the view" if leading else "another shard publishes the view")
            self.leading = leading
            self._need_snapshot = True
        if leading:
            merged = self.merger.tick(out.ts, full)
            if merged.resync:
                self._need_snapshot = True
            self.last = merged
            await self._publish(merged)
            self._feed_pending.extend(merged.errors)
        if self.history:
            await self._shard_second(out, full)

    async def _shard_second(self, out: TickOutput, full: bool) -> None:
        """History with shards: every shard sends its seconds on its shard topic; the leading shard
        puts each second's records together (a second late, so the others' have arrived) and
        publishes the one record of that second."""
        from history.second import record_second, second_record, topic

        sec = record_second(out.ts)
        if not full or sec <= self._second_sent or self._client is None:
            return
        self._second_sent = sec
        view = self.last.view if self.leading and self.last is not None else out.view
        rec = second_record(self.fold, view, out.ts, [], sec)
        if rec is None:
            return
        if not self.leading:
            self._send(shard_topics.base(self.root, self.shard) + "/second", [encode(rec)])
            return
        self._own_seconds[sec] = rec
        payloads: list[bytes] = []
        for s in sorted(self._own_seconds):
            if s >= sec:
                break
            mine = self._own_seconds.pop(s)
            for other in self._shard_seconds.pop(s, []):
                mine["values"] = {**other.get("values", {}), **mine["values"]}
                mine["hists"] = {**other.get("hists", {}), **mine["hists"]}
            mine["feed"], self._feed_pending = self._feed_pending[-500:], []
            payloads.append(encode(mine))
        for s in [s for s in self._shard_seconds if s < sec - 30]:
            del self._shard_seconds[s]
        if payloads:
            self._send(topic(self.root), payloads)

    def _send(self, to: str, payloads: list[bytes]) -> None:
        client = self._client
        if client is None:
            return
        if len(self._second_tasks) >= 100:  # the broker does not acknowledge: never queue without bound
            self.seconds_dropped += len(payloads)
            return
        task = asyncio.create_task(self._send_seconds(client, to, payloads))
        self._second_tasks.add(task)
        task.add_done_callback(self._second_tasks.discard)

    def _report(self, rep: Reporter, tick_ms: float) -> None:
        fold = self.fold
        now = {"messages_folded": fold.folded, "quarantined": fold.quarantined,
               "duplicates": fold.duplicates,
               "missing_intervals": sum(i.missing_intervals for s in fold.services.values()
                                        for i in s.instances.values())}
        for name, value in now.items():
            rep.inc(name, max(0, value - self._reported[name]))
            self._reported[name] = value
        rep.set_gauge("instances_seen", sum(len(s.instances) for s in fold.services.values()))
        rep.observe("tick_ms", tick_ms)

    async def _publish_second(self, out: TickOutput, full: bool) -> None:
        """The recorder's input: one record per regular tick (feed entries of early ticks kept for it)."""
        from history.second import record_second, second_record, topic

        self._feed_pending.extend(out.errors)
        last = record_second(out.ts)
        if not full or last <= self._second_sent:
            return  # one record per second, however short the tick
        # a tick that came late (a busy machine) skipped seconds: record them too (the fold's rings
        # still hold them), so history has every second the aggregator watched
        first = max(last - 30, self._second_sent + 1) if self._second_sent else last
        client = self._client
        if client is None:
            return
        self._second_sent = last
        payloads: list[bytes] = []
        for sec in range(first, last + 1):
            feed = self._feed_pending[-500:] if sec == last else []
            record = second_record(self.fold, out.view, out.ts, feed, sec)
            if record is None:
                continue
            if sec == last:
                self._feed_pending = []
            payloads.append(encode(record))
        if not payloads:
            return
        if len(self._second_tasks) >= 100:  # the broker does not acknowledge: never queue without bound
            self.seconds_dropped += len(payloads)
            return
        # QoS 1 waits for the broker's PUBACK: in a task of its own, so the tick never waits for it
        # (paho keeps the order of publishes as they are called)
        task = asyncio.create_task(self._send_seconds(client, topic(self.root), payloads))
        self._second_tasks.add(task)
        task.add_done_callback(self._second_tasks.discard)

    async def _send_seconds(self, client: aiomqtt.Client, to: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            try:
                await client.publish(to, payload, qos=1)
            except aiomqtt.MqttError as exc:
                log.warning("aggregator: could not publish the history second (%s)", exc)
                return

    async def _publish(self, out: TickOutput) -> None:
        client = self._client
        if client is None:
            return
        try:
            # every tick has its patch; a snapshot is an extra resync point (a shard that just took
            # over the view sends its snapshot alone: its seq may collide with the previous leader's)
            if out.base > 0 and (self.merger is None or not self._need_snapshot):
                patch = ViewPatch(seq=out.seq, base=out.base, ts=out.ts, patch=out.patch, append=out.append,
                                  errors=out.errors)
                await client.publish(topics.patch(self.root), encode(patch), qos=0)
                self.published_patches += 1
            if self._need_snapshot or out.ts - self._last_snapshot_at >= self.acfg.snapshot_every_s:
                snap = ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view)
                self._last_snapshot_at = out.ts
                self._need_snapshot = False
                self.published_snapshots += 1
                # the PUBACK may wait behind a backlog of incoming messages: not in the tick's way
                # (the packet goes out at once and in order; a failure asks for the next snapshot)
                self._background(self._publish_qos1(client, topics.snapshot(self.root), encode(snap),
                                                    retain=True, what="the view"))
        except aiomqtt.MqttError as exc:
            log.warning("aggregator: could not publish the view (%s)", exc)
            self._need_snapshot = True
        await self._publish_alerts(client)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a publish beside the tick (tasks start in order, so their packets go out in order)."""
        task = asyncio.create_task(coro)
        self._second_tasks.add(task)
        task.add_done_callback(self._second_tasks.discard)

    async def _publish_qos1(self, client: aiomqtt.Client, topic: str, payload: bytes, *, what: str,
                            retain: bool = False) -> None:
        try:
            await self._patient(client.publish(topic, payload, qos=1, retain=retain, timeout=math.inf))
        except aiomqtt.MqttError as exc:
            log.warning("aggregator: could not publish %s (%s)", what, exc)
            self._need_snapshot = True
            self._partial_snapshot_at = -math.inf

    async def _publish_alerts(self, client: aiomqtt.Client) -> None:
        if self.alerts is None:
            return
        out = self.alerts.drain()
        for i, o in enumerate(out):
            try:
                await client.publish(o.topic, o.payload, qos=1, retain=o.retain)
            except aiomqtt.MqttError as exc:
                log.warning("aggregator: could not publish alerts (%s); kept for the next tick", exc)
                self.alerts.outbox[:0] = out[i:]
                return




def _folding_queue(feed: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """An aiomqtt ``queue_type`` that folds each message as aiomqtt hands it over.

    aiomqtt's message iterator costs a task and an ``asyncio.wait`` per message, more than the fold
    itself; folding in ``put_nowait`` (called from aiomqtt's on_message, on the event loop) removes
    that and keeps memory flat: nothing queues up behind a slow consumer. bench/bench_bus.py measures
    both ways.
    """

    class FoldingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            feed(item)

    return FoldingQueue
