"""The view builder: the folded state -> the view (docs/view.md), one section at a time.

    view = build_view(state, cfg, now)                       # the default sections
    builder = ViewBuilder.default(); builder.add("graph", my_graph, after="health")
    view = builder.build(state, cfg, now, full=True)

How to add a section (``alerts``, ``graph``, ...), without touching the fold:

1. Write a builder: a callable taking a :class:`SectionContext` and returning the section's JSON-able
   value (dicts, lists, str, int, float, bool, None). ``ctx.view`` holds the sections built before
   yours, in order (e.g. ``ctx.view["health"]["components"]``), ``ctx.full`` says whether this is a
   regular tick (False for an early tick between regular ones: rules that count evaluations should
   run on full ticks only and otherwise return what they returned last). Read ``ctx.state``, never
   write it. A stateful builder is an object with ``__call__``. Keep it pure: time is ``ctx.now``.
2. Register it where the aggregator is wired (``opsdash``): ``fold.view.add("alerts", builder,
   after="graph")``. Sections run and appear in the view in list order; ``after``/``before`` place it.
3. Add the section to the view's JSON Schema and the tests (docs/view.md says how).

``None`` members are dropped from the published view (RFC 7396 canonical form, see view_diff.py), so
a builder may return ``None`` for "unknown".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.health import worst
from telemetry_bus.state import CAPACITY_PROBES, FEED_LEN, FoldState, Instance, Probe, iso, rnd
from telemetry_bus.view_diff import Canonical

__all__ = ["DEFAULT_SECTIONS", "SectionBuilder", "SectionContext", "ViewBuilder", "build_view"]


@dataclass(slots=True)
class SectionContext:
    """What a section builder gets: the state (read only), the config, the tick's time, whether the
    tick is a regular (full) one, and the view built so far (earlier sections, in order)."""

    state: FoldState
    cfg: AggregatorConfig
    now: float
    full: bool = True
    view: dict[str, Any] = field(default_factory=dict)


SectionBuilder = Callable[[SectionContext], Any]


class ViewBuilder:
    """An ordered list of (section name, builder); ``build`` runs them in order into one view."""

    def __init__(self, sections: list[tuple[str, SectionBuilder]] | None = None) -> None:
        self.sections: list[tuple[str, SectionBuilder]] = list(sections or [])

    @classmethod
    def default(cls) -> ViewBuilder:
        return cls(list(DEFAULT_SECTIONS))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.sections]

    def add(self, name: str, builder: SectionBuilder, *, after: str | None = None,
            before: str | None = None) -> None:
        """Add a section at the end, or right after/before another one (by name)."""
        if name in self.names or name == "series":  # the fold appends "series" itself
            raise ValueError(f"view section {name!r} exists already")
        if after is not None and before is not None:
            raise ValueError("give after or before, not both")
        anchor = after if after is not None else before
        if anchor is None:
            self.sections.append((name, builder))
            return
        if anchor not in self.names:
            raise ValueError(f"no view section {anchor!r} to put {name!r} next to (have {self.names})")
        at = self.names.index(anchor) + (1 if after is not None else 0)
        self.sections.insert(at, (name, builder))

    def build(self, state: FoldState, cfg: AggregatorConfig, now: float, full: bool = True) -> dict[str, Any]:
        ctx = SectionContext(state, cfg, now, full)
        for name, builder in self.sections:
            ctx.view[name] = builder(ctx)
        return ctx.view


def build_view(state: FoldState, cfg: AggregatorConfig, now: float, full: bool = True) -> dict[str, Any]:
    """The view of the default sections (without ``series``, which the fold keeps)."""
    return ViewBuilder.default().build(state, cfg, now, full)


# -- the sections ------------------------------------------------------------------------------------


def meta_section(ctx: SectionContext) -> dict[str, Any]:
    s, cfg = ctx.state, ctx.cfg
    insts = [i for svc in s.services.values() for i in svc.instances.values()]
    received = sum(i.received_intervals for i in insts)
    missing = sum(i.missing_intervals for i in insts)
    return {
        "seq": s.seq, "generated_at": rnd(ctx.now), "aggregator": cfg.id, "tick_s": cfg.tick_s,
        "window_s": cfg.window_s, "series_len": s.series_len, "errors_len": FEED_LEN,
        "started_at": rnd(s.started_at),
        "completeness": {"ratio": rnd(received / (received + missing), 6) if received + missing else None,
                         "received_intervals": received, "missing_intervals": missing},
        "folded": s.folded, "duplicates": s.duplicates, "quarantined": s.quarantined,
        "quarantine_reasons": dict(s.quarantine_reasons),
    }


def _throughput(ctx: SectionContext) -> dict[str, float | None]:
    cfg = ctx.cfg

    def rate(spec: str) -> float | None:
        svc, counter = spec.split(".")
        return rnd(ctx.state.rate(svc, counter, ctx.now, cfg.window_s))

    return {
        "ingest_rate_per_sec": rate(cfg.ingest_rate),
        "alert_rate_per_sec": rate(cfg.alert_rate),
        "delivery_rate_per_sec": rate(cfg.delivery_rate),
        "write_rate_per_sec": rate(cfg.write_rate),
        "rules_rate_per_sec": rate(cfg.rules_rate),
        "routed_rate_per_sec": rate(cfg.routed_rate),
        "delivery_failed_rate_per_sec": rate(cfg.delivery_failed_rate),
    }


def health_section(ctx: SectionContext) -> dict[str, Any]:
    s, cfg = ctx.state, ctx.cfg
    comps: dict[str, dict[str, Any]] = {}
    for target in cfg.expected_probes:
        comps[target] = probe_component(s.probes.get(target))
    for target, probe in s.probes.items():
        if target not in comps and target not in CAPACITY_PROBES:
            comps[target] = probe_component(probe)
    tp = ctx.view["metrics"]["throughput"] if "metrics" in ctx.view else _throughput(ctx)
    extra_fig = {"ingest": {"messages_per_sec": tp["ingest_rate_per_sec"]},
                 "evaluator": {"rules_per_sec": tp["rules_rate_per_sec"]},
                 "dispatcher": {"alerts_per_sec": tp["routed_rate_per_sec"]},
                 "delivery": {"webhooks_per_sec": tp["delivery_rate_per_sec"]}}
    for svc in s.services.values():
        insts = list(svc.instances.values())
        comp: dict[str, Any] = {
            "kind": "service", "status": svc.state.state, "reason": svc.state.reason,
            "since": rnd(svc.state.since),
            "instances_healthy": sum(i.state.state == "healthy" for i in insts),
            "instances_total": len(insts),
        }
        for gauge in cfg.thresholds.gauges:
            if any(gauge in i.gauges for i in insts):
                comp[gauge] = s.gauge_sum(svc, gauge)
        comp.update(extra_fig.get(svc.name, {}))
        comps[svc.name] = comp
    overall = worst([c["status"] for c in comps.values()])
    return {"status": overall, "components": comps, "checked_at": iso(ctx.now)}


def probe_component(probe: Probe | None) -> dict[str, Any]:
    """One probe target's cell of the health grid, with the figures its card shows."""
    if probe is None:
        return {"kind": "probe", "status": "unknown", "reason": "no result yet", "latency_ms": None}
    res, m = probe.result, probe.result.metrics
    comp: dict[str, Any] = {
        "kind": "probe", "status": probe.state.state, "reason": probe.state.reason,
        "latency_ms": rnd(res.latency_ms), "since": rnd(probe.since), "ts": rnd(probe.received_at),
    }
    match probe.target:
        case "postgres":
            comp.update(connections=m.get("connections_used"), max_connections=m.get("connections_max"),
                        db_size_bytes=m.get("db_size_bytes"))
        case "influxdb":
            comp.update(file_count=m.get("file_count"), file_limit=m.get("file_limit"))
        case "mqtt":
            comp.update(connected_clients=m.get("connected_clients"), canary_rtt_ms=m.get("canary_rtt_ms"))
        case "keycloak":
            comp.update(active_sessions=m.get("active_sessions"))
    return comp


