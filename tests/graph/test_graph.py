"""The pure dependency graph: root causes and impacted_by (design.md section 10)."""

from __future__ import annotations

import msgspec
import pytest

from telemetry_bus.graph import (
    DEFAULT_EDGES,
    DependencyGraph,
    GraphConfig,
    GraphConfigError,
    find_cycle,
)

SEED = {"ingest": "healthy", "evaluator": "healthy", "dispatcher": "healthy", "delivery": "healthy",
        "postgres": "healthy", "influxdb": "healthy", "mqtt": "healthy", "keycloak": "healthy"}


def imp(result: object, name: str) -> list[str]:
    return list(result.nodes[name].impacted_by)  # type: ignore[attr-defined]


def test_chain_root_is_the_deepest_bad_node() -> None:
    g = DependencyGraph([("a", "b"), ("b", "c")])
    r = g.evaluate({"a": "degraded", "b": "down", "c": "down"})
    assert imp(r, "a") == ["c"] and imp(r, "b") == ["c"] and imp(r, "c") == []
    assert list(r.roots) == ["c"] and r.roots["c"] == ("a", "b")
    assert r.nodes["c"].root and not r.nodes["b"].root and not r.nodes["a"].root


def test_chain_dependents_in_any_state_are_impacted_through_bad_ones() -> None:
    g = DependencyGraph([("a", "b"), ("b", "c")])
    # A is still green but reaches C through a degraded B: shown impacted (the warning before red)
    r = g.evaluate({"a": "healthy", "b": "degraded", "c": "down"})
    assert imp(r, "a") == ["c"] and imp(r, "b") == ["c"]
    # a healthy B shields A: B is impacted (its own dependency is down), A is not
    r = g.evaluate({"a": "healthy", "b": "healthy", "c": "down"})
    assert imp(r, "b") == ["c"] and imp(r, "a") == []
    assert r.roots == {"c": ("b",)}


def test_diamond_reaches_the_root_once() -> None:
    g = DependencyGraph([("top", "left"), ("top", "right"), ("left", "base"), ("right", "base")])
    r = g.evaluate({"top": "down", "left": "degraded", "right": "down", "base": "down"})
    assert imp(r, "top") == ["base"] and imp(r, "left") == ["base"] and imp(r, "right") == ["base"]
    assert r.roots == {"base": ("left", "right", "top")}
    # only one side bad: top is impacted through it; the healthy side adds nothing
    r = g.evaluate({"top": "degraded", "left": "healthy", "right": "degraded", "base": "healthy"})
    assert list(r.roots) == ["right"] and imp(r, "top") == ["right"] and imp(r, "left") == []


def test_degraded_root() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    r = g.evaluate({**SEED, "influxdb": "degraded", "ingest": "degraded"})
    assert list(r.roots) == ["influxdb"]
    assert imp(r, "ingest") == ["influxdb"] and imp(r, "evaluator") == ["influxdb"]
    assert r.roots["influxdb"] == ("evaluator", "ingest")
    assert r.section()["summary"] == "influxdb degraded — 2 components impacted"


def test_two_roots() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    r = g.evaluate({**SEED, "postgres": "down", "influxdb": "degraded", "evaluator": "down",
                    "delivery": "degraded"})
    assert list(r.roots) == ["postgres", "influxdb"]  # down before degraded
    assert imp(r, "evaluator") == ["influxdb", "postgres"]
    assert imp(r, "dispatcher") == ["postgres"] and imp(r, "delivery") == ["postgres"]
    assert imp(r, "ingest") == ["influxdb"] and imp(r, "mqtt") == []
    assert r.roots["postgres"] == ("delivery", "dispatcher", "evaluator")
    assert r.section()["summary"] == ("postgres down — 3 components impacted; "
                                      "influxdb degraded — 2 components impacted")


def test_down_node_with_down_dependency_is_impacted_not_root() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    r = g.evaluate({**SEED, "postgres": "down", "dispatcher": "down"})
    assert not r.nodes["dispatcher"].root and r.nodes["postgres"].root
    assert imp(r, "dispatcher") == ["postgres"]
    assert list(r.roots) == ["postgres"]


def test_bad_node_without_bad_dependencies_is_its_own_root() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    r = g.evaluate({**SEED, "delivery": "degraded"})
    assert r.roots == {"delivery": ()} and imp(r, "delivery") == []
    assert r.section()["summary"] == "delivery degraded"


def test_unknown_neither_roots_nor_passes_on() -> None:
    g = DependencyGraph([("a", "b"), ("b", "c")])
    r = g.evaluate({"a": "down", "b": "unknown", "c": "down"})
    assert set(r.roots) == {"a", "c"} and imp(r, "a") == [] and imp(r, "b") == ["c"]


def test_recovery_clears_impacts() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    down = g.evaluate({**SEED, "postgres": "down", "dispatcher": "degraded", "delivery": "down"})
    assert imp(down, "delivery") == ["postgres"]
    # postgres back, delivery still catching up: delivery becomes its own root
    r = g.evaluate({**SEED, "delivery": "degraded"})
    assert r.roots == {"delivery": ()} and all(not n.impacted_by for n in r.nodes.values())
    r = g.evaluate(SEED)
    assert r.roots == {} and r.section()["summary"] is None
    assert all(not n.impacted_by and not n.root for n in r.nodes.values())


