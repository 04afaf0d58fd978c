"""The pure rule engine: ops, for_s, keep_firing_s, flapping, forecast, spike, config errors."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest

from alerts.config import AlertsConfig, RuleConfig
from alerts.engine import (
    BUILTINS,
    Engine,
    Evaluation,
    RuleError,
    Silence,
    compile_rules,
    fingerprint,
    forecast_full,
    human_duration,
)
from opsdash.config import ConfigError, load_config

T0 = 1_764_236_400.0


def rules(*entries: dict[str, Any], keep: float = 30.0, only: bool = True) -> dict[str, Any]:
    cfg = AlertsConfig(keep_firing_s=keep, rules=[RuleConfig(**e) for e in entries])
    compiled = compile_rules(cfg)
    if only:
        names = {e["name"] for e in entries}
        compiled = {n: r for n, r in compiled.items() if n in names}
    return compiled


def view(used_pct: Any = 50.0, comps: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "meta": {"started_at": T0 - 7200},
        "health": {"components": {c: {"status": s, "reason": f"{c} said so"}
                                  for c, s in (comps or {}).items()}},
        "capacity": {"disk": {"used_pct": used_pct}},
    }
    v.update(extra)
    return v


def firings(evs: list[Evaluation]) -> int:
    """How many times any alert became firing (what a notifier pages on)."""
    seen: dict[str, str] = {}
    n = 0
    for ev in evs:
        for ch in ev.changes:
            status = ch.payload["status"] if ch.payload else "cleared"
            if status == "firing" and seen.get(ch.fingerprint) != "firing":
                n += 1
            seen[ch.fingerprint] = status
    return n


@pytest.mark.parametrize(("op", "threshold", "true_for", "false_for"), [
    (">", 80, [80.5, 99], [80, 10]),
    (">=", 80, [80, 81], [79.9]),
    ("<", 10, [9.9, 0], [10, 11]),
    ("<=", 10, [10, 3], [10.1]),
    ("==", 42, [42], [41.9, 42.1]),
    ("!=", 42, [41, 43], [42]),
])
def test_each_numeric_op(op: str, threshold: float, true_for: list[float], false_for: list[float]) -> None:
    for value in true_for + false_for:
        eng = Engine(rules({"name": "r", "metric": "capacity.disk.used_pct", "op": op, "value": threshold}))
        ev = eng.evaluate(view(value), T0)
        assert bool(ev.section["firing"]) == (value in true_for), (op, value)


@pytest.mark.parametrize(("op", "metric_value", "fires"), [
    ("==", "down", True), ("==", "degraded", False), ("!=", "healthy", True), ("!=", "down", False)])
def test_string_ops(op: str, metric_value: str, fires: bool) -> None:
    eng = Engine(rules({"name": "r", "metric": "health.components.*.status", "op": op, "value": "down"}))
    comps = {"postgres": metric_value} if op == "==" else {"postgres": "healthy" if fires else "down"}
    ev = eng.evaluate(view(comps=comps), T0)
    assert bool(ev.section["firing"]) == fires
    if fires:
        assert ev.section["firing"][0]["labels"] == {"alertname": "r", "component": "postgres",
                                                     "severity": "warning"}


def test_unknown_or_wrong_type_value_is_not_true() -> None:
    eng = Engine(rules({"name": "r", "metric": "capacity.disk.used_pct", "op": "<", "value": 10}))
    for v in (None, "n/a", True, math.nan):
        assert not eng.evaluate(view(v), T0).section["firing"]


def test_for_s_pending_then_firing_at_exactly_for_s() -> None:
    eng = Engine(rules({"name": "r", "metric": "capacity.disk.used_pct", "op": ">", "value": 80, "for_s": 60}))
    ev = eng.evaluate(view(90), T0)
    assert [a["status"] for a in ev.section["pending"]] == ["pending"] and not ev.section["firing"]
    assert eng.evaluate(view(90), T0 + 59).section["pending"]
    ev = eng.evaluate(view(90), T0 + 60)
    firing = ev.section["firing"]
    assert len(firing) == 1 and firing[0]["starts_at"] == T0 and firing[0]["fired_at"] == T0 + 60
    assert firing[0]["value"] == 90


def test_pending_dropped_when_false_before_for_s() -> None:
    eng = Engine(rules({"name": "r", "metric": "capacity.disk.used_pct", "op": ">", "value": 80, "for_s": 60}))
    eng.evaluate(view(90), T0)
    ev = eng.evaluate(view(70), T0 + 30)
    assert not ev.section["pending"] and [c.kind for c in ev.changes] == ["clear"]
    # starts again from zero
    eng.evaluate(view(90), T0 + 31)
    assert not eng.evaluate(view(90), T0 + 90).section["firing"]
    assert eng.evaluate(view(90), T0 + 91).section["firing"]


def test_keep_firing_s_resolves_only_after_held_false() -> None:
    eng = Engine(rules({"name": "r", "metric": "capacity.disk.used_pct", "op": ">", "value": 80,
                        "keep_firing_s": 30}))
    eng.evaluate(view(90), T0)
    for t in range(1, 30):
        ev = eng.evaluate(view(10), T0 + t)
        assert ev.section["firing"], t
        assert not [c for c in ev.changes if c.kind == "resolved"]
    ev = eng.evaluate(view(10), T0 + 30)
    assert not ev.section["firing"]
    [res] = [c for c in ev.changes if c.kind == "resolved"]
    assert res.payload is not None and res.payload["status"] == "resolved"
    assert res.payload["ends_at"] == T0 + 30 and res.payload["starts_at"] == T0
    assert ev.section["recent"][0]["fingerprint"] == res.fingerprint


def test_keep_firing_default_from_section() -> None:
    r = rules({"name": "r", "metric": "capacity.disk.used_pct", "op": ">", "value": 80}, keep=7)
    assert r["r"].keep_firing_s == 7


def test_flapping_input_pages_once() -> None:
    """Down 40 s, up 10 s, down 40 s ... for 10 minutes: one firing, then one resolve at the end."""
    eng = Engine(rules({"name": "component_down"}))
    evs = []
    for t in range(600):
        down = (t % 50) < 40
        evs.append(eng.evaluate(view(comps={"delivery": "down" if down else "healthy"}), T0 + t))
    for t in range(600, 700):
        evs.append(eng.evaluate(view(comps={"delivery": "healthy"}), T0 + t))
    assert firings(evs) == 1
    assert sum(c.kind == "resolved" for ev in evs for c in ev.changes) == 1


def test_builtin_component_down_waits_30_s_and_labels_component() -> None:
    eng = Engine(rules({"name": "component_down"}))
    assert not eng.evaluate(view(comps={"postgres": "down"}), T0).section["firing"]
    ev = eng.evaluate(view(comps={"postgres": "down", "mqtt": "healthy"}), T0 + 30)
    [a] = ev.section["firing"]
    assert a["labels"] == {"alertname": "component_down", "component": "postgres", "severity": "critical"}
    assert a["fingerprint"] == fingerprint(a["labels"])
    assert a["annotations"]["summary"] == "postgres is down: postgres said so"
    assert set(a) >= {"fingerprint", "status", "labels", "annotations", "value", "starts_at", "ends_at",
                      "acked_by", "silenced_until", "inhibited_by"}


def test_fingerprint_is_stable_and_label_order_free() -> None:
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})
    assert len(fingerprint({"a": "1"})) == 16


def test_disk_usage_high_builtin_and_replacement() -> None:
    eng = Engine(compile_rules(AlertsConfig()))
    eng.evaluate(view(85), T0)
    ev = eng.evaluate(view(85), T0 + 60)
    [a] = ev.section["firing"]
    assert a["labels"]["component"] == "disk" and a["annotations"]["summary"] == \
        "disk 85 % used (threshold 80 %)"
    # replaced by name: only the given fields change
    r = compile_rules(AlertsConfig(rules=[RuleConfig(name="disk_usage_high", value=90, severity="critical")]))
    assert (r["disk_usage_high"].value, r["disk_usage_high"].for_s, r["disk_usage_high"].severity) == \
        (90, 60, "critical")


def test_builtin_switched_off() -> None:
    r = compile_rules(AlertsConfig(rules=[RuleConfig(name="component_degraded", enabled=False)]))
    assert "component_degraded" not in r and set(BUILTINS) - set(r) == {"component_degraded"}


def test_pg_connections_high() -> None:
    eng = Engine(rules({"name": "pg_connections_high"}))
    v = view(capacity={"postgres": {"connections_used": 91, "connections_max": 100}})
    eng.evaluate(v, T0)
    [a] = eng.evaluate(v, T0 + 60).section["firing"]
    assert a["labels"]["component"] == "postgres" and a["value"] == 91.0
    assert "91 of 100" in a["annotations"]["summary"]
    v2 = view(capacity={"postgres": {"connections_used": 90, "connections_max": 100}})
    eng2 = Engine(rules({"name": "pg_connections_high"}))
    eng2.evaluate(v2, T0)
    assert not eng2.evaluate(v2, T0 + 60).section["firing"]


def test_series_and_history_style_metrics() -> None:
    v = view(series={"ingest_rate": [[T0 - 1, 10.0], [T0, 500.0]]},
             metrics={"rates": {"delivery": {"webhooks_failed": 3.5}}},
             services={"ingest": {"instances": {
                 "i-1": {"status": "healthy", "gauges": {"queue_depth": 600}},
                 "i-2": {"status": "degraded", "gauges": {"queue_depth": 500}},
                 "i-3": {"status": "down", "gauges": {"queue_depth": 10_000}}}}})
    eng = Engine(rules(
        {"name": "a", "metric": "ingest_rate", "op": ">", "value": 100},
        {"name": "b", "metric": "rate:*:webhooks_failed", "op": ">", "value": 1},
        {"name": "c", "metric": "gauge:ingest:queue_depth", "op": "==", "value": 1100},
        {"name": "d", "metric": "services.*.instances.*.gauges.queue_depth", "op": ">", "value": 550},
        {"name": "e", "metric": "capacity:disk.used_pct", "op": "==", "value": 50}))
    ev = eng.evaluate(v, T0)
    got = {(a["labels"]["alertname"], a["labels"].get("service"), a["labels"].get("instance"),
            a["labels"].get("component")) for a in ev.section["firing"]}
    assert got == {("a", None, None, None), ("b", "delivery", None, None), ("c", "ingest", None, None),
                   ("d", "ingest", "i-1", None), ("d", "ingest", "i-3", None), ("e", None, None, "disk")}


@pytest.mark.parametrize(("entry", "field", "words"), [
    ({"name": "Bad Name", "metric": "ingest_rate", "op": ">", "value": 1}, "name", "slug"),
    ({"name": "x", "metric": "ingest_rate", "op": "=>", "value": 1}, "op", "'=>'"),
    ({"name": "x", "metric": "ingest_rate", "op": ">", "value": "high"}, "value", "string value"),
    ({"name": "x", "metric": "nope:a", "op": ">", "value": 1}, "metric", "unknown series kind"),
    ({"name": "x", "metric": "health..status", "op": ">", "value": 1}, "metric", "empty path"),
    ({"name": "x", "op": ">", "value": 1}, "metric", "required"),
    ({"name": "x", "metric": "ingest_rate", "op": ">", "value": 1, "for_s": -1}, "for_s", ">= 0"),
    ({"name": "x", "metric": "ingest_rate", "op": ">", "value": 1, "severity": "page"}, "severity", "page"),
    ({"name": "disk_usage_high", "keep_firing_s": -5}, "keep_firing_s", ">= 0"),
])
def test_bad_rule_names_rule_and_field(entry: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(RuleError) as exc:
        AlertsConfig(rules=[RuleConfig(**entry)])
    msg = str(exc.value)
    assert f"rule {entry['name']!r}" in msg and f": {field}:" in msg and words in msg


def test_bad_rule_stops_config_loading(tmp_path: Any) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[[alerts.rules]]\nname = "deep_queue"\nmetric = "gauge:ingest:queue_depth"\n'
                 'op = "~"\nvalue = 3\n')
    with pytest.raises(ConfigError) as exc:
        load_config(str(p), env={})
    assert "deep_queue" in str(exc.value) and "op" in str(exc.value)


def test_duplicate_rule() -> None:
    with pytest.raises(RuleError, match="defined twice"):
        AlertsConfig(rules=[RuleConfig(name="a", metric="ingest_rate", op=">", value=1)] * 2)


def test_env_webhook_urls() -> None:
    cfg = load_config(None, env={"OPSDASH_ALERTS__WEBHOOK_URLS": '["http://127.0.0.1:9/h"]'})
    assert cfg.alerts.webhook_urls == ["http://127.0.0.1:9/h"]
    with pytest.raises(ConfigError, match="webhook_urls"):
        load_config(None, env={"OPSDASH_ALERTS__WEBHOOK_URLS": '["ftp://x"]'})


# -- forecast --------------------------------------------------------------------------------------


def test_human_duration() -> None:
    assert human_duration(9 * 3600 + 40 * 60) == "9 h 40 min"
    assert human_duration(45) == "45 s" and human_duration(720) == "12 min"
    assert human_duration(3 * 86400 + 7200) == "3 d 2 h"


def test_forecast_linear_within_10_percent() -> None:
    # 50 % -> 62 % over 6 h: 2 %/h, so 100 % in 19 h from now
    samples = [(T0 - 6 * 3600 + i * 60, 50 + 2 * i / 60) for i in range(361)]
    now = samples[-1][0]
    f = forecast_full(samples, now)
    assert f is not None and abs(f.eta_s - 19 * 3600) <= 0.1 * 19 * 3600
    eng = Engine(rules({"name": "disk_full_forecast"}))
    eng.seed_disk(samples[:-1])
    ev = eng.evaluate(view(samples[-1][1]), now)
    [a] = ev.section["firing"]
    assert a["labels"] == {"alertname": "disk_full_forecast", "component": "disk", "severity": "warning"}
    assert abs(a["value"] - 19 * 3600) <= 0.1 * 19 * 3600
    assert a["annotations"]["summary"].startswith("disk full in 19 h")


def test_forecast_noisy_with_outliers() -> None:
    rnd = random.Random(7)
    samples = [(T0 + i * 60, 60 + 3 * i / 60 + rnd.gauss(0, 1.5)) for i in range(361)]
    for i in range(0, 361, 37):  # temporary files: big spikes
        samples[i] = (samples[i][0], samples[i][1] + 15)
    now = samples[-1][0]
    f = forecast_full(samples, now)
    true_eta = (100 - (60 + 3 * 6)) / 3 * 3600
    assert f is not None and abs(f.eta_s - true_eta) <= 0.15 * true_eta


def test_forecast_flat_no_alert() -> None:
    rnd = random.Random(3)
    samples = [(T0 + i * 60, 95 + rnd.gauss(0, 0.3)) for i in range(361)]
    assert forecast_full(samples, samples[-1][0]) is None
    eng = Engine(rules({"name": "disk_full_forecast"}))
    eng.seed_disk(samples)
    assert not eng.evaluate(view(95), samples[-1][0] + 1).section["firing"]


def test_forecast_slow_growth_beyond_24h_no_alert_and_needs_span() -> None:
    samples = [(T0 + i * 60, 10 + 0.5 * i / 60) for i in range(361)]  # 0.5 %/h from 13 %: 174 h
    assert forecast_full(samples, samples[-1][0]).eta_s > 86400  # type: ignore[union-attr]
    eng = Engine(rules({"name": "disk_full_forecast"}))
    eng.seed_disk(samples)
    assert not eng.evaluate(view(13), samples[-1][0] + 1).section["firing"]
    # 20 minutes of steep rise are not enough evidence
    assert forecast_full([(T0 + i * 60, 50 + i) for i in range(20)], T0 + 1200) is None


def test_forecast_samples_from_ticks_once_a_minute() -> None:
    eng = Engine(rules({"name": "disk_full_forecast"}))
    for t in range(0, 2 * 3600, 1):
        eng.evaluate(view(40 + 10 * t / 3600), T0 + t)  # 10 %/h: 100 % in 4 h at the end
    assert len(eng.disk) == 120
    [a] = eng.section(T0 + 7200)["firing"]
    assert abs(a["value"] - 4 * 3600) < 0.1 * 4 * 3600


# -- spike ---------------------------------------------------------------------------------------


def test_spike_on_steady_rate_with_one_burst() -> None:
    """10 delivery failures a minute for an hour, then one minute of 80: one alert, then resolve."""
    eng = Engine(rules({"name": "error_rate_spike"}))
    minute: list[int] = []  # per-second counts over the run
    evs = []
    for t in range(3 * 3600):
        burst = 3600 <= t < 3660
        minute.append(80 // 60 + (1 if t % 3 == 0 else 0) if burst else (1 if t % 6 == 0 else 0))
        last_1m = sum(minute[-60:])
        last_1h = sum(minute[-3600:])
        v = view(errors={"counts": {"delivery_failures_1h": last_1h, "auth_failures_1h": 0}})
        v["meta"]["started_at"] = T0  # the fold's hour ring started with the run
        ev = eng.evaluate(v, T0 + t, {"errors_1m": {"delivery_failures": last_1m, "auth_failures": 0}})
        evs.append(ev)
        if t < 3600:
            assert not ev.section["firing"], t
    assert firings(evs) == 1
    [res] = [c.payload for ev in evs for c in ev.changes if c.kind == "resolved"]
    assert res is not None and res["labels"]["category"] == "delivery_failures"
    assert res["starts_at"] - T0 < 3660
    fired = next(c.payload for ev in evs for c in ev.changes if c.payload and c.payload["status"] == "firing")
    assert "usually 10.0/min" in fired["annotations"]["summary"]


def test_spike_needs_a_baseline() -> None:
    eng = Engine(rules({"name": "error_rate_spike"}))
    v = view(errors={"counts": {"auth_failures_1h": 500}})
    v["meta"]["started_at"] = T0 - 300  # 5 minutes observed
    assert not eng.evaluate(v, T0, {"errors_1m": {"auth_failures": 500}}).section["firing"]


# -- ack, silence, inhibition, restore ------------------------------------------------------------------


def test_ack_silence_inhibit_fields() -> None:
    eng = Engine(rules({"name": "component_down", "for_s": 0}))
    comps = {"postgres": "down", "delivery": "down"}
    graph = {"nodes": {"postgres": {"impacted_by": []}, "delivery": {"impacted_by": ["postgres"]}}}
    ev = eng.evaluate(view(comps=comps, graph=graph), T0)
    by = {a["labels"]["component"]: a for a in ev.section["firing"]}
    assert by["delivery"]["inhibited_by"] == ["postgres"] and by["postgres"]["inhibited_by"] is None
    fp = by["postgres"]["fingerprint"]
    eng.ack(fp, "alice", T0 + 1)
    eng.add_silence(Silence("s1", {"component": "delivery"}, T0, T0 + 100, "db work", "bob"))
    ev = eng.evaluate(view(comps=comps, graph=graph), T0 + 2)
    by = {a["labels"]["component"]: a for a in ev.section["firing"]}
    assert by["postgres"]["acked_by"] == "alice" and by["delivery"]["silenced_until"] == T0 + 100
    assert {c.fingerprint for c in ev.changes if c.kind == "update"} == {fp, by["delivery"]["fingerprint"]}
    ev = eng.evaluate(view(comps=comps), T0 + 101)
    by = {a["labels"]["component"]: a for a in ev.section["firing"]}
    assert by["delivery"]["silenced_until"] is None and by["delivery"]["inhibited_by"] is None
    assert ev.cleared_silences == ["s1"]
    ev = eng.evaluate(view(comps={}), T0 + 200)
    assert fp in ev.cleared_acks


def test_restore_after_restart_keeps_starts_at_and_does_not_refire() -> None:
    eng = Engine(rules({"name": "component_down"}))
    eng.evaluate(view(comps={"postgres": "down"}), T0)
    ev = eng.evaluate(view(comps={"postgres": "down"}), T0 + 30)
    [payload] = ev.section["firing"]
    eng2 = Engine(rules({"name": "component_down"}))
    assert eng2.restore(msgspec.json.decode(msgspec.json.encode(payload)), T0 + 40)
    ev2 = eng2.evaluate(view(comps={"postgres": "down"}), T0 + 41)
    [again] = ev2.section["firing"]
    assert again["starts_at"] == T0 and again["fired_at"] == T0 + 30
    assert not [c for c in ev2.changes if c.kind == "update"]  # nothing new to say yet


def test_view_stale_only_where_the_input_exists() -> None:
    eng = Engine(rules({"name": "view_stale"}))
    assert eng.evaluate(view(), T0).section["firing"] == []
    ev = eng.evaluate({}, T0 + 1, {"view_age_s": 12.0})
    [a] = ev.section["firing"]
    assert a["labels"] == {"alertname": "view_stale", "component": "aggregator", "severity": "critical"}
    # no input (the aggregator's engine): the state is held, not resolved
    assert eng.evaluate({}, T0 + 100).section["firing"]
    ev = eng.evaluate({}, T0 + 101, {"view_age_s": 0.5})
    assert not ev.section["firing"] and [c.kind for c in ev.changes] == ["resolved"]


def test_next_deadline_is_when_the_earliest_pending_alert_fires() -> None:
    eng = Engine(rules({"name": "a", "metric": "capacity.disk.used_pct", "op": ">", "value": 80, "for_s": 60},
                       {"name": "b", "metric": "capacity.disk.used_pct", "op": ">", "value": 85, "for_s": 10}))
    assert eng.next_deadline() is None
    eng.evaluate(view(90), T0)
    assert eng.next_deadline() == T0 + 10
    eng.evaluate(view(90), T0 + 10)  # b fires at its deadline, a is still pending
    assert eng.next_deadline() == T0 + 60


def test_view_parts_that_are_dict_subclasses_are_walked() -> None:
    """The fold caches an unchanged instance's part of the view as a dict subclass (view_diff.Canonical)."""
    from telemetry_bus.view_diff import Canonical

    inst = Canonical(status="down", reason="lost (Last Will)", gauges=Canonical(queue_depth=5000))
    v = view(services={"dispatcher": {"instances": Canonical({"dispatcher-1": inst})}})
    eng = Engine(rules({"name": "a", "metric": "services.*.instances.*.status", "op": "==", "value": "down"},
                       {"name": "b", "metric": "services.*.instances.*.gauges.queue_depth", "op": ">", "value": 1}))
    got = {(a["labels"]["alertname"], a["labels"]["instance"]) for a in eng.evaluate(v, T0).section["firing"]}
    assert got == {("a", "dispatcher-1"), ("b", "dispatcher-1")}
