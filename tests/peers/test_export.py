"""`opsdash export`: the Grafana dashboard and the Prometheus rules, checked without servers (the real
Prometheus runs in test_prometheus.py); the rules also through Debian's promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsdash.config import load_config
from opsdash.export import (
    dashboard_expressions,
    grafana_dashboard,
    prometheus_rules,
    rules_yaml,
    translate_metric,
)

ROOT = Path(__file__).resolve().parents[2]


def _promtool_rules(text: str, tmp_path: Path) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: ./run test installs Debian's prometheus package"
    path = tmp_path / "rules.yml"
    path.write_text(text)
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from opsdash.cli import main; sys.exit(main())",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_cli_prints_rules_that_promtool_accepts_and_lists_the_untranslatable(tmp_path: Path) -> None:
    out = _cli("export", "prometheus-rules")
    assert out.returncode == 0, out.stderr
    assert "SUCCESS: 7 rules found" in _promtool_rules(out.stdout, tmp_path)
    doc = yaml.safe_load(out.stdout)
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert set(rules) == {"component_down", "component_degraded", "disk_usage_high", "pg_connections_high",
                          "disk_full_forecast", "view_stale", "opsdash_gateway_unreachable"}
    assert rules["component_down"]["for"] == "30s" and rules["component_down"]["labels"]["severity"] == "critical"
    assert rules["component_degraded"]["for"] == "120s"
    assert rules["disk_usage_high"]["for"] == "60s"
    assert rules["disk_usage_high"]["expr"] == 'max(opsdash_disk_used_ratio{job="opsdash"}) * 100 > 80'
    assert rules["disk_usage_high"]["labels"]["component"] == "disk"
    assert "predict_linear(opsdash_disk_used_ratio" in rules["disk_full_forecast"]["expr"]
    assert "[6h], 86400)) >= 1" in rules["disk_full_forecast"]["expr"]
    assert "offset 30m" in rules["disk_full_forecast"]["expr"]  # the engine's 30 min of trend first
    assert rules["disk_full_forecast"]["keep_firing_for"] == "600s"  # as the engine's built-in
    assert all(r.get("keep_firing_for") == "30s" for n, r in rules.items()
               if n not in ("opsdash_gateway_unreachable", "disk_full_forecast"))
    stale = rules["view_stale"]["expr"]
    assert stale.startswith("(max by (instance)") and stale.endswith(") > 10")
    # error_rate_spike is listed, with why, in the file and on stderr
    assert "#   error_rate_spike: the view carries errors per category only as rolling" in out.stdout
    assert "not translated: error_rate_spike" in out.stderr


def test_job_option_and_bad_job(tmp_path: Path) -> None:
    out = _cli("export", "prometheus-rules", "--job", "ops-gw", "-o", str(tmp_path / "r.yml"))
    assert out.returncode == 0 and out.stdout == ""
    assert 'job=\\"ops-gw\\"' in (tmp_path / "r.yml").read_text()
    bad = _cli("export", "grafana-dashboard", "--job", 'x"} or up{')
    assert bad.returncode == 2 and "--job" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(("rule", "expr"), [
    ({"name": "delivery_down", "metric": "health.components.delivery.status", "op": "==", "value": "down",
      "for_s": 10, "severity": "critical"},
     'max(opsdash_component_status{job="opsdash",component="delivery",status="down"}) == 1'),
    ({"name": "pg_not_healthy", "metric": "health.components.postgres.status", "op": "!=", "value": "healthy"},
     'max(opsdash_component_status{job="opsdash",component="postgres",status="healthy"}) == 0'),
    ({"name": "slow_writes", "metric": "write_p99", "op": ">", "value": 250},
     'max(opsdash_influx_write_latency_seconds{job="opsdash",percentile="p99"}) * 1000 > 250'),
    ({"name": "backlog", "metric": "gauge:delivery:pending_jobs", "op": ">=", "value": 100.5},
     'sum(max by (exported_instance) (opsdash_service_reported_value{job="opsdash",service="delivery",'
     'name="pending_jobs"})) >= 100.5'),
    ({"name": "few_deliveries", "metric": "rate:delivery:webhooks_sent", "op": "<", "value": 1},
     'sum(max by (exported_instance) (rate(opsdash_service_events_total{job="opsdash",service="delivery",'
     'counter="webhooks_sent"}[1m]))) < 1'),
    ({"name": "disk_big", "metric": "capacity:disk.used_pct", "op": ">", "value": 70},
     'max(opsdash_disk_used_ratio{job="opsdash"}) * 100 > 70'),
    ({"name": "files", "metric": "capacity.influxdb.file_count", "op": ">", "value": 900},
     'max(opsdash_influxdb_files{job="opsdash"}) > 900'),
    ({"name": "tenants", "metric": "aggregates.tenants.suspended", "op": ">", "value": 5},
     'max(opsdash_platform_tenants{job="opsdash",state="suspended"}) > 5'),
    ({"name": "auth", "metric": "errors.counts.auth_failures_1h", "op": ">", "value": 100},
     'max(opsdash_errors_last_hour{job="opsdash",kind="auth_failures"}) > 100'),
])
def test_configured_rules_translate(rule: dict[str, Any], expr: str, tmp_path: Path) -> None:
    export = prometheus_rules(None, configured=[rule])
    got = next(r for r in export.rules if r.alert == rule["name"])
    assert got.expr == expr
    assert got.for_s == rule.get("for_s", 0)
    assert got.labels["severity"] == rule.get("severity", "warning")
    if rule["metric"].startswith(("health.components.", "capacity")):
        assert got.labels["component"] == rule["metric"].replace(":", ".").split(".")[2 if "health" in
                                                                                        rule["metric"] else 1]
    _promtool_rules(rules_yaml(export), tmp_path)


@pytest.mark.parametrize(("rule", "why"), [
    ({"name": "x", "metric": "services.ingest.instances", "op": ">", "value": 1}, "no /metrics name carries"),
    ({"name": "x", "metric": "health.components.ingest.status", "op": "==", "value": "broken"},
     "a status compares with one of healthy, degraded, down, unknown"),
    ({"name": "x", "metric": "capacity.disk.used_pct", "op": "==", "value": "high"},
     "capacity.disk.used_pct is a number"),
    ({"name": "x", "metric": "errors_spike:auth_failures", "op": ">=", "value": 3}, "rolling one-hour counts"),
    ({"name": "x", "metric": 'capacity.disk"} or up{', "op": ">", "value": 1}, "not a view path"),
])
def test_untranslatable_rules_are_listed_with_the_reason(rule: dict[str, Any], why: str) -> None:
    export = prometheus_rules(None, configured=[rule])
    assert all(r.alert != "x" for r in export.rules)
    skipped = {s.name: s.reason for s in export.skipped}
    assert why in skipped["x"], skipped


def test_configured_rules_replace_adjust_and_switch_off_builtins() -> None:
    export = prometheus_rules(None, configured=[
        {"name": "component_degraded", "enabled": False},
        {"name": "disk_usage_high", "for_s": 5, "severity": "critical"},
        {"name": "pg_connections_high", "metric": "capacity.postgres.connections_used", "op": ">",
         "value": 80, "keep_firing_s": 0},
    ])
    rules = {r.alert: r for r in export.rules}
    assert "component_degraded" not in rules
    assert "enabled = false" in {s.name: s.reason for s in export.skipped}["component_degraded"]
    assert rules["disk_usage_high"].for_s == 5 and rules["disk_usage_high"].labels["severity"] == "critical"
    assert rules["disk_usage_high"].expr.endswith("* 100 > 80")
    assert rules["pg_connections_high"].expr == \
        'max(opsdash_postgres_connections{job="opsdash",state="used"}) > 80'
    assert rules["pg_connections_high"].keep_firing_s == 0
    assert "keep_firing_for" not in rules_yaml(export).split("pg_connections_high")[1].split("- alert")[0]


def test_translate_metric_names_components() -> None:
    assert translate_metric("capacity.postgres.db_size_bytes", "j", 0) == \
        ('max(opsdash_postgres_database_bytes{job="j"})', {"component": "postgres"}, False)


def test_dashboard_shape() -> None:
    out = _cli("export", "grafana-dashboard")
    assert out.returncode == 0, out.stderr
    dash = json.loads(out.stdout)
    assert dash == grafana_dashboard(load_config(env={}), "opsdash")
    assert dash["schemaVersion"] == 42 and dash["uid"] == "opsdash"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["current"]["value"] == "opsdash"
    assert variables["job"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    kinds = {p["type"] for p in panels}
    assert {"stat", "state-timeline", "timeseries", "gauge"} <= kinds
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and refs
        for t in p["targets"]:
            assert 'job="$job"' in t["expr"], t["expr"]
    titles = {p["title"]: p["type"] for p in panels}
    assert titles["Component status over time"] == "state-timeline"
    assert titles["Disk used"] == "gauge" and titles["Tenants"] == "stat"
    assert titles["Throughput (per second)"] == "timeseries"
    # no two panels overlap
    cells = set()
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_dashboard_follows_the_configured_metric_mapping() -> None:
    config = load_config(env={"OPSDASH_AGGREGATOR__INGEST_RATE": "edge.frames_in"})
    exprs = dict((e, t) for t, e in dashboard_expressions(grafana_dashboard(config)))
    assert any('service="edge",counter="frames_in"' in e for e in exprs)


def test_rules_the_engine_refuses_are_refused_here_too() -> None:
    from alerts.engine import RuleError

    for bad in ({"name": "x", "metric": "health.components.ingest.status", "op": ">", "value": "down"},
                {"name": "x", "metric": "capacity.disk.used_pct", "op": "=~", "value": 1},
                {"name": "x", "metric": "capacity.disk.used_pct", "op": ">", "value": "high"}):
        with pytest.raises(RuleError, match="rule 'x'"):
            prometheus_rules(None, configured=[bad])


def test_the_demo_rules_from_a_config_file_translate(tmp_path: Path) -> None:
    """[[alerts.rules]] as the demo configures them, through --config: wildcards over instances, a
    service gauge, the engine's summary placeholders as Prometheus templates."""
    (tmp_path / "opsdash.toml").write_text("""
[[alerts.rules]]
name = "instance_down"
metric = "services.*.instances.*.status"
op = "=="
value = "down"
for_s = 5
keep_firing_s = 15
severity = "critical"
summary = "{service}/{instance} is down{reason_suffix}"

[[alerts.rules]]
name = "delivery_backlog"
metric = "gauge:delivery:pending_jobs"
op = ">"
value = 60
for_s = 10
summary = "delivery backlog: {value} webhook jobs pending"

[[alerts.rules]]
name = "component_degraded"
enabled = false
""")
    out = _cli("--config", str(tmp_path / "opsdash.toml"), "export", "prometheus-rules")
    assert out.returncode == 0, out.stderr
    _promtool_rules(out.stdout, tmp_path)
    rules = {r["alert"]: r for r in yaml.safe_load(out.stdout)["groups"][0]["rules"]}
    down = rules["instance_down"]
    assert down["expr"] == ('max by (service, exported_instance) (opsdash_instance_status{job="opsdash",'
                            'status="down"}) == 1')
    assert (down["for"], down["keep_firing_for"], down["labels"]["severity"]) == ("5s", "15s", "critical")
    assert down["annotations"]["summary"] == "{{ $labels.service }}/{{ $labels.exported_instance }} is down"
    backlog = rules["delivery_backlog"]
    assert backlog["expr"] == ('sum(max by (exported_instance) (opsdash_service_reported_value{job="opsdash",'
                               'service="delivery",name="pending_jobs"})) > 60')
    assert backlog["annotations"]["summary"] == "delivery backlog: {{ $value }} webhook jobs pending"
    assert "component_degraded" not in rules
    assert "#   component_degraded: switched off in the configuration" in out.stdout