def metrics_section(ctx: SectionContext) -> dict[str, Any]:
    s, cfg, now = ctx.state, ctx.cfg, ctx.now
    w = cfg.window_s
    hsvc, hname = cfg.write_latency.split(".")
    merged, samples = s.quantiles(hsvc, hname, now, w)
    latency: dict[str, Any] = {
        "influx_write_p50_ms": rnd(merged.quantile(0.5)) if merged else None,
        "influx_write_p95_ms": rnd(merged.quantile(0.95)) if merged else None,
        "influx_write_p99_ms": rnd(merged.quantile(0.99)) if merged else None,
        "relative_error": rnd(merged.relative_error, 6) if merged else None,
        "samples": samples,
    }
    per_service: dict[str, dict[str, float | None]] = {}
    for svc in s.services.values():
        if svc.instances:
            per_service[svc.name] = {c: rnd(s.rate(svc.name, c, now, w)) for c in sorted(svc.rings)}
    return {
        "throughput": _throughput(ctx),
        "latency": latency,
        "period": f"last_{w}_seconds",
        "window_s": w,
        "rates": per_service,
    }


def _probe_fresh(state: FoldState,
                 target: str) -> tuple[dict[str, int | float | None], dict[str, Any], dict[str, Any]]:
    """(metrics, details, status fields) of a probe target; empty when unknown."""
    probe = state.probes.get(target)
    if probe is None:
        return {}, {}, {"status": "unknown", "reason": "no result yet"}
    fields = {"status": probe.state.state, "reason": probe.state.reason, "ts": rnd(probe.received_at)}
    if probe.state.state == "unknown":
        return {}, {}, fields
    return dict(probe.result.metrics), dict(probe.result.details), fields


