"""The aggregator's pure core: fold ops messages into rolling windows, health and the view.

    fold = Fold(AggregatorConfig(), root="$ops", now=t)
    fold.feed(topic, payload, now)          # every message from <root>/v1/svc/# and <root>/v1/probe/#
    out = fold.tick(now)                    # every tick_s: the view, its patch, and the series points

No sockets and no clock of its own: every method takes ``now`` (the aggregator's arrival clock).

Rules kept here (design.md sections 2 and 3):

- ``(service, instance, boot, seq)`` makes a metrics message idempotent: a duplicate is counted in
  ``meta.duplicates`` and folded once.
- Within one boot, the increment of a counter is ``totals - previous totals`` (falling back to the
  delta where a sender sends no totals), so a lost message is repaired by the next one; the gap in
  ``seq`` is counted as missing intervals (data completeness). A late message whose counts were
  already repaired contributes only its histograms.
- A new ``boot`` is a restart: its first message counts its totals since boot (the restart's own
  counts), never a negative rate.
- Increments are spread over the time they cover, measured on the reporter's clock as a *duration*
  and placed on the arrival clock, so skew never moves data in time; skew is measured and shown.
- Anything that fails to decode, breaks a limit or has an unknown topic shape is quarantined: counted,
  put in the error feed (rate-limited) with topic and reason, dropped.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import (
    MAX_PAYLOAD_BYTES,
    Event,
    Metrics,
    ProbeResult,
    Status,
    Topic,
    TopicError,
    check_hist,
    check_series_name,
    decode_event,
    decode_metrics,
    decode_probe,
    decode_status,
    parse_topic,
)
from telemetry_bus.health import Hysteresis, State, worst
from telemetry_bus.histogram import ExpHistogram
from telemetry_bus.view_diff import canonical, diff
from telemetry_bus.windows import HistRing, Ring

__all__ = ["ERROR_CATEGORIES", "Fold", "TickOutput"]

#: Seconds a counter's second-bucket waits for late parts before rates read it (see ``_rate``).
RATE_LAG_S: Final = 2
FEED_LEN: Final = 50
TOPIC_CACHE: Final = 16384  # ~4 MiB; a real platform has a few thousand ops topics
HOUR: Final = 3600
#: Quarantine entries put in the feed per second at most (all are counted).
QUARANTINE_FEED_PER_S: Final = 5
ERROR_CATEGORIES: Final = ("ingest_failures", "delivery_failures", "auth_failures", "rate_limited",
                           "quarantined")
_KIND_CATEGORY: Final = {
    "parse_error": "ingest_failures", "ingest_failed": "ingest_failures", "write_failed": "ingest_failures",
    "webhook_timeout": "delivery_failures", "webhook_failed": "delivery_failures",
    "delivery_failed": "delivery_failures",
    "auth_failed": "auth_failures", "token_expired": "auth_failures",
    "rate_limited": "rate_limited",
    "quarantined": "quarantined",
}
_SEVERITY_IN_FEED: Final = frozenset({"warning", "error", "critical"})
#: Probe targets whose results feed the capacity and aggregates sections rather than the health grid.
CAPACITY_PROBES: Final = frozenset({"disk", "docker", "platform"})


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _r(value: float | None, digits: int = 3) -> float | None:
    """Round for display; None stays None; non-finite becomes None (the view is finite JSON)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


@dataclass(slots=True)
class Instance:
    service: str
    name: str
    first_seen: float
    boot: str = ""
    version: str = ""
    interval_s: float = 1.0
    online: bool = False
    offline_reason: str = ""
    status_at: float = 0.0
    last_seen: float | None = None  # arrival time of the last metrics message
    last_seq: int = 0
    last_t1: float = 0.0
    #: metrics of the current boot folded already (the next one is judged against them)
    synced: bool = False
    #: this boot was watched from its start (a live status or a restart we saw), so its first
    #: metrics message counts everything since boot and seq 1.. are expected
    from_start: bool = False
    last_totals: dict[str, int] = field(default_factory=dict)
    missing_seqs: set[int] = field(default_factory=set)
    event_seqs: deque[tuple[str, int]] = field(default_factory=lambda: deque(maxlen=256))
    health: str = "ok"
    detail: str = ""
    totals: dict[str, int] = field(default_factory=dict)  # folded since first seen
    gauges: dict[str, float] = field(default_factory=dict)
    series: set[str] = field(default_factory=set)
    missing_intervals: int = 0
    received_intervals: int = 0
    restarts: int = 0
    skew_s: float | None = None
    pair_rings: dict[str, Ring] = field(default_factory=dict)
    state: Hysteresis = field(default_factory=Hysteresis)


