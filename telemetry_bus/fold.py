"""The aggregator's pure core: fold ops messages into rolling windows, health and the view.

    fold = Fold(AggregatorConfig(), root="$ops", now=t)
    fold.feed(topic, payload, now)          # every message from <root>/v1/svc/# and <root>/v1/probe/#
    out = fold.tick(now)                    # every tick_s: the view, its patch, and the series points

No sockets and no clock of its own: every method takes ``now`` (the aggregator's arrival clock).

The parts: ``state.py`` holds what is folded (instances, services, probes and their windows),
``health_rules.py`` the pure health rules, ``view.py`` the view builder (its sections; new sections
plug in there: ``fold.view.add(...)``). This module feeds the state, quarantines bad input, applies the
rules through each subject's hysteresis and, every tick, builds the view, its patch and the series.

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
from telemetry_bus.health import State
from telemetry_bus.health_rules import instance_health, probe_state, service_state
from telemetry_bus.state import (
    CAPACITY_PROBES,
    ERROR_CATEGORIES,
    RATE_LAG_S,
    FoldState,
    Instance,
    Probe,
    Service,
    iso,
    rnd,
)
from telemetry_bus.view import ViewBuilder
from telemetry_bus.view_diff import canonical, diff
from telemetry_bus.windows import HistRing, Ring

__all__ = ["ERROR_CATEGORIES", "Fold", "TickOutput"]

TOPIC_CACHE: Final = 16384  # ~4 MiB; a real platform has a few thousand ops topics
#: Quarantine entries put in the feed per second at most (all are counted).
QUARANTINE_FEED_PER_S: Final = 5
_KIND_CATEGORY: Final = {
    "parse_error": "ingest_failures", "ingest_failed": "ingest_failures", "write_failed": "ingest_failures",
    "webhook_timeout": "delivery_failures", "webhook_failed": "delivery_failures",
    "delivery_failed": "delivery_failures",
    "auth_failed": "auth_failures", "token_expired": "auth_failures",
    "rate_limited": "rate_limited",
    "quarantined": "quarantined",
}
_SEVERITY_IN_FEED: Final = frozenset({"warning", "error", "critical"})


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

    def __init__(self, config: AggregatorConfig, root: str = "$ops", now: float = 0.0,
                 view: ViewBuilder | None = None) -> None:
        self.cfg = config
        self.root = root
        self.state = FoldState.new(config, now)
        #: the sections of the view; the wiring adds its own (``fold.view.add(...)``, see view.py)
        self.view = view if view is not None else ViewBuilder.default()
        # The state's containers, held directly: the feed path is hot.
        self.services = self.state.services
        self.probes = self.state.probes
        self.feed_items = self.state.feed_items
        self._feed_id = 0  # ids of feed entries: stable keys for clients, and what a tick sends
        self._feed_sent = 0
        self._q_feed_sec = 0
        self._q_feed_n = 0
        self._topics: dict[str, Topic] = {}
        pairs = config.thresholds.error_pairs
        self._pair_names = frozenset(pairs) | frozenset(pairs.values())
        self._prev_view: dict[str, Any] = {}
        self._last_point_sec: int | None = None
        #: instances that got a status or metrics message since the last tick: an early tick
        #: evaluates only these (and the silent or unknown ones), not every instance
        self._touched: set[tuple[str, str]] = set()
        self._ring_size = config.window_s + RATE_LAG_S + 2

    # Counters of the state, read by the aggregator's self-report and tests.
    @property
    def started_at(self) -> float:
        return self.state.started_at

    @property
    def folded(self) -> int:
        return self.state.folded

    @property
    def duplicates(self) -> int:
        return self.state.duplicates

    @property
    def quarantined(self) -> int:
        return self.state.quarantined

    @property
    def quarantine_reasons(self) -> dict[str, int]:
        return self.state.quarantine_reasons

    @property
    def seq(self) -> int:
        return self.state.seq

    @property
    def series(self) -> dict[str, deque[list[float | None]]]:
        return self.state.series

    @property
    def series_len(self) -> int:
        return self.state.series_len

    def preload_series(self, name: str, points: list[list[float | None]]) -> None:
        """Put earlier ``[ts, value]`` points (oldest first; e.g. read back from history at start) in
        front of series ``name``; keeps the newest ``series_len``. Points at or after the series'
        first point are dropped (the live ones win). Call it before the first tick."""
        live = self.state.series.get(name)
        first = live[0][0] if live else None
        older = [list(p) for p in points if first is None or (p[0] is not None and first is not None
                                                              and p[0] < first)]
        merged: deque[list[float | None]] = deque(older, maxlen=self.state.series_len)
        merged.extend(live or ())
        self.state.series[name] = merged

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
        st = self.state
        st.quarantined += 1
        key = _reason_key(reason)
        if key in st.quarantine_reasons or len(st.quarantine_reasons) < 64:
            st.quarantine_reasons[key] = st.quarantine_reasons.get(key, 0) + 1
        st.category_rings["quarantined"].add(math.floor(now), 1)
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
            inst = Instance(service, name, first_seen=now)
            svc.add_instance(inst)
        return inst

    def _fold_status(self, service: str, instance: str, st: Status, now: float, retained: bool) -> None:
        if retained and st.state == "offline" and st.ts and now - st.ts > self.cfg.forget_after_s:
            return  # a long-gone instance's retained goodbye: nothing to show
        inst = self._instance(service, instance, now)
        if st.boot != inst.boot and inst.boot and st.state == "offline":
            return  # the Last Will of an earlier boot, delivered late: the new boot is what counts
        inst.version = st.version
        inst.depends_on = tuple(st.depends_on)
        inst.interval_s = st.interval_s
        inst.status_at = now
        self._touched.add((service, instance))
        if st.state == "online":
            inst.online = True
            inst.offline_reason = ""
            if st.boot != inst.boot:
                self._new_boot(inst, st.boot)
                inst.boot_at = st.ts or None  # the online status is sent at connect, right after start
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
        inst.boot_at = None

    def _fold_metrics(self, service: str, instance: str, m: Metrics, now: float, topic: str) -> None:
        svc_known = self.services.get(service)
        inst_known = svc_known.instances.get(instance) if svc_known is not None else None
        inst = inst_known if inst_known is not None else self._instance(service, instance, now)
        self._touched.add((service, instance))
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
            # The service keeps a window per name its instances send: bound the names per service
            # too, or many instances with distinct names would grow it without limit.
            svc = self.services[service]
            fresh = new - svc.series
            if fresh and len(svc.series) + len(fresh) > self.cfg.max_series_per_service:
                raise _Refused(f"too many series for service {service} (max "
                               f"{self.cfg.max_series_per_service})")
            svc.series |= fresh
            series |= new
        if m.boot != inst.boot:
            watched = inst.last_seen is not None or inst.boot != ""  # a restart we saw happen
            self._new_boot(inst, m.boot)
            inst.from_start = watched
            if m.seq == 1 and m.t0:
                inst.boot_at = m.t0  # the boot's first interval starts at its start
        elif inst.synced and m.seq <= inst.last_seq:
            if m.seq in inst.missing_seqs:  # late: counters were repaired from totals already
                inst.missing_seqs.discard(m.seq)
                inst.missing_intervals -= 1
                inst.received_intervals += 1
                self._fold_hists(self.services[service], m, now)
                return
            self.state.duplicates += 1
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
        self.state.folded += 1

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
                self.state.duplicates += 1
                return
            inst.event_seqs.append(key)
        category = _KIND_CATEGORY.get(ev.kind)
        if category is None and service == "ingest" and ev.severity in ("error", "critical"):
            category = "ingest_failures"
        if category is not None:
            self.state.category_rings[category].add(math.floor(now), 1)
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

    # -- health ----------------------------------------------------------------------------------

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
        """Apply the health rules (health_rules.py) through each subject's hysteresis. ``full=False``
        (an early tick between regular ones) applies only the immediate transitions (Last Will,
        silence, first sight), and looks only at instances with news since the last tick, silent ones
        and unknown ones: hysteresis counts regular evaluations, so a flapping subject needs the
        same *time* to flip however often we tick."""
        cfg = self.cfg
        hyst = cfg.hysteresis
        for svc in self.services.values():
            forget = [n for n, i in svc.instances.items() if not i.online and i.offline_reason
                      and now - i.status_at > cfg.forget_after_s]
            for name in forget:
                svc.remove_instance(name)
            touched, name = self._touched, svc.name
            for inst in svc.instances.values():
                if not full and (name, inst.name) not in touched and inst.state.state != "unknown" and (
                        inst.last_seen is None or now - inst.last_seen <= 3 * inst.interval_s):
                    continue  # early tick: nothing new from it, and not silent: no immediate change
                raw, reason, immediate = instance_health(inst, now, cfg)
                if not (full or immediate or inst.state.state == "unknown"):
                    continue
                old = inst.state.state
                if inst.state.update(raw, reason, now, hyst, immediate):
                    self._note_change(inst.name, svc.name, old, inst.state.state, inst.state.reason, now)
            state, reason = service_state(svc)
            old = svc.state.state
            # Instance states already passed their hysteresis: the service follows them at once.
            if svc.state.update(state, reason, now, 1, True):
                self._note_change(svc.name, svc.name, old, svc.state.state, reason, now)
        for probe in self.probes.values():
            state, reason = probe_state(probe, now)
            old = probe.state.state
            if probe.state.update(state, reason, now, 1, True) and probe.target not in CAPACITY_PROBES:
                self._note_change(probe.target, probe.target, old, state, reason, now)

    # -- the view --------------------------------------------------------------------------------

    def tick(self, now: float, full: bool = True) -> TickOutput:
        """Evaluate health, build the view (view.py) and its patch from the previous tick.

        ``full=False``: an early tick, published soon after news arrived (see service.py); health
        hysteresis advances only on full ticks."""
        self._evaluate(now, full)
        self._touched.clear()
        self.state.seq += 1
        seq = self.state.seq
        view = self.view.build(self.state, self.cfg, now, full)
        # One series point per whole second, however short the tick.
        sec = math.floor(now)
        append = self._series_points(view, now) if sec != self._last_point_sec else {}
        self._last_point_sec = sec
        series = self.state.series
        for name, point in append.items():
            points = series.setdefault(name, deque(maxlen=self.state.series_len))
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
        whole["series"] = {k: list(v) for k, v in series.items()}
        return TickOutput(seq=seq, ts=now, view=whole, patch=patch, append=append, base=seq - 1,
                          errors=new_errors)

    def _series_points(self, view: dict[str, Any], now: float) -> dict[str, list[float | None]]:
        sec = math.floor(now) - RATE_LAG_S
        ts = float(sec + 1)  # the point measures the second that ended at ts
        out: dict[str, list[float | None]] = {}
        # a second that began before this fold started was not watched: unknown, never 0 (after a
        # restart the series show the restart as a gap; history backfills what came before)
        watched = sec >= math.floor(self.state.started_at)
        for key, spec in (("ingest_rate", self.cfg.ingest_rate), ("alert_rate", self.cfg.alert_rate),
                          ("delivery_rate", self.cfg.delivery_rate)):
            svc, counter = spec.split(".")
            out[key] = [ts, rnd(self.state.rate_1s(svc, counter, sec)) if watched else None]
        lat = view["metrics"]["latency"]
        for q in ("p50", "p95", "p99"):
            out[f"write_{q}"] = [float(math.floor(now)), lat.get(f"influx_write_{q}_ms")]
        return out


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

