"""The ``graph`` section in the real fold's view: statuses from health, edges from config + depends_on."""

from __future__ import annotations

from typing import Any

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import Status, encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.graph import GraphConfig, GraphSection
from tests.bus.simulate import ROOT, FakeReporter

T0 = 1_800_000_000.0
SVCS = ("ingest", "evaluator", "dispatcher", "delivery")
PROBES = ("postgres", "influxdb", "mqtt", "keycloak")


def new_fold() -> Fold:
    cfg = AggregatorConfig()
    fold = Fold(cfg, ROOT, T0)
    fold.view.add("graph", GraphSection(GraphConfig(), [*cfg.expected_services, *cfg.expected_probes]),
                  after="health")
    return fold


def probe(fold: Fold, target: str, status: str, now: float) -> None:
    fold.feed(topics.probe(ROOT, target), encode({"ts": now, "status": status, "period_s": 5}), now)


def run(fold: Fold, reps: list[FakeReporter], pg: str, seconds: int, start: float) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for s in range(seconds):
        now = start + s
        for p in PROBES:
            probe(fold, p, pg if p == "postgres" else "healthy", now)
        for r in reps:
            if r.service == "dispatcher" and pg == "down":
                r.core.set_health("degraded", "postgres unreachable")
            else:
                r.core.set_health("ok")
            r.send(fold, r.take(now), now + 0.1)
        view = fold.tick(now + 0.5).view
    return view


def test_postgres_down_impacts_its_dependents_and_recovers() -> None:
    fold = new_fold()
    reps = [FakeReporter(s, f"{s}-1") for s in SVCS]
    for r in reps:
        r.online(fold, T0)
    view = run(fold, reps, "healthy", 5, T0)
    g = view["graph"]
    assert list(fold.view.names).index("graph") == list(fold.view.names).index("health") + 1
    assert g["edges"] == [["ingest", "mqtt"], ["ingest", "influxdb"], ["evaluator", "influxdb"],
                          ["evaluator", "postgres"], ["dispatcher", "postgres"], ["delivery", "postgres"]]
    assert all(n["impacted_by"] == [] for n in g["nodes"].values()) and g["roots"] == []
    assert set(g["nodes"]) == set(SVCS) | set(PROBES)
    assert "summary" not in g  # None members are dropped (canonical view)

    view = run(fold, reps, "down", 5, T0 + 5)
    g = view["graph"]
    assert g["nodes"]["postgres"] == {"status": "down", "impacted_by": [], "root_cause": True}
    assert g["nodes"]["dispatcher"] == {"status": "degraded", "impacted_by": ["postgres"]}
    assert g["nodes"]["delivery"]["impacted_by"] == ["postgres"]  # still green, but at risk
    assert g["nodes"]["ingest"]["impacted_by"] == []
    assert g["roots"] == [{"component": "postgres", "status": "down",
                           "impacts": ["delivery", "dispatcher", "evaluator"]}]
    assert g["summary"] == "postgres down — 3 components impacted"

    view = run(fold, reps, "healthy", 5, T0 + 10)
    g = view["graph"]
    assert g["roots"] == [] and all(n["impacted_by"] == [] for n in g["nodes"].values())


def test_depends_on_from_status_messages_adds_edges() -> None:
    fold = new_fold()
    billing = [FakeReporter("billing", "billing-1"), FakeReporter("billing", "billing-2")]
    st = Status(state="online", boot="b1", depends_on=["postgres", "redis"])
    fold.feed(topics.status(ROOT, "billing", "billing-1"), encode(st), T0)
    st2 = Status(state="online", boot="b2", depends_on=["dispatcher"])
    fold.feed(topics.status(ROOT, "billing", "billing-2"), encode(st2), T0)
    view = run(fold, billing, "down", 4, T0)
    g = view["graph"]
    for e in (["billing", "postgres"], ["billing", "redis"], ["billing", "dispatcher"]):
        assert e in g["edges"]
    assert g["nodes"]["redis"]["status"] == "unknown"
    assert g["nodes"]["billing"]["impacted_by"] == ["postgres"]
    # billing-2 now declares nothing: only billing-1's edges stay
    fold.feed(topics.status(ROOT, "billing", "billing-2"), encode(Status(state="online", boot="b2")), T0 + 4)
    g = fold.tick(T0 + 4.5).view["graph"]
    assert ["billing", "dispatcher"] not in g["edges"] and ["billing", "redis"] in g["edges"]
