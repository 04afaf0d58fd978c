"""What the fold knows: instances, services and probes with their rolling windows (pure data).

:class:`FoldState` is everything the view is built from. The fold (``telemetry_bus.fold``) writes it;
the health rules (``telemetry_bus.health_rules``) and the view builder (``telemetry_bus.view``) only
read it. The window methods take ``now`` (the aggregator's arrival clock) as an argument.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import ProbeResult
from telemetry_bus.health import Hysteresis
from telemetry_bus.histogram import ExpHistogram
from telemetry_bus.windows import HistRing, Ring

__all__ = ["CAPACITY_PROBES", "ERROR_CATEGORIES", "FEED_LEN", "HOUR", "RATE_LAG_S", "FoldState", "Instance",
           "Probe", "Service", "iso", "rnd"]

#: Seconds a counter's second-bucket waits for late parts before rates read it (see ``FoldState.rate``).
RATE_LAG_S: Final = 2
#: Entries kept in the error feed.
FEED_LEN: Final = 50
HOUR: Final = 3600
ERROR_CATEGORIES: Final = ("ingest_failures", "delivery_failures", "auth_failures", "rate_limited",
                           "quarantined")
#: Probe targets whose results feed the capacity and aggregates sections rather than the health grid.
CAPACITY_PROBES: Final = frozenset({"disk", "docker", "processes", "platform"})


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rnd(value: float | None, digits: int = 3) -> float | None:
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
    #: the status message's ``depends_on`` (edges of the dependency graph, graph.py)
    depends_on: tuple[str, ...] = ()
    #: when this boot started (reporter clock: its online status' ts, or its first interval's t0)
    boot_at: float | None = None
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
    gauges: dict[str, int | float] = field(default_factory=dict)
    series: set[str] = field(default_factory=set)
    missing_intervals: int = 0
    received_intervals: int = 0
    restarts: int = 0
    skew_s: float | None = None
    pair_rings: dict[str, Ring] = field(default_factory=dict)
    state: Hysteresis = field(default_factory=Hysteresis)
    #: (fingerprint, the instance's part of the view) from the last tick that built it: an instance
    #: whose fields did not change since costs nothing per tick (view.py services_section)
    view_cache: tuple[tuple[Any, ...], Any] | None = None

    def pair_sum(self, counter: str, first: int, last: int) -> float:
        """This instance's increments of an error-pair counter over whole seconds ``first..last``."""
        ring = self.pair_rings.get(counter)
        return ring.sum(first, last) if ring else 0.0


@dataclass(slots=True)
class Service:
    name: str
    instances: dict[str, Instance] = field(default_factory=dict)
    rings: dict[str, Ring] = field(default_factory=dict)
    hists: dict[str, HistRing] = field(default_factory=dict)
    state: Hysteresis = field(default_factory=Hysteresis)
    #: every series name its instances sent (bounded by ``max_series_per_service``)
    series: set[str] = field(default_factory=set)
    #: the earliest first_seen of its instances (rates average over what exists before a full
    #: window); kept by the fold as instances come and go, so a rate costs no pass over instances
    first_seen: float | None = None

    def add_instance(self, inst: Instance) -> None:
        self.instances[inst.name] = inst
        if self.first_seen is None or inst.first_seen < self.first_seen:
            self.first_seen = inst.first_seen

    def remove_instance(self, name: str) -> None:
        del self.instances[name]
        self.first_seen = min((i.first_seen for i in self.instances.values()), default=None)


@dataclass(slots=True)
class Probe:
    target: str
    result: ProbeResult
    received_at: float
    since: float
    state: Hysteresis = field(default_factory=Hysteresis)


@dataclass(slots=True)
class FoldState:
    """Everything folded so far: what the health rules and the view builder read."""

    started_at: float
    services: dict[str, Service] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    #: the error feed, newest first; each entry has an ``id`` (stable keys for clients)
    feed_items: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FEED_LEN))
    category_rings: dict[str, Ring] = field(
        default_factory=lambda: {c: Ring(HOUR + 1) for c in ERROR_CATEGORIES})
    folded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    #: the tick counter: the view's ``meta.seq``
    seq: int = 0
    #: series points per series name (the view's ``series``), at most ``series_len`` each
    series: dict[str, deque[list[float | None]]] = field(default_factory=dict)
    series_len: int = 3600

    def rate(self, svc_name: str, counter: str, now: float, window: int) -> float | None:
        """Per-second rate over ``window`` complete seconds ending RATE_LAG_S seconds ago."""
        svc = self.services.get(svc_name)
        if svc is None or not svc.instances:
            return None
        ring = svc.rings.get(counter)
        last = math.floor(now) - RATE_LAG_S
        # Before a full window has passed since the service appeared, average over what exists.
        first_seen = svc.first_seen
        if first_seen is None:  # instances put in by hand (tests): one pass
            first_seen = min(i.first_seen for i in svc.instances.values())
        covered = min(window, max(1, last + 1 - math.floor(first_seen)))
        if ring is None:
            return 0.0 if any(counter in i.series for i in svc.instances.values()) else None
        return ring.sum(last - covered + 1, last) / covered

    def rate_1s(self, svc_name: str, counter: str, sec: int) -> float | None:
        """The increments of one whole second (``sec``) of a service's counter."""
        svc = self.services.get(svc_name)
        if svc is None or not svc.instances:
            return None
        ring = svc.rings.get(counter)
        return ring.get(sec) if ring else 0.0

    def quantiles(self, svc_name: str, hist: str, now: float, window: int) -> tuple[ExpHistogram | None, int]:
        """The service's histogram merged over the last ``window`` seconds, and its sample count."""
        svc = self.services.get(svc_name)
        if svc is None or hist not in svc.hists:
            return None, 0
        sec = math.floor(now)
        merged = svc.hists[hist].merged(sec - window + 1, sec)
        return merged, merged.count if merged else 0

    def category_count(self, category: str, now: float, seconds: int = HOUR) -> int:
        sec = math.floor(now)
        return round(self.category_rings[category].sum(sec - seconds + 1, sec))

    def gauge_sum(self, svc: Service, gauge: str) -> int | float | None:
        """Sum of a gauge over the instances that are up (healthy or degraded); counts stay ints."""
        values = [i.gauges[gauge] for i in svc.instances.values()
                  if gauge in i.gauges and i.state.state in ("healthy", "degraded")]
        if not values:
            return None
        if all(type(v) is int for v in values):
            return sum(values)
        return rnd(math.fsum(values))

    @staticmethod
    def new(config: AggregatorConfig, now: float) -> FoldState:
        state = FoldState(started_at=now, series_len=config.history_s)
        for name in config.expected_services:
            state.services[name] = Service(name)
        return state
