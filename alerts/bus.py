"""Alerts on the bus: topics, and the aggregator's side (the ``alerts`` view section and its memory).

Topics (``<root>`` = ``$ops`` by default; all QoS 1):

- ``<root>/v1/alerts/<fingerprint>`` (retained): design.md section 9, the alert while pending or
  firing; on resolve the resolved payload (not retained), then an empty retained message clears it.
- ``<root>/v1/alertstate/ack/<fingerprint>`` (retained): an acknowledgement (gateway -> aggregator).
- ``<root>/v1/alertstate/silence/<id>`` (retained): a silence (gateway -> aggregator).
- ``<root>/v1/alertstate/notified/<fingerprint>`` (retained): what the notifier has sent for the alert.
- ``<root>/v1/alertstate/recent`` (retained): resolved alerts of the last 24 h.
- ``<root>/v1/alertstate/disk`` (retained): the forecast's six hours of disk samples.
- ``<root>/v1/alertstate/sync/<client>``: a part's own echo, proof that retained state has arrived.

Retained messages are the memory: an aggregator that restarts takes its pending and firing alerts
(with their ``starts_at``), acks, silences, recent list and disk samples back from the broker before it
evaluates anything, so a restart neither re-pages nor forgets an ack. ``alertstate`` is a sibling of
``alerts`` so that ``mosquitto_sub -t '$ops/v1/alerts/#'`` shows exactly what is firing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgspec

from alerts.engine import AlertChange, Engine, Rule, Silence

__all__ = ["AlertsSection", "Outgoing", "alert_topics"]

log = logging.getLogger("opsdash.alerts")

SYNC_TIMEOUT_S: Final = 5.0
_json = msgspec.json.Encoder()


class _JsonDecoder:
    """msgspec's JSON decoder, but deep nesting (msgspec raises RecursionError for ~1,000 nested
    arrays) is a DecodeError like any other bad payload, so it is dropped, not fatal (issue 17)."""

    def __init__(self) -> None:
        self._inner = msgspec.json.Decoder()

    def decode(self, data: bytes) -> Any:
        try:
            return self._inner.decode(data)
        except RecursionError:
            raise msgspec.DecodeError("JSON nested too deeply") from None


json_decoder: Final = _JsonDecoder()
_decode = json_decoder


class alert_topics:
    """Topic names of the alerts tree under a root."""

    @staticmethod
    def alert(root: str, fp: str = "+") -> str:
        return f"{root}/v1/alerts/{fp}"

    @staticmethod
    def state(root: str, *parts: str) -> str:
        return "/".join((f"{root}/v1/alertstate", *parts))


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool


class _Ctx(Protocol):
    """What the view builder hands a section (telemetry_bus.view.SectionContext)."""

    now: float
    full: bool
    view: dict[str, Any]
    state: Any


@dataclass(slots=True)
class AlertsSection:
    """The ``alerts`` view section of the aggregator, and its bus memory.

    ``feed(topic, payload, now)`` takes the retained alerts/alertstate messages; ``ready`` is set by the
    adapter when its sync echo came back (every retained message has arrived); ``__call__(ctx)`` is the
    view builder's section (evaluates on regular ticks); ``drain()`` gives what to publish."""

    engine: Engine
    root: str
    #: this part's own sync topic segment (``alertstate/sync/<sync_id>``)
    sync_id: str = "aggregator"
    ready: bool = False
    outbox: list[Outgoing] = field(default_factory=list)
    _last: dict[str, Any] = field(default_factory=lambda: {"firing": [], "pending": []})
    _disk_saved_len: int = 0
    _disk_saved_at: float = -math.inf
    evaluations: int = 0
    eval_ms_max: float = 0.0

    @classmethod
    def create(cls, rules: Mapping[str, Rule], root: str, recent_max: int = 200,
               sync_id: str = "aggregator") -> AlertsSection:
        owned = [n for n in rules if n != "view_stale"]  # the notifier sees the aggregator's silence
        return cls(Engine(rules, owned=owned, recent_max=recent_max), root, sync_id)

    def subscriptions(self) -> list[str]:
        return [alert_topics.alert(self.root, "+"), alert_topics.state(self.root, "ack", "+"),
                alert_topics.state(self.root, "silence", "+"), alert_topics.state(self.root, "recent"),
                alert_topics.state(self.root, "disk"), self.sync_topic]

    @property
    def sync_topic(self) -> str:
        return alert_topics.state(self.root, "sync", self.sync_id)

    def handles(self, topic: str) -> bool:
        return topic.startswith((f"{self.root}/v1/alerts/", f"{self.root}/v1/alertstate/"))

    def feed(self, topic: str, payload: bytes, now: float) -> None:
        """Retained memory in; never raises on bad input (logged and dropped)."""
        rest = topic.removeprefix(f"{self.root}/v1/")
        try:
            body = _decode.decode(payload) if payload else None
        except msgspec.DecodeError:
            log.warning("alerts: undecodable message on %s dropped", topic)
            return
        parts = rest.split("/")
        match parts:
            case ["alerts", _fp]:
                # Only retained state before we are ready; later messages on it are our own echoes.
                if not self.ready and isinstance(body, dict):
                    self.engine.restore(body, now)
            case ["alertstate", "ack", fp]:
                if body is None:
                    self.engine.unack(fp)
                elif isinstance(body, dict) and isinstance(body.get("by"), str):
                    starts = body.get("starts_at")
                    self.engine.ack(fp, body["by"], float(body.get("at") or now),
                                    float(starts) if isinstance(starts, (int, float)) else None)
            case ["alertstate", "silence", sid]:
                if body is None:
                    self.engine.remove_silence(sid)
                elif isinstance(body, dict):
                    try:
                        self.engine.add_silence(Silence(
                            id=sid, matchers={str(k): str(v) for k, v in body["matchers"].items()},
                            starts_at=float(body["starts_at"]), ends_at=float(body["ends_at"]),
                            comment=str(body.get("comment") or ""),
                            created_by=str(body.get("created_by") or "")))
                    except (KeyError, TypeError, ValueError, AttributeError):
                        log.warning("alerts: bad silence on %s dropped", topic)
            case ["alertstate", "sync", who] if who == self.sync_id:
                if not self.ready:
                    log.info("alerts: memory restored from the bus (%d active, %d acks, %d silences)",
                             len(self.engine.states), len(self.engine.acks), len(self.engine.silences))
                self.ready = True
            case ["alertstate", "recent"]:
                if not self.ready and isinstance(body, list):
                    self.engine.restore_recent(body)
            case ["alertstate", "disk"]:
                if not self.ready and isinstance(body, list):
                    self.engine.seed_disk((float(t), float(v)) for t, v in body
                                          if isinstance(t, (int, float)) and isinstance(v, (int, float)))
            case _:
                pass

    def __call__(self, ctx: _Ctx) -> dict[str, Any]:
        # Every tick, early ones too: the rules are timed (for_s, keep_firing_s), not counted, so an
        # early tick only makes a condition's start (and its firing) more exact.
        if not self.ready:
            return self._last
        state = ctx.state
        view: dict[str, Any] = dict(ctx.view)
        view["series"] = getattr(state, "series", {})
        inputs: dict[str, Any] = {}
        count = getattr(state, "category_count", None)
        if count is not None:
            from alerts.engine import ERROR_CATEGORIES
            inputs["errors_1m"] = {c: count(c, ctx.now, 60) for c in ERROR_CATEGORIES}
        self._last = self.evaluate(view, ctx.now, inputs)
        return self._last

    def evaluate(self, view: Mapping[str, Any], now: float, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import time

        t0 = time.perf_counter()
        ev = self.engine.evaluate(view, now, inputs)
        self.evaluations += 1
        self.eval_ms_max = max(self.eval_ms_max, (time.perf_counter() - t0) * 1000)
        for ch in ev.changes:
            self.outbox.extend(changes_out(self.root, ch))
        for fp in ev.cleared_acks:
            self.outbox.append(Outgoing(alert_topics.state(self.root, "ack", fp), b"", True))
        for sid in ev.cleared_silences:
            self.outbox.append(Outgoing(alert_topics.state(self.root, "silence", sid), b"", True))
        if ev.recent_changed:
            self.outbox.append(Outgoing(alert_topics.state(self.root, "recent"),
                                        _json.encode(list(self.engine.recent)), True))
        self.compact()
        disk = self.engine.disk
        if len(disk) != self._disk_saved_len and now - self._disk_saved_at >= 60:
            self._disk_saved_len, self._disk_saved_at = len(disk), now
            self.outbox.append(Outgoing(alert_topics.state(self.root, "disk"),
                                        _json.encode([[round(t, 1), v] for t, v in disk]), True))
        return ev.section

    def compact(self, limit: int = 5000) -> None:
        """While the broker is away: keep the last retained message per topic, and every non-retained
        one (resolved payloads), in order, so memory stays bounded by the number of alerts."""
        if len(self.outbox) <= limit:
            return
        last = {o.topic: i for i, o in enumerate(self.outbox) if o.retain}
        self.outbox = [o for i, o in enumerate(self.outbox) if not o.retain or last[o.topic] == i]

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline() if self.ready else None

    def drain(self) -> list[Outgoing]:
        out, self.outbox = self.outbox, []
        return out


def changes_out(root: str, ch: AlertChange) -> list[Outgoing]:
    """The bus messages of one change (design.md section 9: resolved payload, then clear)."""
    topic = alert_topics.alert(root, ch.fingerprint)
    match ch.kind:
        case "update":
            return [Outgoing(topic, _json.encode(ch.payload), True)]
        case "resolved":
            return [Outgoing(topic, _json.encode(ch.payload), False), Outgoing(topic, b"", True)]
        case _:
            return [Outgoing(topic, b"", True)]