def capacity_section(ctx: SectionContext) -> dict[str, Any]:
    s = ctx.state
    dm, _dd, dfields = _probe_fresh(s, "disk")
    pm, pd, pfields = _probe_fresh(s, "postgres")
    im, _id, ifields = _probe_fresh(s, "influxdb")
    km, kd, kfields = _probe_fresh(s, "docker")
    docker_probe = s.probes.get("docker")
    containers = kd.get("containers") if isinstance(kd.get("containers"), list) else None
    source = "docker"
    if containers is None:
        # no Docker here: the processes probe's rows (cgroup v2 / v1 or /proc), same shape
        xm, xd, xfields = _probe_fresh(s, "processes")
        if isinstance(xd.get("containers"), list):
            containers, source, kfields = xd["containers"], "processes", xfields
            km = {"containers_running": xm.get("processes_running"),
                  "containers_total": xm.get("processes_total")}
    return {
        # Sizes in bytes, as the probes measure them (the REST layer adds the seed's GB / MB fields).
        "disk": {
            "postgres_data_bytes": dm.get("postgres_data_bytes"),
            "influxdb_data_bytes": dm.get("influxdb_data_bytes"),
            "total_volume_bytes": dm.get("total_volume_bytes"),
            "used_volume_bytes": dm.get("used_volume_bytes"),
            "used_pct": rnd(dm.get("used_pct"), 1), **dfields,
        },
        "postgres": {
            "db_size_bytes": pm.get("db_size_bytes"),
            "connections_used": pm.get("connections_used"),
            "connections_max": pm.get("connections_max"),
            "largest_tables": pd.get("largest_tables"), **pfields,
        },
        "influxdb": {
            "file_count": im.get("file_count"), "file_limit": im.get("file_limit"),
            "data_bytes": im.get("data_bytes"), **ifields,
        },
        "memory": {
            "available": containers is not None,
            "reason": (docker_probe.result.error if docker_probe else "no docker probe result yet")
            if containers is None else None,
            "containers": containers, "running": km.get("containers_running"),
            "total": km.get("containers_total"), "source": source if containers is not None else None,
            **kfields,
        },
    }


def aggregates_section(ctx: SectionContext) -> dict[str, Any]:
    m, _d, fields = _probe_fresh(ctx.state, "platform")
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


