"""The view builder on hand-made state (no messages, no fold): each section from known figures, and the
plug-in shape other sections use."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import ProbeResult
from telemetry_bus.health import Hysteresis
from telemetry_bus.health_rules import instance_health, probe_state, service_state
from telemetry_bus.state import FoldState, Instance, Probe, Service
from telemetry_bus.view import (
    SectionContext,
    ViewBuilder,
    aggregates_section,
    build_view,
    capacity_section,
    errors_section,
    health_section,
    meta_section,
    metrics_section,
    services_section,
)
from telemetry_bus.windows import Ring
from tests.bus.simulate import new_fold

NOW = 2_000_000.5
CFG = AggregatorConfig()


def shown(state: str, reason: str | None = None, since: float = NOW - 100) -> Hysteresis:
    return Hysteresis(state=state, reason=reason, since=since)  # type: ignore[arg-type]


def instance(svc: str, name: str, state: str = "healthy", **kw: Any) -> Instance:
    inst = Instance(svc, name, first_seen=NOW - 500, boot="b1", online=True, last_seen=NOW - 0.5,
                    state=shown(state), **kw)
    return inst


def probe(target: str, status: str = "healthy", age: float = 1.0, **metrics: float) -> Probe:
    res = ProbeResult(ts=NOW - age, status=status, latency_ms=2.5, metrics=metrics,  # type: ignore[arg-type]
                      period_s=5.0)
    return Probe(target, res, received_at=NOW - age, since=NOW - 300, state=shown(status))


def ctx(state: FoldState, **view: Any) -> SectionContext:
    return SectionContext(state, CFG, NOW, True, dict(view))


def test_metrics_rates_come_from_the_rings_over_the_window() -> None:
    st = FoldState.new(CFG, NOW - 1000)
    svc = st.services["ingest"]
    svc.instances["i-1"] = instance("ingest", "i-1")
    ring = svc.rings["messages_received"] = Ring(CFG.window_s + 4)
    last = int(NOW) - 2  # RATE_LAG_S
    for sec in range(last - CFG.window_s + 1, last + 1):
        ring.add(sec, 120.0)
    ring.add(last + 1, 9999.0)  # too recent: not yet in the window
    m = metrics_section(ctx(st))
    assert m["throughput"]["ingest_rate_per_sec"] == 120.0
    assert m["throughput"]["alert_rate_per_sec"] is None  # evaluator has no instance: unknown, not 0
    assert m["rates"] == {"ingest": {"messages_received": 120.0}}
    assert m["latency"]["samples"] == 0 and m["latency"]["influx_write_p99_ms"] is None


def test_health_section_from_hand_made_states() -> None:
    st = FoldState.new(CFG, NOW - 1000)
    st.services["ingest"].instances["i-1"] = instance("ingest", "i-1", gauges={"queue_depth": 7.0})
    st.services["ingest"].instances["i-2"] = instance("ingest", "i-2", state="down",
                                                      gauges={"queue_depth": 500.0})
    st.services["ingest"].state = shown("degraded", "i-2: down")
    st.probes["postgres"] = probe("postgres", connections_used=15, connections_max=100,
                                  db_size_bytes=3 * 2**20)
    st.probes["disk"] = probe("disk", used_pct=10.0)  # capacity probe: not in the grid
    h = health_section(ctx(st, metrics={"throughput": {
        "ingest_rate_per_sec": 5.0, "rules_rate_per_sec": None, "routed_rate_per_sec": None,
        "delivery_rate_per_sec": None}}))
    comps = h["components"]
    assert "disk" not in comps
    assert comps["postgres"]["connections"] == 15 and comps["postgres"]["db_size_bytes"] == 3 * 2**20
    assert comps["keycloak"] == {"kind": "probe", "status": "unknown", "reason": "no result yet",
                                 "latency_ms": None}
    ingest = comps["ingest"]
    assert (ingest["status"], ingest["instances_healthy"], ingest["instances_total"]) == ("degraded", 1, 2)
    assert ingest["queue_depth"] == 7.0  # a down instance's gauge is not summed
    assert ingest["messages_per_sec"] == 5.0  # taken from the metrics section built before
    assert h["status"] == "unknown"  # keycloak/mqtt/influxdb unknown rank above degraded


def test_capacity_and_aggregates_leave_out_stale_figures() -> None:
    st = FoldState.new(CFG, NOW)
    st.probes["disk"] = probe("disk", total_volume_bytes=100 * 2**30, used_volume_bytes=25 * 2**30,
                              used_pct=25.0)
    st.probes["platform"] = probe("platform", "unknown", age=60.0, tenants_active=3)
    cap = capacity_section(ctx(st))
    assert cap["disk"]["total_volume_bytes"] == 100 * 2**30 and cap["disk"]["used_volume_bytes"] == 25 * 2**30
    assert cap["postgres"]["status"] == "unknown" and cap["postgres"]["reason"] == "no result yet"
    assert cap["memory"]["available"] is False
    agg = aggregates_section(ctx(st))
    assert agg["tenants"]["active"] is None and agg["status"] == "unknown"


def test_meta_errors_and_services() -> None:
    st = FoldState.new(CFG, NOW - 10)
    st.seq, st.folded, st.duplicates = 7, 40, 2
    st.services["ingest"].instances["i-1"] = instance("ingest", "i-1", received_intervals=99,
                                                      missing_intervals=1, totals={"x": 5})
    st.category_rings["auth_failures"].add(int(NOW) - 10, 3)
    st.category_rings["auth_failures"].add(int(NOW) - 4000, 50)  # older than the hour
    st.feed_items.appendleft({"id": 1, "type": "x"})
    meta = meta_section(ctx(st))
    assert meta["seq"] == 7 and meta["completeness"] == {"ratio": 0.99, "received_intervals": 99,
                                                         "missing_intervals": 1}
    err = errors_section(ctx(st))
    assert err["counts"]["auth_failures_1h"] == 3 and err["errors"] == [{"id": 1, "type": "x"}]
    svcs = services_section(ctx(st))
    assert svcs["ingest"]["expected"] is True
    assert svcs["ingest"]["instances"]["i-1"]["totals"] == {"x": 5}


def test_health_rules_are_pure_functions_of_state_and_now() -> None:
    inst = instance("ingest", "i-1", gauges={"queue_depth": 2000.0})
    assert instance_health(inst, NOW, CFG) == ("degraded", "queue_depth 2000 > 1000", False)
    inst.last_seen = NOW - 10
    assert instance_health(inst, NOW, CFG)[0::2] == ("down", True)
    inst.online, inst.offline_reason = False, "lost"
    assert instance_health(inst, NOW, CFG) == ("down", "lost (Last Will)", True)
    svc = Service("ingest", {"a": instance("ingest", "a"), "b": instance("ingest", "b", state="down")})
    assert service_state(svc)[0] == "degraded"
    assert probe_state(probe("mqtt", age=16.0), NOW)[0] == "unknown"  # older than 3 periods


def test_a_section_plugs_in_after_another_and_sees_the_view_so_far() -> None:
    seen: list[tuple[bool, list[str]]] = []

    def graph(c: SectionContext) -> dict[str, Any]:
        seen.append((c.full, list(c.view)))
        return {"root_causes": sorted(n for n, comp in c.view["health"]["components"].items()
                                      if comp["status"] == "down")}

    fold = new_fold(NOW)
    fold.view.add("graph", graph, after="health")
    fold.view.add("alerts", lambda c: {"evaluated": c.full}, before="services")
    out = fold.tick(NOW, full=False)
    assert list(out.view) == ["meta", "health", "graph", "metrics", "capacity", "aggregates", "errors",
                              "alerts", "services", "probes", "series"]
    assert seen == [(False, ["meta", "health"])]
    assert out.view["alerts"] == {"evaluated": False}
    assert out.view["graph"] == {"root_causes": []}
    assert fold.tick(NOW + 1).patch["alerts"] == {"evaluated": True}  # sections ride in the patch
    with pytest.raises(ValueError, match="exists already"):
        fold.view.add("graph", graph)
    with pytest.raises(ValueError, match="no view section 'nope'"):
        fold.view.add("x", graph, after="nope")


def test_build_view_is_the_default_sections() -> None:
    st = FoldState.new(CFG, NOW)
    assert list(build_view(st, CFG, NOW)) == ViewBuilder.default().names


def test_preload_series_puts_older_points_first_and_live_ones_win() -> None:
    fold = new_fold(NOW, history_s=5, window_s=5)
    fold.tick(NOW)
    live_ts = fold.series["ingest_rate"][0][0]
    assert live_ts is not None
    fold.preload_series("ingest_rate", [[live_ts - k, float(k)] for k in range(8, 0, -1)] + [[live_ts, -1.0]])
    points = list(fold.series["ingest_rate"])
    assert len(points) == 5 and points[-1][0] == live_ts and points[-1][1] != -1.0
    assert [p[0] for p in points] == [live_ts - 4, live_ts - 3, live_ts - 2, live_ts - 1, live_ts]
    fold.preload_series("write_p99", [[1.0, 2.0]])
    fold.preload_series("new_series", [[1.0, 2.0]])  # nothing live yet: taken as it is
    assert fold.tick(NOW + 1).view["series"]["new_series"] == [[1.0, 2.0]]