def test_section_shape() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    s = g.evaluate({**SEED, "postgres": "down"}).section()
    assert s["edges"] == [list(e) for e in DEFAULT_EDGES]
    assert s["nodes"]["delivery"] == {"status": "healthy", "impacted_by": ["postgres"]}  # type: ignore[index]
    assert s["nodes"]["postgres"] == {"status": "down", "impacted_by": [], "root_cause": True}  # type: ignore[index]
    assert s["roots"] == [{"component": "postgres", "status": "down",
                           "impacts": ["delivery", "dispatcher", "evaluator"]}]
    assert "ignored" not in s


# -- edges declared at run time ---------------------------------------------------------------------


def test_declared_edges_add_and_clear() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    g.set_declared("billing", ["postgres", "redis"])
    r = g.evaluate({**SEED, "billing": "degraded", "postgres": "down"})
    assert ("billing", "postgres") in r.edges and ("billing", "redis") in r.edges
    assert r.nodes["redis"].status == "unknown"  # declared but not monitored
    assert imp(r, "billing") == ["postgres"]
    g.set_declared("billing", [])
    r = g.evaluate({**SEED, "billing": "degraded", "postgres": "down"})
    assert not any(a == "billing" for a, _ in r.edges) and "redis" not in r.nodes
    assert set(r.roots) == {"postgres", "billing"}


def test_declared_edge_closing_a_cycle_is_ignored_with_reason() -> None:
    g = DependencyGraph(DEFAULT_EDGES)
    g.set_declared("postgres", ["delivery"])  # delivery -> postgres is configured
    g.set_declared("ingest", ["ingest"])
    r = g.evaluate(SEED)
    assert ("postgres", "delivery") not in r.edges
    assert r.ignored == [(("ingest", "ingest"), "ingest declares a dependency on itself"),
                         (("postgres", "delivery"),
                          "would close the cycle postgres -> delivery -> postgres")]
    assert r.section()["ignored"][1] == {  # type: ignore[index]
        "edge": ["postgres", "delivery"], "reason": "would close the cycle postgres -> delivery -> postgres"}


# -- configuration ----------------------------------------------------------------------------------

KNOWN = set(SEED)


def test_config_defaults_keep_known_ends_only() -> None:
    assert GraphConfig().resolved(KNOWN) == list(DEFAULT_EDGES)
    assert GraphConfig().resolved(KNOWN - {"influxdb"}) == [
        ("ingest", "mqtt"), ("evaluator", "postgres"), ("dispatcher", "postgres"), ("delivery", "postgres")]


def test_config_unknown_name_is_a_clear_error() -> None:
    cfg = msgspec.convert({"edges": [["ingest", "mqtt"], ["delivery", "postgress"]]}, GraphConfig)
    with pytest.raises(GraphConfigError, match=r"graph.edges\[1\] = \['delivery', 'postgress'\]: "
                                                r"'postgress' is not a known component"):
        cfg.resolved(KNOWN)


def test_config_cycle_names_it() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"edges has a cycle: a -> b -> c -> a"):
        msgspec.convert({"edges": [["a", "b"], ["b", "c"], ["c", "a"]]}, GraphConfig)
    with pytest.raises(msgspec.ValidationError, match=r"edges\[0\]: 'a' cannot depend on itself"):
        msgspec.convert({"edges": [["a", "a"]]}, GraphConfig)
    with pytest.raises(GraphConfigError, match="cycle: x -> y -> x"):
        DependencyGraph([("x", "y"), ("y", "x")])


def test_config_bad_name_pattern() -> None:
    with pytest.raises(msgspec.ValidationError, match="edges"):
        msgspec.convert({"edges": [["Ingest", "mqtt"]]}, GraphConfig)


def test_find_cycle() -> None:
    assert find_cycle(DEFAULT_EDGES) is None
    assert find_cycle([("a", "b"), ("b", "c"), ("c", "b")]) == ["b", "c", "b"]


def test_config_errors_through_load_config() -> None:
    from opsdash.config import ConfigError, load_config

    cfg = load_config(env={"OPSDASH_GRAPH__EDGES": '[["ingest", "postgres"]]'})
    assert cfg.graph.edges == [("ingest", "postgres")]
    assert load_config(env={}).graph.edges is None  # the defaults
    with pytest.raises(ConfigError, match=r"environment variable OPSDASH_GRAPH__EDGES: graph.edges\[0\] = "
                                          r"\['ingest', 'redis'\]: 'redis' is not a known component"):
        load_config(env={"OPSDASH_GRAPH__EDGES": '[["ingest", "redis"]]'})
    # redis becomes known once it is an expected probe target
    load_config(env={"OPSDASH_GRAPH__EDGES": '[["ingest", "redis"]]',
                     "OPSDASH_AGGREGATOR__EXPECTED_PROBES": '["postgres", "redis"]'})
    with pytest.raises(ConfigError, match=r"OPSDASH_GRAPH__EDGES: graph\.edges: has a cycle: delivery -> postgres -> delivery"):
        load_config(env={"OPSDASH_GRAPH__EDGES": '[["delivery", "postgres"], ["postgres", "delivery"]]'})
