"""``opsdash recorder``: a separate consumer of the bus that writes history (design.md section 8).

It subscribes, with a persistent MQTT session (the broker keeps its QoS 1 messages while it
restarts), to:

- ``<root>/v1/view/second``: the aggregator's per-second record (history/second.py): the view's
  series, every service's counter rates and gauges, capacity figures, the merged write-latency
  histogram, component states and the aggregator's own feed entries;
- ``<root>/v1/svc/+/+/events``: every event as sent;
- ``<root>/v1/probe/+``: every probe result;
- ``<root>/v1/alerts/#``: every alert message.

Nothing here can slow the live path: the aggregator and the gateway never wait for the recorder (the
broker queues for each subscriber on its own), and the recorder itself only appends to a bounded
in-order buffer when a message arrives. One writer task drains the buffer in batches; while the
database is slow or away the buffer grows, and beyond ``recorder.buffer`` messages the oldest are
dropped and counted (``drops``), never blocking anything. When the database returns the backlog is
written in order.

Self-report (service ``opsdash-recorder``): gauges ``lag_s`` (age of the oldest unwritten message),
``buffer``, ``db_up``, ``db_size_mb``; counters ``rows_written``, ``drops``, ``received``,
``rejected``; histogram ``write_ms``; health ``degraded`` while the database is away or it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Final

import aiomqtt
import asyncpg
import msgspec

from history.second import topic as second_topic
from history.store import Item, Writer
from history.viewstream import stream_row
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.contract import decode_event, decode_json_value, decode_probe
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever

if TYPE_CHECKING:
    from opsdash.config import Config
    from telemetry_bus.reporter import Reporter

__all__ = ["HISTORY_OFF", "RecorderService"]

log = logging.getLogger("opsdash.recorder")

HISTORY_OFF: Final = ("history is off: OPSDASH_HISTORY_URL (history.url) is not set, so nothing is "
                      "recorded and the history endpoints answer 404")
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
                     ConnectionError)
_decode_json = decode_json_value  # deep nesting is a DecodeError too (issue 17)


class _Head(msgspec.Struct):
    ts: float


_decode_ts = msgspec.json.Decoder(_Head).decode


class RecorderService:
    """Buffer what arrives, write it in batches; ``run()`` until cancelled."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.root = config.mqtt.topic_root
        #: the brokers of mqtt.url in turn (failover to the next node of a cluster)
        self.brokers = Brokers(config.mqtt.endpoints())
        self.rcfg = config.recorder
        h = config.history
        self.writer = Writer(h.url, h.retention_days, h.raw_hours, h.pool_size)
        self.clock = clock
        self.buffer: deque[tuple[int, float, Item]] = deque()  # (number, arrival, item)
        self._next = 0
        self.received = 0
        self.rejected = 0
        self.drops = 0
        self.db_up = False
        self.db_error = "not connected yet"
        self.db_size: int | None = None
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self.reporter: Reporter | None = None
        self._reported = {"rows_written": 0, "drops": 0, "received": 0, "rejected": 0}
        self.last_write_ms = 0.0

    # -- receiving (on the event loop, never awaits) ---------------------------------------------

    def offer(self, item: Item, now: float | None = None) -> None:
        self._next += 1
        self.buffer.append((self._next, self.clock() if now is None else now, item))
        self.received += 1
        if len(self.buffer) > self.rcfg.buffer:
            self.buffer.popleft()
            self.drops += 1
        self._wake.set()

    def on_message(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes) or not payload:
            return  # an empty retained message clears a topic: nothing to record
        topic = message.topic.value
        try:
            item = self._decode(topic, payload)
        except (msgspec.DecodeError, ValueError, TypeError, KeyError) as exc:
            self.rejected += 1
            log.debug("recorder: rejected a message on %s: %s", topic, exc)
            return
        if item is not None:
            self.offer(item)

    def _decode(self, topic: str, payload: bytes) -> Item | None:
        parts = topic.split("/")
        tail = parts[len(self.root.split("/")):]
        now = self.clock()
        match tail:
            case ["v1", "view", "second"]:
                head = _decode_ts(payload)  # the rest is decoded when written (history/store.py)
                return Item("second", head.ts, {}, raw=payload)
            case ["v1", "view", ("snapshot" | "patch") as kind]:  # the view stream (issue 19)
                row = stream_row(kind, payload)
                return Item("view", row[0].timestamp(), {"row": row})
            case ["v1", "svc", service, instance, "events"]:
                ev = decode_event(payload)
                d = msgspec.structs.asdict(ev)
                return Item("event", ev.ts or now, d, service, instance)
            case ["v1", "probe", target]:
                res = decode_probe(payload)
                return Item("probe", res.ts or now, msgspec.structs.asdict(res), target)
            case ["v1", "alerts", *rest] if rest:
                body = _decode_json(payload)
                if not isinstance(body, dict):
                    raise ValueError("alert is not a JSON object")
                status = str(body.get("status", ""))
                when = body.get("ends_at") if status == "resolved" else body.get("starts_at")
                ts = float(when) if isinstance(when, (int, float)) and math.isfinite(when) else now
                return Item("alert", ts, body, str(body.get("fingerprint") or "/".join(rest)))
        return None

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._mqtt_loop(), name="recorder:mqtt"),
                 asyncio.create_task(self._write_loop(), name="recorder:write"),
                 asyncio.create_task(self._maintenance_loop(), name="recorder:maintenance"),
                 asyncio.create_task(self._report_loop(), name="recorder:report")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            await asyncio.shield(cancel_and_wait(tasks))
            await self.writer.close()

    def _client(self) -> aiomqtt.Client:
        from telemetry_bus.service import _folding_queue

        ep = self.brokers.current
        return aiomqtt.Client(
            ep.host, ep.port, username=ep.username, password=ep.password,
            queue_type=_folding_queue(self.on_message),
            identifier=f"opsdash-recorder-{self.rcfg.id}", clean_session=False,
            keepalive=self.config.mqtt.keepalive_s, timeout=10,
            tls_params=aiomqtt.TLSParameters() if ep.tls else None)

    async def _mqtt_loop(self) -> None:
        backoff = Backoff(0.2, 5.0)

        async def session() -> None:
            async with self._client() as client:
                r = self.root
                subs = (second_topic(r), f"{r}/v1/svc/+/+/events", f"{r}/v1/probe/+", f"{r}/v1/alerts/#",
                        f"{r}/v1/view/snapshot", f"{r}/v1/view/patch")
                for t in subs:
                    await client.subscribe(t, qos=1)
                self.connected.set()
                backoff.reset()
                log.info("recorder subscribed under %s on %s", r, self.brokers)
                async for _ in client.messages:  # folded in on_message (see _folding_queue)
                    pass

        await reconnect_forever(session, backoff, what="recorder", logger=log,
                                on_lost=lambda _exc: self.connected.clear(), brokers=self.brokers)

    async def _connect_db(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self.writer.open()
                self.db_up, self.db_error = True, ""
                log.info("recorder: history database ready (%d series known)", len(self.writer.series))
                return
            except _DB_ERRORS as exc:
                self._down(exc)
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 5.0)

    def _down(self, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}"[:300]
        if self.db_up or why != self.db_error:
            log.warning("recorder: history database unavailable (%s); buffering (%d held)", why,
                        len(self.buffer))
        self.db_up, self.db_error = False, why

    def _failed(self, exc: Exception) -> None:
        """A write or rollup failed: the database is away (or a connection broke mid-operation, e.g.
        asyncpg's InternalClientError); anything else is a bug, logged with its traceback. Either way
        the buffer is kept and the loop tries again: a failure never ends the recording."""
        if not isinstance(exc, (*_DB_ERRORS, asyncpg.InternalClientError)):
            log.exception("recorder: unexpected error while writing; buffering and trying again",
                          exc_info=exc)
        self._down(exc)

    async def _write_loop(self) -> None:
        await self._connect_db()
        backoff = 0.2
        while True:
            if not self.buffer:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 5.0)
                if not self.buffer:
                    try:  # idle: rollups and packing (the database may go away meanwhile)
                        await self._roll(force=False)
                    except Exception as exc:  # whatever it was: keep recording
                        self._failed(exc)
                        await asyncio.sleep(random.uniform(backoff / 2, backoff))
                        backoff = min(backoff * 2, 5.0)
                    continue
            batch = list(islice(self.buffer, self.rcfg.batch))
            started = time.perf_counter()
            try:
                await self.writer.write([it for _, _, it in batch])
                await self._roll(force=False)
            except Exception as exc:  # the batch stays buffered; tried again
                self._failed(exc)
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.db_up:
                log.info("recorder: history database back; writing the backlog (%d held)", len(self.buffer))
            self.db_up, self.db_error, backoff = True, "", 0.2
            self.last_write_ms = (time.perf_counter() - started) * 1000
            last = batch[-1][0]
            # overflow may have dropped some of this batch from the front meanwhile: pop by number
            while self.buffer and self.buffer[0][0] <= last:
                self.buffer.popleft()
            if self.reporter is not None:
                self.reporter.observe("write_ms", self.last_write_ms)

    async def _roll(self, force: bool) -> None:
        await self.writer.rollup(force=force)
        try:
            await self.writer.compact_views()
        except _DB_ERRORS:
            raise
        except Exception:  # packing is an optimisation: a bug there must not stop the recording
            log.exception("recorder: packing the view stream failed; the rows stay unpacked")

    async def _maintenance_loop(self) -> None:
        while True:
            if self.db_up:
                try:
                    await self.writer.maintain()
                    self.db_size = await self.writer.db_size()
                except _DB_ERRORS as exc:
                    log.warning("recorder: maintenance failed (%s); retrying later", exc)
            await asyncio.sleep(self.rcfg.maintenance_s if self.db_up else 2.0)

    @property
    def lag_s(self) -> float:
        return max(0.0, self.clock() - self.buffer[0][1]) if self.buffer else 0.0

    async def _report_loop(self) -> None:
        last_size = -math.inf
        while True:
            await asyncio.sleep(self.config.reporter.interval_s)
            rep = self.reporter
            if rep is None:
                continue
            if self.db_up and time.monotonic() - last_size > 30:
                last_size = time.monotonic()
                with contextlib.suppress(*_DB_ERRORS):
                    self.db_size = await self.writer.db_size()
            self.report(rep)

    def report(self, rep: Reporter) -> None:
        now = {"rows_written": self.writer.rows_written, "drops": self.drops, "received": self.received,
               "rejected": self.rejected}
        for name, value in now.items():
            rep.inc(name, max(0, value - self._reported[name]))
            self._reported[name] = value
        rep.set_gauge("lag_s", round(self.lag_s, 3))
        rep.set_gauge("buffer", len(self.buffer))
        rep.set_gauge("db_up", 1.0 if self.db_up else 0.0)
        if self.db_size is not None:
            rep.set_gauge("db_size_mb", round(self.db_size / 2**20, 1))
        if not self.db_up:
            rep.set_health("degraded", f"history database unavailable ({self.db_error}); "
                                       f"buffering {len(self.buffer)} messages, {self.drops} dropped")
        elif len(self.buffer) >= self.rcfg.buffer:
            rep.set_health("degraded", f"buffer full ({self.rcfg.buffer}): dropping the oldest")
        else:
            rep.set_health("ok")