def errors_section(ctx: SectionContext) -> dict[str, Any]:
    s = ctx.state
    counts = {f"{c}_1h": s.category_count(c, ctx.now) for c in s.category_rings}
    return {"errors": list(s.feed_items), "counts": counts}


def services_section(ctx: SectionContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    expected = set(ctx.cfg.expected_services)
    for svc in ctx.state.services.values():
        insts = svc.instances.values()
        by_status: dict[str, int] = {}
        versions: dict[str, int] = {}
        for i in insts:
            by_status[i.state.state] = by_status.get(i.state.state, 0) + 1
            if i.version:
                versions[i.version] = versions.get(i.version, 0) + 1
        out[svc.name] = {
            "status": svc.state.state, "reason": svc.state.reason, "expected": svc.name in expected,
            # the summary (what the default WebSocket stream carries; gateway/sections.py): figures
            # that change when an instance does, not every tick
            "since": rnd(svc.state.since), "instances_total": len(svc.instances),
            "instances_by_status": by_status, "versions": versions,
            "restarts": sum(i.restarts for i in insts),
            "missing_intervals": sum(i.missing_intervals for i in insts),
            # records its instances' log handlers dropped over their rate (telemetry_bus/loghandler.py)
            "log_records_dropped": sum(i.totals.get("log_records_dropped", 0) for i in insts),
            # the freshest heartbeat (the tile's age); one number per service per tick
            "last_seen": rnd(max((i.last_seen for i in insts if i.last_seen is not None), default=None)),
            "instances": {i.name: instance_view(i) for i in svc.instances.values()},
        }
    return out


def instance_view(i: Instance) -> Canonical:
    """One instance's part of the view, canonical; the same object again while nothing changed.

    Every field below changes only together with one of the fingerprint's (totals and gauges only in
    a folded metrics message, which moves ``last_seen``/``seq``/``received_intervals``), so an
    instance that sent nothing new is not rebuilt, and the diff skips it by identity."""
    st = i.state
    key = (st.state, st.reason, st.since, i.boot, i.boot_at, i.version, i.interval_s, i.last_seen, i.last_seq,
           i.restarts, i.missing_intervals, i.received_intervals, i.skew_s, i.health, i.detail)
    cached = i.view_cache
    if cached is not None and cached[0] == key:
        return cast(Canonical, cached[1])
    full = {
        "status": st.state, "reason": st.reason, "since": rnd(st.since),
        "boot": i.boot or None, "boot_at": rnd(i.boot_at), "version": i.version or None,
        "interval_s": i.interval_s, "last_seen": rnd(i.last_seen), "seq": i.last_seq, "restarts": i.restarts,
        "missing_intervals": i.missing_intervals, "received_intervals": i.received_intervals,
        "skew_s": rnd(i.skew_s, 1), "totals": Canonical(i.totals), "gauges": Canonical(i.gauges),
        "health": i.health, "detail": i.detail or None,
    }
    view = Canonical((k, v) for k, v in full.items() if v is not None)
    i.view_cache = (key, view)
    return view


def probes_section(ctx: SectionContext) -> dict[str, Any]:
    return {
        t: {"status": p.state.state, "reported_status": p.result.status, "reason": p.state.reason,
            "ts": rnd(p.received_at), "probe_ts": rnd(p.result.ts), "latency_ms": rnd(p.result.latency_ms),
            "metrics": dict(p.result.metrics), "details": dict(p.result.details),
            "error": p.result.error, "period_s": p.result.period_s}
        for t, p in ctx.state.probes.items()
    }


#: The seed's sections, in the order they appear in the view. ``health`` shows the throughput figures
#: of ``metrics`` but comes first in the view (the seed's order), so it computes them itself.
DEFAULT_SECTIONS: tuple[tuple[str, SectionBuilder], ...] = (
    ("meta", meta_section),
    ("health", health_section),
    ("metrics", metrics_section),
    ("capacity", capacity_section),
    ("aggregates", aggregates_section),
    ("errors", errors_section),
    ("services", services_section),
    ("probes", probes_section),
)