@dataclass(slots=True)
class Service:
    name: str
    instances: dict[str, Instance] = field(default_factory=dict)
    rings: dict[str, Ring] = field(default_factory=dict)
    hists: dict[str, HistRing] = field(default_factory=dict)
    state: Hysteresis = field(default_factory=Hysteresis)


@dataclass(slots=True)
class Probe:
    target: str
    result: ProbeResult
    received_at: float
    since: float
    state: Hysteresis = field(default_factory=Hysteresis)


@dataclass(slots=True)
class TickOutput:
    """What one tick produces: the canonical view (with series), and the patch from the previous tick."""

    seq: int
    ts: float
    view: dict[str, Any]
    patch: dict[str, Any]
    append: dict[str, list[float | None]]
    base: int
    #: feed entries added since the previous tick, newest first (they travel beside the patch)
    errors: list[dict[str, Any]] = field(default_factory=list)


class Fold:
    """The pure aggregator (see the module docstring)."""

    def __init__(self, config: AggregatorConfig, root: str = "$ops", now: float = 0.0) -> None:
        self.cfg = config
        self.root = root
        self.started_at = now
        self.services: dict[str, Service] = {}
        self.probes: dict[str, Probe] = {}
        self.feed_items: deque[dict[str, Any]] = deque(maxlen=FEED_LEN)
        self._feed_id = 0  # ids of feed entries: stable keys for clients, and what a tick sends
        self._feed_sent = 0
        self.category_rings = {c: Ring(HOUR + 1) for c in ERROR_CATEGORIES}
        self.folded = 0
        self.duplicates = 0
        self.quarantined = 0
        self.quarantine_reasons: dict[str, int] = {}
        self._q_feed_sec = 0
        self._q_feed_n = 0
        self.seq = 0
        self._topics: dict[str, Topic] = {}
        pairs = config.thresholds.error_pairs
        self._pair_names = frozenset(pairs) | frozenset(pairs.values())
        self._prev_view: dict[str, Any] = {}
        self.series_len = config.history_s
        self.series: dict[str, deque[list[float | None]]] = {}
        self._last_point_sec: int | None = None
        self._ring_size = config.window_s + RATE_LAG_S + 2
        for name in config.expected_services:
            self.services[name] = Service(name)

    # -- feeding ---------------------------------------------------------------------------------

    def feed(self, topic: str, payload: bytes, now: float, retained: bool = False) -> None:
        """Fold one message. Never raises on bad input: it is quarantined instead."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            self.quarantine(topic, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", now)
            return
        t = self._topics.get(topic)
        if t is None:
            try:
                t = parse_topic(topic, self.root)
            except TopicError as exc:
                self.quarantine(topic, str(exc), now)
                return
            if len(self._topics) >= TOPIC_CACHE:  # bounded under a flood of distinct topics
                self._topics.clear()
            self._topics[topic] = t
        try:
            match t.kind:
                case "metrics":
                    self._fold_metrics(t.service, t.instance, decode_metrics(payload), now, topic)
                case "status":
                    if payload:  # an empty retained message clears the retained status: nothing to fold
                        self._fold_status(t.service, t.instance, decode_status(payload), now, retained)
                case "events":
                    self._fold_event(t.service, t.instance, decode_event(payload), now, topic)
                case "probe":
                    if payload:
                        self._fold_probe(t.target, decode_probe(payload), now, retained, topic)
                case _:
                    pass  # view topics are ours; nothing to fold
        except msgspec.DecodeError as exc:
            self.quarantine(topic, _decode_reason(exc), now)
        except _Refused as exc:
            self.quarantine(topic, str(exc), now)

    def _to_feed(self, entry: dict[str, Any]) -> None:
        self._feed_id += 1
        entry["id"] = self._feed_id
        self.feed_items.appendleft(entry)

    def quarantine(self, topic: str, reason: str, now: float) -> None:
        self.quarantined += 1
        key = _reason_key(reason)
        if key in self.quarantine_reasons or len(self.quarantine_reasons) < 64:
            self.quarantine_reasons[key] = self.quarantine_reasons.get(key, 0) + 1
        self.category_rings["quarantined"].add(math.floor(now), 1)
        sec = math.floor(now)
        if sec != self._q_feed_sec:
            self._q_feed_sec, self._q_feed_n = sec, 0
        if self._q_feed_n < QUARANTINE_FEED_PER_S:
            self._q_feed_n += 1
            self._to_feed({
                "timestamp": iso(now), "ts": now, "service": "opsdash-aggregator", "instance": None,
                "type": "quarantined", "severity": "warning",
                "message": f"{reason} (topic {topic[:200]!r})", "topic": topic[:200],
            })

    def _service(self, name: str) -> Service:
        svc = self.services.get(name)
        if svc is None:
            if len(self.services) >= self.cfg.max_services:
                raise _Refused(f"too many services (max {self.cfg.max_services}); refusing {name!r}")
            svc = self.services[name] = Service(name)
        return svc

    def _instance(self, service: str, name: str, now: float) -> Instance:
        svc = self._service(service)
        inst = svc.instances.get(name)
        if inst is None:
            if len(svc.instances) >= self.cfg.max_instances_per_service:
                raise _Refused(f"too many instances of {service!r} (max "
                               f"{self.cfg.max_instances_per_service}); refusing {name!r}")
            inst = svc.instances[name] = Instance(service, name, first_seen=now)
        return inst

    def _fold_status(self, service: str, instance: str, st: Status, now: float, retained: bool) -> None:
        if retained and st.state == "offline" and st.ts and now - st.ts > self.cfg.forget_after_s:
            return  # a long-gone instance's retained goodbye: nothing to show
        inst = self._instance(service, instance, now)
        if st.boot != inst.boot and inst.boot and st.state == "offline":
            return  # the Last Will of an earlier boot, delivered late: the new boot is what counts
        inst.version = st.version
        inst.interval_s = st.interval_s
        inst.status_at = now
        if st.state == "online":
            inst.online = True
            inst.offline_reason = ""
            if st.boot != inst.boot:
                self._new_boot(inst, st.boot)
                # A live status opens the boot: what its metrics count since boot is new to us. A
                # retained one (we joined late) says nothing of what came before.
                inst.from_start = not retained
        else:
            inst.online = False
            inst.offline_reason = st.reason or "offline"

    def _new_boot(self, inst: Instance, boot: str) -> None:
        if inst.boot:
            inst.restarts += 1
        inst.boot = boot
        inst.last_seq = 0
        inst.last_t1 = 0.0
        inst.last_totals = {}
        inst.synced = False
        inst.from_start = False
        inst.missing_seqs.clear()

    def _fold_metrics(self, service: str, instance: str, m: Metrics, now: float, topic: str) -> None:
        svc_known = self.services.get(service)
        inst_known = svc_known.instances.get(instance) if svc_known is not None else None
        inst = inst_known if inst_known is not None else self._instance(service, instance, now)
        for name, h in m.hist.items():
            why = check_hist(name, h)
            if why:
                raise _Refused(why)
        series = inst.series
        if not (series.issuperset(m.counters) and series.issuperset(m.totals)
                and series.issuperset(m.gauges) and series.issuperset(m.hist)):
            new = (m.counters.keys() | m.totals.keys() | m.gauges.keys() | m.hist.keys()) - series
            for name in new:
                why = check_series_name(name)
                if why:
                    raise _Refused(why)
            if len(series) + len(new) > self.cfg.max_series_per_instance:
                raise _Refused(f"too many series for {service}/{instance} (max "
                               f"{self.cfg.max_series_per_instance})")
            series |= new
        if m.boot != inst.boot:
            watched = inst.last_seen is not None or inst.boot != ""  # a restart we saw happen
            self._new_boot(inst, m.boot)
            inst.from_start = watched
        elif inst.synced and m.seq <= inst.last_seq:
            if m.seq in inst.missing_seqs:  # late: counters were repaired from totals already
                inst.missing_seqs.discard(m.seq)
                inst.missing_intervals -= 1
                inst.received_intervals += 1
                self._fold_hists(self.services[service], m, now)
                return
            self.duplicates += 1
            return
        svc = self.services[service]
        if m.interval_s:
            inst.interval_s = m.interval_s
        # How much time this message covers, on the reporter's own clock (a duration: skew-free).
        if not inst.synced:
            missing = max(0, m.seq - 1) if inst.from_start else 0
            span = (m.t1 - m.t0) if m.t1 > m.t0 else inst.interval_s
            # From the start: totals since boot are all new. Joined late: only this interval's deltas.
            prev_totals: dict[str, int] | None = {} if inst.from_start else None
        else:
            missing = m.seq - inst.last_seq - 1
            span = (m.t1 - inst.last_t1) if m.t1 > inst.last_t1 else inst.interval_s
            prev_totals = inst.last_totals
        span = min(max(span, 0.0), float(self._ring_size))
        if missing > 0:
            inst.missing_intervals += missing
            if len(inst.missing_seqs) < 4096:
                inst.missing_seqs.update(range(inst.last_seq + 1, min(m.seq, inst.last_seq + 1 + 4096)))
        inst.received_intervals += 1
        counters = m.counters
        totals = m.totals
        itotals, rings, pairs = inst.totals, svc.rings, self._pair_names
        start = now - span
        for name, delta in counters.items():
            total = totals.get(name)
            if total is not None and prev_totals is not None:
                # totals repair a lost message exactly; never below the delta (never negative)
                inc = max(total - prev_totals.get(name, 0), delta)
            else:
                inc = delta
            if inc:
                itotals[name] = itotals.get(name, 0) + inc
                ring = rings.get(name)
                if ring is None:
                    ring = rings[name] = Ring(self._ring_size)
                ring.add_span(start, now, float(inc))
                if name in pairs:
                    pair = inst.pair_rings.get(name)
                    if pair is None:
                        pair = inst.pair_rings[name] = Ring(self._ring_size)
                    pair.add_span(start, now, float(inc))
            elif name not in itotals:
                itotals[name] = 0
        for name, total in (() if counters.keys() >= totals.keys() else totals.items()):
            # a counter sent only as a total (no delta this time)
            if name not in counters and prev_totals is not None:
                inc = total - prev_totals.get(name, 0)
                if inc > 0:
                    itotals[name] = itotals.get(name, 0) + inc
                    ring = rings.get(name)
                    if ring is None:
                        ring = rings[name] = Ring(self._ring_size)
                    ring.add_span(start, now, float(inc))
            itotals.setdefault(name, 0)
        last_totals = inst.last_totals
        if not totals.keys() >= counters.keys():
            for name, delta in counters.items():  # senders without totals: a running sum of deltas
                if name not in totals:
                    last_totals[name] = last_totals.get(name, 0) + delta
        last_totals.update(totals)
        inst.last_seq = m.seq
        inst.last_t1 = m.t1
        inst.synced = True
        inst.last_seen = now
        inst.online = True
        inst.offline_reason = ""
        inst.health, inst.detail = m.health, m.detail
        inst.gauges.update(m.gauges)
        if m.t1:
            skew = m.t1 - now
            inst.skew_s = skew if inst.skew_s is None else inst.skew_s + 0.2 * (skew - inst.skew_s)
        self._fold_hists(svc, m, now)
        self.folded += 1

    def _fold_hists(self, svc: Service, m: Metrics, now: float) -> None:
        sec = math.floor(now)
        for name, wire in m.hist.items():
            ring = svc.hists.get(name)
            if ring is None:
                ring = svc.hists[name] = HistRing(self._ring_size)
            ring.add_wire(sec, wire)

    def _fold_event(self, service: str, instance: str, ev: Event, now: float, topic: str) -> None:
        inst = self._instance(service, instance, now)
        if ev.seq:
            key = (ev.boot, ev.seq)
            if key in inst.event_seqs:
                self.duplicates += 1
                return
            inst.event_seqs.append(key)
        category = _KIND_CATEGORY.get(ev.kind)
        if category is None and service == "ingest" and ev.severity in ("error", "critical"):
            category = "ingest_failures"
        if category is not None:
            self.category_rings[category].add(math.floor(now), 1)
        if ev.severity in _SEVERITY_IN_FEED or category is not None:
            self._to_feed({
                "timestamp": iso(now), "ts": now, "service": service, "instance": instance,
                "type": ev.kind, "severity": ev.severity, "message": ev.message,
                "reporter_ts": ev.ts or None, "attrs": dict(ev.attrs) or None,
            })

    def _fold_probe(self, target: str, res: ProbeResult, now: float, retained: bool, topic: str) -> None:
        received = min(now, res.ts) if retained else now
        probe = self.probes.get(target)
        if probe is None:
            if len(self.probes) >= self.cfg.max_probes:
                raise _Refused(f"too many probe targets (max {self.cfg.max_probes}); refusing {target!r}")
            self.probes[target] = Probe(target, res, received, since=received)
        else:
            if res.status != probe.result.status:
                probe.since = received
            probe.result, probe.received_at = res, received

    # -- reading ---------------------------------------------------------------------------------

    def _rate(self, svc_name: str, counter: str, now: float, window: int) -> float | None:
        """Per-second rate over ``window`` complete seconds ending RATE_LAG_S seconds ago."""
        svc = self.services.get(svc_name)
        if svc is None or not svc.instances:
            return None
        ring = svc.rings.get(counter)
        last = math.floor(now) - RATE_LAG_S
        # Before a full window has passed since the service appeared, average over what exists.
        first_seen = min(i.first_seen for i in svc.instances.values())
        covered = min(window, max(1, last + 1 - math.floor(first_seen)))
        if ring is None:
            return 0.0 if any(counter in i.series for i in svc.instances.values()) else None
        return ring.sum(last - covered + 1, last) / covered

    def _quantiles(self, svc_name: str, hist: str, now: float) -> tuple[ExpHistogram | None, int]:
        svc = self.services.get(svc_name)
        if svc is None or hist not in svc.hists:
            return None, 0
        sec = math.floor(now)
        merged = svc.hists[hist].merged(sec - self.cfg.window_s + 1, sec)
        return merged, merged.count if merged else 0

    # -- health ----------------------------------------------------------------------------------

    def _instance_health(self, inst: Instance, now: float) -> tuple[State, str | None, bool]:
        """(raw state, reason, immediate) of one instance by design.md section 3."""
        interval = inst.interval_s
        if not inst.online and inst.offline_reason:
            why = {"lost": "lost (Last Will)", "shutdown": "shutdown"}.get(inst.offline_reason,
                                                                           inst.offline_reason)
            return "down", why, True
        last = inst.last_seen
        if last is None:
            waited = now - (inst.status_at or inst.first_seen)
            if waited > 3 * interval:
                came = iso(inst.status_at or inst.first_seen)
                return "down", f"no metrics since it came online at {came}", True
            return "unknown", "waiting for the first metrics", True
        age = now - last
        if age > 3 * interval:
            return "down", f"silent since {iso(last)}", True
        if inst.health == "down":
            return "down", f"reports down: {inst.detail}" if inst.detail else "reports down", False
        if inst.health == "degraded":
            why = f"reports degraded: {inst.detail}" if inst.detail else "reports degraded"
            return "degraded", why, False
        if age > 2 * interval:
            return "degraded", f"late: no metrics since {iso(last)}", False
        for gauge, limit in self.cfg.thresholds.gauges.items():
            value = inst.gauges.get(gauge)
            if value is not None and value > limit:
                return "degraded", f"{gauge} {value:g} > {limit:g}", False
        reason = self._error_ratio_reason(inst, now)
        if reason:
            return "degraded", reason, False
        return "healthy", None, False

    def _error_ratio_reason(self, inst: Instance, now: float) -> str | None:
        last = math.floor(now) - RATE_LAG_S
        first = last - self.cfg.window_s + 1
        for failed, ok in self.cfg.thresholds.error_pairs.items():
            fr, okr = inst.pair_rings.get(failed), inst.pair_rings.get(ok)
            f = fr.sum(first, last) if fr else 0.0
            o = okr.sum(first, last) if okr else 0.0
            if f + o >= 10 and f / (f + o) > self.cfg.thresholds.error_ratio:
                return f"{failed} ratio {f / (f + o):.0%} > {self.cfg.thresholds.error_ratio:.0%}"
        return None

    def _note_change(self, subject: str, service: str, old: State, new: State, reason: str | None,
                     now: float) -> None:
        if old == new or (old == "unknown" and new == "healthy"):
            return
        severity = "info" if new == "healthy" else "error" if new == "down" else "warning"
        self._to_feed({
            "timestamp": iso(now), "ts": now, "service": service, "instance": subject,
            "type": "state_change", "severity": severity,
            "message": f"{subject}: {old} -> {new}" + (f" ({reason})" if reason else ""),
        })

    def _evaluate(self, now: float, full: bool = True) -> None:
        """Apply the health rules. ``full=False`` (an early tick between regular ones) applies only
        the immediate transitions (Last Will, silence, first sight): hysteresis counts regular
        evaluations, so a flapping subject needs the same *time* to flip however often we tick."""
        hyst = self.cfg.hysteresis
        for svc in self.services.values():
            forget = [n for n, i in svc.instances.items() if not i.online and i.offline_reason
                      and now - i.status_at > self.cfg.forget_after_s]
            for name in forget:
                del svc.instances[name]
            for inst in svc.instances.values():
                raw, reason, immediate = self._instance_health(inst, now)
                if not (full or immediate or inst.state.state == "unknown"):
                    continue
                old = inst.state.state
                if inst.state.update(raw, reason, now, hyst, immediate):
                    self._note_change(inst.name, svc.name, old, inst.state.state, inst.state.reason, now)
            state, reason = self._service_state(svc)
            old = svc.state.state
            # Instance states already passed their hysteresis: the service follows them at once.
            if svc.state.update(state, reason, now, 1, True):
                self._note_change(svc.name, svc.name, old, svc.state.state, reason, now)
        for probe in self.probes.values():
            state, reason = self._probe_state(probe, now)
            old = probe.state.state
            if probe.state.update(state, reason, now, 1, True) and probe.target not in CAPACITY_PROBES:
                self._note_change(probe.target, probe.target, old, state, reason, now)

    def _service_state(self, svc: Service) -> tuple[State, str | None]:
        insts = list(svc.instances.values())
        if not insts:
            return "unknown", "no instance seen"
        # An instance stopped cleanly left on purpose: it does not degrade its service while others run.
        counted = [i for i in insts if not (i.state.state == "down" and i.offline_reason == "shutdown")]
        if not counted:
            return "down", "all instances stopped"
        states = [i.state.state for i in counted]
        if all(s == "healthy" for s in states):
            return "healthy", None
        if all(s == "unknown" for s in states):
            return "unknown", "waiting for the first metrics"
        if not any(s in ("healthy", "degraded") for s in states) and any(s == "down" for s in states):
            bad = [i for i in counted if i.state.state == "down"]
            return "down", "; ".join(f"{i.name}: {i.state.reason}" for i in bad[:3])
        bad = [i for i in counted if i.state.state != "healthy"]
        return "degraded", "; ".join(f"{i.name}: {i.state.state}"
                                     + (f" ({i.state.reason})" if i.state.reason else "") for i in bad[:3])

    def _probe_state(self, probe: Probe, now: float) -> tuple[State, str | None]:
        res = probe.result
        age = now - probe.received_at
        if age > 3 * res.period_s:
            return "unknown", f"stale: last result at {iso(probe.received_at)} (period {res.period_s:g} s)"
        return res.status, res.error or None

    # -- the view --------------------------------------------------------------------------------

    def tick(self, now: float, full: bool = True) -> TickOutput:
        """Evaluate health, build the view and its patch from the previous tick.

        ``full=False``: an early tick, published soon after news arrived (see service.py); health
        hysteresis advances only on full ticks."""
        self._evaluate(now, full)
        self.seq += 1
        view = self._build(now)
        # One series point per whole second, however short the tick.
        sec = math.floor(now)
        append = self._series_points(view, now) if sec != self._last_point_sec else {}
        self._last_point_sec = sec
        for name, point in append.items():
            points = self.series.setdefault(name, deque(maxlen=self.series_len))
            points.append(point)
        body = canonical(view)
        # The feed list is not diffed (a merge patch would resend it whole for each new entry):
        # its new entries travel in TickOutput.errors.
        diffed = dict(body)
        diffed["errors"] = {k: v for k, v in body["errors"].items() if k != "errors"}
        patch = diff(self._prev_view, diffed)
        self._prev_view = diffed
        new_errors = [e for e in self.feed_items if e["id"] > self._feed_sent]
        self._feed_sent = self._feed_id
        whole = dict(body)
        whole["series"] = {k: list(v) for k, v in self.series.items()}
        return TickOutput(seq=self.seq, ts=now, view=whole, patch=patch, append=append, base=self.seq - 1,
                          errors=new_errors)

    def _series_points(self, view: dict[str, Any], now: float) -> dict[str, list[float | None]]:
        sec = math.floor(now) - RATE_LAG_S
        ts = float(sec + 1)  # the point measures the second that ended at ts
        out: dict[str, list[float | None]] = {}
        for key, spec in (("ingest_rate", self.cfg.ingest_rate), ("alert_rate", self.cfg.alert_rate),
                          ("delivery_rate", self.cfg.delivery_rate)):
            svc, counter = spec.split(".")
            out[key] = [ts, _r(self._rate_1s(svc, counter, sec))]
        lat = view["metrics"]["latency"]
        for q in ("p50", "p95", "p99"):
            out[f"write_{q}"] = [float(math.floor(now)), lat.get(f"influx_write_{q}_ms")]
        return out

    def _rate_1s(self, svc_name: str, counter: str, sec: int) -> float | None:
        svc = self.services.get(svc_name)
        if svc is None or not svc.instances:
            return None
        ring = svc.rings.get(counter)
        return ring.get(sec) if ring else 0.0

    def _build(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        received = sum(i.received_intervals for s in self.services.values() for i in s.instances.values())
        missing = sum(i.missing_intervals for s in self.services.values() for i in s.instances.values())
        meta = {
            "seq": self.seq, "generated_at": _r(now), "aggregator": cfg.id, "tick_s": cfg.tick_s,
            "window_s": cfg.window_s, "series_len": self.series_len, "errors_len": FEED_LEN,
            "started_at": _r(self.started_at),
            "completeness": {"ratio": _r(received / (received + missing), 6) if received + missing else None,
                             "received_intervals": received, "missing_intervals": missing},
            "folded": self.folded, "duplicates": self.duplicates, "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.quarantine_reasons),
        }
        metrics = self._metrics_section(now)
        return {
            "meta": meta,
            "health": self._health_section(now, metrics),
            "metrics": metrics,
            "capacity": self._capacity_section(now),
            "aggregates": self._aggregates_section(now),
            "errors": self._errors_section(now),
            "services": self._services_section(),
            "probes": self._probes_section(now),
        }

    def _metrics_section(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        w = cfg.window_s

        def rate(spec: str) -> float | None:
            svc, counter = spec.split(".")
            return _r(self._rate(svc, counter, now, w))

        hsvc, hname = cfg.write_latency.split(".")
        merged, samples = self._quantiles(hsvc, hname, now)
        latency: dict[str, Any] = {
            "influx_write_p50_ms": _r(merged.quantile(0.5)) if merged else None,
            "influx_write_p95_ms": _r(merged.quantile(0.95)) if merged else None,
            "influx_write_p99_ms": _r(merged.quantile(0.99)) if merged else None,
            "relative_error": _r(merged.relative_error, 6) if merged else None,
            "samples": samples,
        }
        per_service: dict[str, dict[str, float | None]] = {}
        for svc in self.services.values():
            if svc.instances:
                per_service[svc.name] = {c: _r(self._rate(svc.name, c, now, w)) for c in sorted(svc.rings)}
        return {
            "throughput": {
                "ingest_rate_per_sec": rate(cfg.ingest_rate),
                "alert_rate_per_sec": rate(cfg.alert_rate),
                "delivery_rate_per_sec": rate(cfg.delivery_rate),
                "write_rate_per_sec": rate(cfg.write_rate),
                "rules_rate_per_sec": rate(cfg.rules_rate),
                "routed_rate_per_sec": rate(cfg.routed_rate),
                "delivery_failed_rate_per_sec": rate(cfg.delivery_failed_rate),
            },
            "latency": latency,
            "period": f"last_{w}_seconds",
            "window_s": w,
            "rates": per_service,
        }

    def _gauge_sum(self, svc: Service, gauge: str) -> float | None:
        values = [i.gauges[gauge] for i in svc.instances.values()
                  if gauge in i.gauges and i.state.state in ("healthy", "degraded")]
        return _r(math.fsum(values)) if values else None

    def _health_section(self, now: float, metrics: dict[str, Any]) -> dict[str, Any]:
        comps: dict[str, dict[str, Any]] = {}
        for target in self.cfg.expected_probes:
            comps[target] = self._probe_component(target, now)
        for target in self.probes:
            if target not in comps and target not in CAPACITY_PROBES:
                comps[target] = self._probe_component(target, now)
        tp = metrics["throughput"]
        extra_fig = {"ingest": {"messages_per_sec": tp["ingest_rate_per_sec"]},
                     "evaluator": {"rules_per_sec": tp["rules_rate_per_sec"]},
                     "dispatcher": {"alerts_per_sec": tp["routed_rate_per_sec"]},
                     "delivery": {"webhooks_per_sec": tp["delivery_rate_per_sec"]}}
        for svc in self.services.values():
            insts = list(svc.instances.values())
            comp: dict[str, Any] = {
                "kind": "service", "status": svc.state.state, "reason": svc.state.reason,
                "since": _r(svc.state.since),
                "instances_healthy": sum(i.state.state == "healthy" for i in insts),
                "instances_total": len(insts),
            }
            for gauge in self.cfg.thresholds.gauges:
                if any(gauge in i.gauges for i in insts):
                    comp[gauge] = self._gauge_sum(svc, gauge)
            comp.update(extra_fig.get(svc.name, {}))
            comps[svc.name] = comp
        overall = worst([c["status"] for c in comps.values()])
        return {"status": overall, "components": comps, "checked_at": iso(now)}

    def _probe_component(self, target: str, now: float) -> dict[str, Any]:
        probe = self.probes.get(target)
        if probe is None:
            return {"kind": "probe", "status": "unknown", "reason": "no result yet", "latency_ms": None}
        res, m = probe.result, probe.result.metrics
        comp: dict[str, Any] = {
            "kind": "probe", "status": probe.state.state, "reason": probe.state.reason,
            "latency_ms": _r(res.latency_ms), "since": _r(probe.since), "ts": _r(probe.received_at),
        }
        match target:
            case "postgres":
                comp.update(connections=m.get("connections_used"), max_connections=m.get("connections_max"),
                            db_size_mb=_r(_div(m.get("db_size_bytes"), 2**20), 1))
            case "influxdb":
                comp.update(file_count=m.get("file_count"), file_limit=m.get("file_limit"))
            case "mqtt":
                comp.update(connected_clients=m.get("connected_clients"),
                            canary_rtt_ms=m.get("canary_rtt_ms"))
            case "keycloak":
                comp.update(active_sessions=m.get("active_sessions"))
        return comp

    def _probe_fresh(self, target: str) -> tuple[dict[str, float | None], dict[str, Any], dict[str, Any]]:
        """(metrics, details, status fields) of a probe target; empty when unknown."""
        probe = self.probes.get(target)
        if probe is None:
            return {}, {}, {"status": "unknown", "reason": "no result yet"}
        fields = {"status": probe.state.state, "reason": probe.state.reason, "ts": _r(probe.received_at)}
        if probe.state.state == "unknown":
            return {}, {}, fields
        return dict(probe.result.metrics), dict(probe.result.details), fields

    def _capacity_section(self, now: float) -> dict[str, Any]:
        gb = 2**30
        dm, _dd, dfields = self._probe_fresh("disk")
        pm, pd, pfields = self._probe_fresh("postgres")
        im, _id, ifields = self._probe_fresh("influxdb")
        km, kd, kfields = self._probe_fresh("docker")
        docker_probe = self.probes.get("docker")
        containers = kd.get("containers") if isinstance(kd.get("containers"), list) else None
        return {
            "disk": {
                "postgres_data_gb": _r(_div(dm.get("postgres_data_bytes"), gb)),
                "influxdb_data_gb": _r(_div(dm.get("influxdb_data_bytes"), gb)),
                "total_volume_gb": _r(_div(dm.get("total_volume_bytes"), gb)),
                "used_volume_gb": _r(_div(dm.get("used_volume_bytes"), gb)),
                "used_pct": _r(dm.get("used_pct"), 1), **dfields,
            },
            "postgres": {
                "db_size_mb": _r(_div(pm.get("db_size_bytes"), 2**20), 1),
                "connections_used": pm.get("connections_used"),
                "connections_max": pm.get("connections_max"),
                "largest_tables": pd.get("largest_tables"), **pfields,
            },
            "influxdb": {
                "file_count": im.get("file_count"), "file_limit": im.get("file_limit"),
                "data_gb": _r(_div(im.get("data_bytes"), gb)), **ifields,
            },
            "memory": {
                "available": containers is not None,
                "reason": (docker_probe.result.error if docker_probe else "no docker probe result yet")
                if containers is None else None,
                "containers": containers, "running": km.get("containers_running"),
                "total": km.get("containers_total"), **kfields,
            },
        }

    def _aggregates_section(self, now: float) -> dict[str, Any]:
        m, _d, fields = self._probe_fresh("platform")
        g = m.get
        return {
            "tenants": {"active": g("tenants_active"), "suspended": g("tenants_suspended"),
                        "deleted": g("tenants_deleted"), "total": g("tenants_total")},
            "devices": {"registered": g("devices_registered"), "online": g("devices_online"),
                        "stale": g("devices_stale")},
            "alerts": {"open": g("alerts_open"), "closed_today": g("alerts_closed_today"),
                       "triggered_today": g("alerts_triggered_today")},
            "integrations": {"total": g("integrations_total"), "active": g("integrations_active"),
                             "webhook": g("integrations_webhook"), "email": g("integrations_email"),
                             "sms": g("integrations_sms")},
            **fields,
        }

    def _errors_section(self, now: float) -> dict[str, Any]:
        sec = math.floor(now)
        counts = {f"{c}_1h": round(r.sum(sec - HOUR + 1, sec)) for c, r in self.category_rings.items()}
        return {"errors": list(self.feed_items), "counts": counts}

    def _services_section(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        expected = set(self.cfg.expected_services)
        for svc in self.services.values():
            out[svc.name] = {
                "status": svc.state.state, "reason": svc.state.reason, "expected": svc.name in expected,
                "instances": {
                    i.name: {
                        "status": i.state.state, "reason": i.state.reason, "since": _r(i.state.since),
                        "boot": i.boot or None, "version": i.version or None, "interval_s": i.interval_s,
                        "last_seen": _r(i.last_seen), "seq": i.last_seq, "restarts": i.restarts,
                        "missing_intervals": i.missing_intervals, "received_intervals": i.received_intervals,
                        "skew_s": _r(i.skew_s, 1), "totals": dict(i.totals), "gauges": dict(i.gauges),
                        "health": i.health, "detail": i.detail or None,
                    } for i in svc.instances.values()
                },
            }
        return out

    def _probes_section(self, now: float) -> dict[str, Any]:
        return {
            t: {"status": p.state.state, "reported_status": p.result.status, "reason": p.state.reason,
                "ts": _r(p.received_at), "probe_ts": _r(p.result.ts), "latency_ms": _r(p.result.latency_ms),
                "metrics": dict(p.result.metrics), "details": dict(p.result.details),
                "error": p.result.error, "period_s": p.result.period_s}
            for t, p in self.probes.items()
        }


def _div(value: float | None, by: float) -> float | None:
    return None if value is None else value / by


class _Refused(Exception):
    """A limit broken by a message; becomes a quarantine."""


_REASON_KEY: Final = re.compile(r"[^':;(/0-9\"]*")


def _reason_key(reason: str) -> str:
    """The reason's first words, without the names and numbers in it (``too many instances of``), so the
    64 keys of ``quarantine_reasons`` count kinds of reasons: one flood of distinct names cannot fill
    them and hide every other reason."""
    m = _REASON_KEY.match(reason)
    key = (m.group() if m else "").split(" for ", 1)[0].strip()
    return key[:60] or reason[:60]


def _decode_reason(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid: {text}"
    return f"not valid JSON: {text}"

