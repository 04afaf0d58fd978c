"""The notifier: one notification on firing and one on resolve per alert, at least once, to webhooks
(Alertmanager's webhook payload) and to Alertmanager itself (``/api/v2/alerts``).

    opsdash notifier          # alone (docker-compose); ``opsdash up`` and ``demo`` run it in-process

How it knows what it already sent (so a restart of any opsdash part never pages twice): after a
receiver accepted a notification, the notifier publishes a retained **notified marker**
``<root>/v1/alertstate/notified/<fingerprint>``::

    {"fingerprint": "...", "starts_at": T, "alert": {<the alert's payload>}, "ends_at": null,
     "fired": {"<receiver id>": t}, "resolved": {"<receiver id>": t}, "failed": {"<receiver id>": "..."}}

At start (and after every reconnect) it subscribes to the alerts and the markers, waits for its own
echo on ``<root>/v1/alertstate/sync/<id>`` (every retained message has then arrived), and reconciles:

- a firing alert whose marker lacks a receiver: send the firing to that receiver;
- a marker whose alert is gone (resolved while the notifier was away, so it missed the resolved
  message): send the resolve, with the time it learned of it as ``endsAt``;
- the marker is cleared once every receiver that got the firing got the resolve.

A crash between a receiver's 2xx and the marker's publish re-sends that one notification (at least
once, never at most once). Inhibited (``inhibited_by``) and silenced (``silenced_until`` in the future)
alerts are not sent; when that ends and the alert still fires, it is sent then. A resolve goes to
every receiver that got the firing, even if the alert was silenced meanwhile (the incident closes).

Each receiver has its own queue and task: a receiver that is down is retried with jittered,
doubling backoff (``retry_min_s`` .. ``retry_max_s``) without delaying the others; one that answers
4xx is reported (logged, counted, put in the marker) and not retried. Alertmanager receivers get every
firing alert again every ``alertmanager_resend_s`` (``endsAt`` = now + 4 periods, as Prometheus does).

``view_stale`` is evaluated here: the aggregator cannot see its own silence, the notifier can (no
``<root>/v1/view/patch`` for 10 s). The notifier publishes that alert on the bus like the aggregator
publishes the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from alerts.bus import Outgoing, alert_topics, changes_out, json_decoder
from alerts.engine import Engine, compile_rules
from alerts.payloads import alertmanager_alert, webhook_message
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever

if TYPE_CHECKING:
    import aiomqtt
    import httpx

    from alerts.config import AlertsConfig
    from opsdash.config import Config
    from telemetry_bus.reporter import Reporter

__all__ = ["Job", "Ledger", "Mark", "Notifier", "Receiver"]

log = logging.getLogger("opsdash.notifier")

Phase = Literal["firing", "resolved"]
_enc = msgspec.json.Encoder()
_dec = json_decoder  # deep nesting is a DecodeError too (issue 17)
RECEIVER_NAME: Final = "opsdash"


@dataclass(frozen=True, slots=True)
class Receiver:
    kind: Literal["webhook", "alertmanager"]
    url: str

    @property
    def id(self) -> str:
        return f"{self.kind[:2]}-" + hashlib.sha256(self.url.encode()).hexdigest()[:10]

    @property
    def post_url(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts" if self.kind == "alertmanager" else self.url


def receivers_of(cfg: AlertsConfig) -> list[Receiver]:
    return ([Receiver("webhook", u) for u in cfg.webhook_urls]
            + [Receiver("alertmanager", u) for u in cfg.alertmanager_urls])


@dataclass(slots=True)
class Mark:
    fingerprint: str
    starts_at: float
    alert: dict[str, Any]
    ends_at: float | None = None
    fired: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "starts_at": self.starts_at, "alert": self.alert,
                "ends_at": self.ends_at, "fired": self.fired, "resolved": self.resolved,
                "failed": self.failed}

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> Mark:
        return Mark(fingerprint=str(body["fingerprint"]), starts_at=float(body["starts_at"]),
                    alert=dict(body["alert"]), ends_at=body.get("ends_at"),
                    fired={str(k): float(v) for k, v in (body.get("fired") or {}).items()},
                    resolved={str(k): float(v) for k, v in (body.get("resolved") or {}).items()},
                    failed={str(k): str(v) for k, v in (body.get("failed") or {}).items()})


@dataclass(frozen=True, slots=True)
class Job:
    rid: str
    phase: Phase
    fp: str
    payload: dict[str, Any]
    created: float = 0.0


def notifiable(payload: Mapping[str, Any], now: float) -> bool:
    """Firing, not inhibited, not silenced."""
    if payload.get("status") != "firing" or payload.get("inhibited_by"):
        return False
    until = payload.get("silenced_until")
    return not (isinstance(until, (int, float)) and until > now)


class Ledger:
    """The pure bookkeeping of the notifier: alerts seen, markers, and the jobs they call for.

    Every method returns the jobs to start; ``dirty`` collects the fingerprints whose marker must be
    (re)published (a ``None`` marker = clear it)."""

    def __init__(self, receivers: Iterable[Receiver]) -> None:
        self.receivers = {r.id: r for r in receivers}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.marks: dict[str, Mark] = {}
        self.queued: set[tuple[str, str, Phase]] = set()
        self.dirty: set[str] = set()
        self.ready = False
        #: markers are read from the broker once; after that this ledger is their authority
        self.loaded = False

    # -- input --------------------------------------------------------------------------------

    def load_mark(self, fp: str, body: Mapping[str, Any] | None) -> None:
        """A retained marker (before ready); later ones are our own echoes."""
        if self.ready or self.loaded:
            return
        if body is None:
            self.marks.pop(fp, None)
            return
        try:
            self.marks[fp] = Mark.from_json(body)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("notifier: bad marker for %s ignored", fp)

    def alert(self, fp: str, payload: Mapping[str, Any] | None, now: float) -> list[Job]:
        if payload is None:  # retained message cleared: gone (resolved or a pending one dropped)
            self.alerts.pop(fp, None)
            return self._resolve_jobs(fp, now) if self.ready else []
        status = payload.get("status")
        if status == "resolved":
            self.alerts.pop(fp, None)
            mark = self.marks.get(fp)
            if mark is not None and _same(mark.starts_at, payload.get("starts_at")):
                mark.ends_at = float(payload.get("ends_at") or now)
                mark.alert = dict(payload)
            return self._resolve_jobs(fp, now) if self.ready else []
        self.alerts[fp] = dict(payload)
        return self._firing_jobs(fp, now) if self.ready else []

    def reconcile(self, now: float) -> list[Job]:
        """After the sync echo: what was missed while away."""
        self.ready = self.loaded = True
        jobs: list[Job] = []
        for fp in list(self.marks):
            a = self.alerts.get(fp)
            if a is None or not _same(self.marks[fp].starts_at, a.get("starts_at")):
                jobs += self._resolve_jobs(fp, now)
        for fp in list(self.alerts):
            jobs += self._firing_jobs(fp, now)
        return jobs

    def recheck(self, now: float) -> list[Job]:
        """Silences end by time alone: look again at the alerts held back."""
        return [j for fp in list(self.alerts) for j in self._firing_jobs(fp, now)] if self.ready else []

    def done(self, job: Job, now: float, error: str | None = None) -> list[Job]:
        """A receiver accepted (error None) or refused for good (4xx: error) a job."""
        self.queued.discard((job.rid, job.fp, job.phase))
        mark = self.marks.get(job.fp)
        if mark is None or not _same(mark.starts_at, job.payload.get("starts_at")):
            return []
        if error is not None:
            mark.failed[job.rid] = error
        elif job.phase == "firing":
            mark.fired.setdefault(job.rid, now)
        else:
            mark.resolved[job.rid] = now
        self.dirty.add(job.fp)
        jobs = self._resolve_jobs(job.fp, now) if mark.ends_at is not None else []
        self._maybe_forget(job.fp)
        return jobs

    # -- decisions ------------------------------------------------------------------------------

    def _firing_jobs(self, fp: str, now: float) -> list[Job]:
        a = self.alerts.get(fp)
        if a is None or not notifiable(a, now) or not self.receivers:
            return []
        jobs: list[Job] = []
        mark = self.marks.get(fp)
        if mark is not None and not _same(mark.starts_at, a.get("starts_at")):
            # an older occurrence whose resolve we never saw: close it first
            jobs += self._resolve_jobs(fp, now, force=True)
            mark = self.marks.get(fp)
        if mark is None:
            mark = self.marks[fp] = Mark(fingerprint=fp, starts_at=float(a["starts_at"]), alert=dict(a))
        mark.alert = dict(a)
        for rid in self.receivers:
            key: tuple[str, str, Phase] = (rid, fp, "firing")
            if rid in mark.fired or rid in mark.failed or key in self.queued:
                continue
            self.queued.add(key)
            jobs.append(Job(rid, "firing", fp, dict(a), now))
        return jobs

    def _resolve_jobs(self, fp: str, now: float, force: bool = False) -> list[Job]:
        mark = self.marks.get(fp)
        if mark is None:
            return []
        if mark.ends_at is None:
            mark.ends_at = now
        payload = dict(mark.alert)
        payload.update(status="resolved", ends_at=mark.ends_at)
        jobs = []
        for rid in mark.fired:
            key: tuple[str, str, Phase] = (rid, fp, "resolved")
            if rid in mark.resolved or rid in mark.failed or key in self.queued or rid not in self.receivers:
                continue
            self.queued.add(key)
            jobs.append(Job(rid, "resolved", fp, payload, now))
        if force and not jobs:
            self.marks.pop(fp, None)
            self.dirty.add(fp)
        else:
            self._maybe_forget(fp)
        return jobs

    def _maybe_forget(self, fp: str) -> None:
        mark = self.marks.get(fp)
        if mark is None or mark.ends_at is None:
            return
        if any(k[1] == fp for k in self.queued):
            return
        if all(rid in mark.resolved or rid in mark.failed or rid not in self.receivers for rid in mark.fired):
            del self.marks[fp]
            self.dirty.add(fp)

    def firing_for(self, rid: str) -> list[dict[str, Any]]:
        """Alerts this (Alertmanager) receiver has and that still fire: what a re-send carries."""
        return [self.alerts[fp] for fp, m in self.marks.items()
                if rid in m.fired and m.ends_at is None and fp in self.alerts]

    def take_dirty(self) -> list[tuple[str, dict[str, Any] | None]]:
        out = [(fp, self.marks[fp].to_json() if fp in self.marks else None) for fp in sorted(self.dirty)]
        self.dirty.clear()
        return out


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 1e-3


class PermanentError(Exception):
    """A receiver refused the notification (4xx): reported, not retried."""


@dataclass(slots=True)
class ReceiverStats:
    sent: int = 0
    retries: int = 0
    refused: int = 0
    last_error: str | None = None
    down_since: float | None = None


class Notifier:
    """The I/O around :class:`Ledger`; ``run()`` until cancelled."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time,
                 client_id: str | None = None) -> None:
        self.config = config
        self.acfg = config.alerts
        self.root = config.mqtt.topic_root
        #: the brokers of mqtt.url in turn (failover to the next node of a cluster)
        self.brokers = Brokers(config.mqtt.endpoints())
        self.clock = clock
        self.receivers = receivers_of(self.acfg)
        self.ledger = Ledger(self.receivers)
        self.queues: dict[str, asyncio.Queue[Job]] = {r.id: asyncio.Queue() for r in self.receivers}
        self.stats = {r.id: ReceiverStats() for r in self.receivers}
        self.id = client_id or f"{socket.gethostname()}-{random.getrandbits(24):06x}"
        self.external_url = self.acfg.external_url or _default_external(config)
        rules = compile_rules(self.acfg)
        self.stale = Engine(rules, owned=["view_stale"])
        self.started_at = clock()
        self.last_view_at: float | None = None
        self.connected = asyncio.Event()
        self.synced = asyncio.Event()
        self.reporter: Reporter | None = None
        self._client: aiomqtt.Client | None = None
        self._outbox: list[Outgoing] = []
        self._outbox_lock = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None
        #: (receiver id, phase, fingerprint, time sent) of every accepted notification (tests, bench)
        self.log: list[tuple[str, str, str, float]] = []

    # -- mqtt -------------------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        if topic.endswith("/view/patch") or topic.endswith("/view/snapshot"):
            self.last_view_at = now
            return
        try:
            body = _dec.decode(payload) if payload else None
        except msgspec.DecodeError:
            log.warning("notifier: undecodable message on %s dropped", topic)
            return
        rest = topic.removeprefix(f"{self.root}/v1/").split("/")
        match rest:
            case ["alerts", fp]:
                if body is None or isinstance(body, dict):
                    if isinstance(body, dict) and body.get("labels", {}).get("alertname") == "view_stale" \
                            and not self.synced.is_set():
                        self.stale.restore(body, now)
                    self._start(self.ledger.alert(fp, body, now))
            case ["alertstate", "notified", fp]:
                self.ledger.load_mark(fp, body if isinstance(body, dict) else None)
            case ["alertstate", "sync", who] if who == self.id:
                self.ledger.ready = False
                self._start(self.ledger.reconcile(now))
                self.synced.set()
                self._flush_marks()
            case _:
                pass

    async def _connection_loop(self) -> None:
        import aiomqtt

        backoff = Backoff(0.2, 5.0)

        async def session() -> None:
            ep = self.brokers.current
            async with aiomqtt.Client(
                    ep.host, ep.port, username=ep.username, password=ep.password,
                    identifier=f"opsdash-notifier-{self.id}"[:64], keepalive=self.config.mqtt.keepalive_s,
                    timeout=10, tls_params=aiomqtt.TLSParameters() if ep.tls else None) as client:
                self.ledger.alerts.clear()  # retained state comes again; clears we missed show then
                self.ledger.ready = False
                self.synced.clear()
                for t in (alert_topics.alert(self.root, "+"),
                          alert_topics.state(self.root, "notified", "+"),
                          alert_topics.state(self.root, "sync", self.id)):
                    await client.subscribe(t, qos=1)
                await client.subscribe(f"{self.root}/v1/view/patch", qos=0)
                self._client = client
                self.connected.set()
                await client.publish(alert_topics.state(self.root, "sync", self.id), b"1", qos=1)
                backoff.reset()
                log.info("notifier %s subscribed on %s:%s (%d receivers)", self.id, ep.host, ep.port,
                         len(self.receivers))
                try:
                    async for msg in client.messages:
                        raw = msg.payload if isinstance(msg.payload, bytes) else b""
                        self._on_message(msg.topic.value, raw)
                        await self._send_outbox()
                finally:
                    # a clean stop writes the markers still waiting (else: sent again at start)
                    self._flush_marks()
                    try:
                        await asyncio.wait_for(self._send_outbox(), 2.0)
                    except Exception as exc:
                        log.warning("notifier: markers not written at stop (%r)", exc)

        def lost(_exc: Exception) -> None:
            self._client = None
            self.connected.clear()

        await reconnect_forever(session, backoff, what="notifier", logger=log, on_lost=lost,
                                brokers=self.brokers)

    def _flush_marks(self) -> None:
        if not self.ledger.ready:
            return
        for fp, body in self.ledger.take_dirty():
            self._outbox.append(Outgoing(alert_topics.state(self.root, "notified", fp),
                                         _enc.encode(body) if body is not None else b"", True))

    async def _send_outbox(self) -> None:
        """Publish what waits, in order; an item leaves the outbox only once the broker has it (a
        cancelled publish leaves it for the next try: markers must not get lost at a stop)."""
        async with self._outbox_lock:
            while self._outbox:
                client = self._client
                if client is None:
                    return
                o = self._outbox[0]
                await client.publish(o.topic, o.payload, qos=1, retain=o.retain)
                self._outbox.pop(0)

    async def _outbox_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._flush_marks()
            if self.connected.is_set():
                with contextlib.suppress(Exception):
                    await self._send_outbox()

    # -- receivers ------------------------------------------------------------------------------------

    def _start(self, jobs: Iterable[Job]) -> None:
        for j in jobs:
            self.queues[j.rid].put_nowait(j)

    async def _post(self, r: Receiver, body: Any) -> None:
        import httpx

        assert self._http is not None
        try:
            resp = await self._http.post(r.post_url, content=_enc.encode(body),
                                         headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= resp.status_code < 300:
            return
        text = resp.text[:200].strip()
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise PermanentError(f"HTTP {resp.status_code}: {text}")
        raise ConnectionError(f"HTTP {resp.status_code}: {text}")

    def _body(self, r: Receiver, jobs: list[Job], now: float) -> Any:
        if r.kind == "webhook":
            return webhook_message([j.payload for j in jobs], RECEIVER_NAME, self.external_url)
        return [alertmanager_alert(j.payload, now, self.acfg.alertmanager_resend_s, self.external_url)
                for j in jobs]

    async def _worker(self, r: Receiver) -> None:
        q = self.queues[r.id]
        st = self.stats[r.id]
        while True:
            jobs = [await q.get()]
            if r.kind == "alertmanager":  # Alertmanager takes a list: one POST for what is waiting
                while not q.empty():
                    jobs.append(q.get_nowait())
            delay = self.acfg.retry_min_s
            while True:
                now = self.clock()
                try:
                    await self._post(r, self._body(r, jobs, now))
                except PermanentError as exc:
                    st.refused += len(jobs)
                    st.last_error = str(exc)
                    log.error("notifier: %s %s refused %d notification(s) (%s); not retried",
                              r.kind, r.url, len(jobs), exc)
                    for j in jobs:
                        self._start(self.ledger.done(j, self.clock(), error=str(exc)))
                    break
                except ConnectionError as exc:
                    st.retries += 1
                    st.last_error = str(exc)
                    if st.down_since is None:
                        st.down_since = now
                        log.warning("notifier: %s %s failed (%s); retrying with backoff", r.kind, r.url, exc)
                    await asyncio.sleep(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, self.acfg.retry_max_s)
                    continue
                done_at = self.clock()
                if st.down_since is not None:
                    log.info("notifier: %s %s is back after %.1f s", r.kind, r.url, done_at - st.down_since)
                    st.down_since = None
                st.sent += len(jobs)
                st.last_error = None
                for j in jobs:
                    self.log.append((r.id, j.phase, j.fp, done_at))
                    log.info("notifier: sent %s of %s (%s) to %s", j.phase, j.fp,
                             j.payload.get("labels", {}).get("alertname"), r.url)
                    self._start(self.ledger.done(j, done_at))
                self._flush_marks()
                if self.connected.is_set():  # the marker now: the shorter the gap, the rarer a resend
                    try:
                        await self._send_outbox()
                    except Exception as exc:
                        log.warning("notifier: marker not written yet (%r)", exc)
                break

    async def _resend_loop(self) -> None:
        """Alertmanager forgets an alert at its endsAt: re-send what fires; recheck silences."""
        period = self.acfg.alertmanager_resend_s
        last = self.clock()
        while True:
            await asyncio.sleep(1.0)
            now = self.clock()
            self._start(self.ledger.recheck(now))
            if now - last < period:
                continue
            last = now
            for r in self.receivers:
                if r.kind != "alertmanager":
                    continue
                alerts = self.ledger.firing_for(r.id)
                if alerts and self.queues[r.id].empty():
                    with contextlib.suppress(ConnectionError, PermanentError):
                        await self._post(r, [alertmanager_alert(a, now, period, self.external_url)
                                             for a in alerts])

    async def _stale_loop(self) -> None:
        """view_stale: no view patch for the rule's threshold (10 s)."""
        while True:
            await asyncio.sleep(0.5)
            if not self.synced.is_set():
                continue
            now = self.clock()
            age = now - (self.last_view_at if self.last_view_at is not None else self.started_at)
            ev = self.stale.evaluate({}, now, {"view_age_s": round(age, 1)})
            for ch in ev.changes:
                self._outbox.extend(changes_out(self.root, ch))

    async def _report_loop(self) -> None:
        rep = self.reporter
        if rep is None:
            return
        reported = {"sent": 0, "retries": 0, "refused": 0}
        while True:
            await asyncio.sleep(self.config.reporter.interval_s)
            for k, before in list(reported.items()):
                total = sum(getattr(s, k) for s in self.stats.values())
                rep.inc(f"notifications_{k}", total - before)
                reported[k] = total
            rep.set_gauge("notifications_queued", sum(q.qsize() for q in self.queues.values()))
            down = [r.url for r, s in zip(self.receivers, self.stats.values(), strict=True)
                    if s.down_since is not None]
            rep.set_gauge("receivers_down", len(down))
            if down:
                rep.set_health("degraded", f"receiver(s) not answering: {', '.join(down)[:200]}")
            else:
                rep.set_health("ok")

    async def run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=self.acfg.timeout_s) as http:
            self._http = http
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connection_loop(), name="notifier:mqtt")
                tg.create_task(self._outbox_loop(), name="notifier:outbox")
                tg.create_task(self._stale_loop(), name="notifier:view_stale")
                tg.create_task(self._resend_loop(), name="notifier:resend")
                tg.create_task(self._report_loop(), name="notifier:report")
                for r in self.receivers:
                    tg.create_task(self._worker(r), name=f"notifier:{r.id}")

    def figures(self) -> dict[str, Any]:
        return {r.url: {"kind": r.kind, "sent": s.sent, "retries": s.retries, "refused": s.refused,
                        "last_error": s.last_error, "queued": self.queues[r.id].qsize()}
                for r, s in zip(self.receivers, self.stats.values(), strict=True)}


def _default_external(config: Config) -> str:
    from gateway.config import parse_listen

    host, port = parse_listen(config.gateway.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
