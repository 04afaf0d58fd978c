"""Live tail of events over the WebSocket (design.md section 11; frames in docs/websocket.md).

Pure: no sockets, time passed in. The gateway feeds it every event the bus carries
(``<root>/v1/svc/+/+/events``) and the aggregator's own feed entries (quarantined messages, state
changes: the entries of a view patch's ``errors`` without ``reporter_ts``), and sends the frames it
returns::

    hub = TailHub()
    hub.subscribe(client, decode_tail_filter(msg.get("filter")), now)    # {"type": "tail", ...}
    for client, frame in hub.offer_bus_event(service, instance, event, now):
        send(client, frame)

A client gets only events that match its filter (the same rules as ``GET /operator/system/events``:
``severity`` means that severity or worse, ``q`` all words, case and punctuation ignored). Each client
may receive at most ``rate_per_s`` events a second (bursts of ``burst``): an incident that logs
thousands of lines a second must not flood a browser. What is not sent is counted, and the next frame
says how many (``dropped``), so the page can say "N events not shown: search to see them all".
A QoS 1 duplicate of an event (same service, instance, boot and seq) is sent once.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import msgspec

from history.events import EventQueryError, at_least, matches_terms, search_terms, searched_words
from telemetry_bus.contract import METRIC_PATTERN, SEGMENT_PATTERN, Event

__all__ = ["TailFilter", "TailHub", "decode_tail_filter", "event_from_bus", "event_from_feed"]

_Segment = Annotated[str, msgspec.Meta(pattern=SEGMENT_PATTERN)]
_Kind = Annotated[str, msgspec.Meta(pattern=METRIC_PATTERN)]
_DEDUPE: Final = 8192

K = TypeVar("K")


class TailFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a client tails; every field optional (nothing = every event). Lists match any of their items."""

    service: Annotated[list[_Segment], msgspec.Meta(max_length=64)] | None = None
    instance: Annotated[list[_Segment], msgspec.Meta(max_length=256)] | None = None
    severity: Literal["debug", "info", "warning", "error", "critical"] | None = None
    type: Annotated[list[_Kind], msgspec.Meta(max_length=64)] | None = None
    q: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


def decode_tail_filter(raw: object) -> TailFilter:
    """A client's ``filter`` object; ValueError naming the bad field (the gateway's bad_request)."""
    if raw is None:
        return TailFilter()
    if isinstance(raw, dict):  # one name or a list of names, as the client likes
        raw = {k: [v] if k in ("service", "instance", "type") and isinstance(v, str) else v
               for k, v in raw.items()}
    try:
        f = msgspec.convert(raw, TailFilter)
    except msgspec.ValidationError as exc:
        raise ValueError(f"tail filter: {exc}") from None
    if f.q is not None:
        try:
            search_terms(f.q)
        except EventQueryError as exc:
            raise ValueError(f"tail filter: {exc.message}") from None
    return f


def _iso(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def event_from_bus(service: str, instance: str, ev: Event) -> dict[str, Any]:
    """A bus event in the API's event shape (``id`` null: the store assigns ids when it records it)."""
    ts = round(ev.ts, 6)
    return {"id": None, "ts": ts, "timestamp": _iso(ts), "service": service, "instance": instance,
            "type": ev.kind, "severity": ev.severity, "message": ev.message, "attrs": dict(ev.attrs)}


def event_from_feed(entry: dict[str, Any]) -> dict[str, Any] | None:
    """An aggregator-made feed entry (no ``reporter_ts``: not a service's event) in the event shape."""
    if "reporter_ts" in entry:
        return None
    try:
        ts = round(float(entry["ts"]), 6)
        attrs = {k: str(v) for k, v in (entry.get("attrs") or {}).items()}
        if "topic" in entry:
            attrs["topic"] = str(entry["topic"])
        return {"id": None, "ts": ts, "timestamp": _iso(ts), "service": str(entry["service"]),
                "instance": entry.get("instance") or None, "type": str(entry["type"]),
                "severity": str(entry.get("severity", "warning")), "message": str(entry.get("message", "")),
                "attrs": attrs}
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class _Sub:
    filter: TailFilter
    severities: frozenset[str] | None
    terms: list[tuple[str, ...]] | None
    tokens: float
    at: float
    dropped: int = 0
    sent: int = 0


class TailHub(Generic[K]):
    """The tail subscriptions of one gateway, keyed by client (see the module docstring)."""

    def __init__(self, rate_per_s: float = 50.0, burst: int = 200) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"need rate_per_s > 0 and burst >= 1, got {rate_per_s!r}, {burst!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.subs: dict[K, _Sub] = {}
        self._seen: OrderedDict[tuple[str, str, str, int], None] = OrderedDict()
        self.events_in = 0
        self.duplicates = 0
        self.dropped_total = 0

    def subscribe(self, key: K, f: TailFilter, now: float) -> None:
        """Start (or replace) the tail of ``key``."""
        self.subs[key] = _Sub(
            f, frozenset(at_least(f.severity)) if f.severity else None,
            search_terms(f.q) if f.q is not None else None, float(self.burst), now)

    def unsubscribe(self, key: K) -> bool:
        return self.subs.pop(key, None) is not None

    def __len__(self) -> int:
        return len(self.subs)

    def offer_bus_event(self, service: str, instance: str, ev: Event,
                        now: float) -> list[tuple[K, bytes]]:
        """A service's event from the bus: the frames to send (none for a duplicate)."""
        if ev.seq:
            key = (service, instance, ev.boot, ev.seq)
            if key in self._seen:
                self.duplicates += 1
                return []
            self._seen[key] = None
            if len(self._seen) > _DEDUPE:
                self._seen.popitem(last=False)
        return self.offer(event_from_bus(service, instance, ev), now)

    def offer(self, event: dict[str, Any], now: float) -> list[tuple[K, bytes]]:
        """One event (API shape): a frame for every subscriber it matches and may still be sent to."""
        self.events_in += 1
        if not self.subs:
            return []
        out: list[tuple[K, bytes]] = []
        words: list[str] | None = None
        encoded: bytes | None = None
        for key, sub in self.subs.items():
            f = sub.filter
            if f.service is not None and event["service"] not in f.service:
                continue
            if f.instance is not None and event["instance"] not in f.instance:
                continue
            if sub.severities is not None and event["severity"] not in sub.severities:
                continue
            if f.type is not None and event["type"] not in f.type:
                continue
            if sub.terms is not None:
                if words is None:
                    words = searched_words(event["service"], event["instance"] or "", event["type"],
                                           event["message"], event["attrs"])
                if not matches_terms(sub.terms, words):
                    continue
            sub.tokens = min(float(self.burst), sub.tokens + (now - sub.at) * self.rate_per_s)
            sub.at = now
            if sub.tokens < 1:
                sub.dropped += 1
                self.dropped_total += 1
                continue
            sub.tokens -= 1
            if encoded is None:
                encoded = msgspec.json.encode(event)
            out.append((key, b'{"type":"events","dropped":%d,"events":[%s]}' % (sub.dropped, encoded)))
            sub.sent += 1
            sub.dropped = 0
        return out

    def flush_drops(self, now: float) -> list[tuple[K, bytes]]:
        """Frames that report drops not reported yet (after a flood stops); call it now and then."""
        out: list[tuple[K, bytes]] = []
        for key, sub in self.subs.items():
            if sub.dropped:
                out.append((key, b'{"type":"events","dropped":%d,"events":[]}' % sub.dropped))
                sub.dropped = 0
        return out
