"""A real Prometheus (Debian's package) scraping a real gateway, with the exported dashboard and rules.

The stack: private mosquitto, ``opsdash aggregator``, ``opsdash gateway`` (token auth: Prometheus
scrapes with a bearer token, as in compose) and known traffic (tests/peers/fleet.py: ingest 48 + 32
messages per second). Prometheus scrapes every second and evaluates the exported rules every second.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsdash.config import load_config
from opsdash.export import dashboard_expressions, grafana_dashboard, prometheus_rules, rules_yaml
from tests.browser.conftest import Stack
from tests.peers.prom import Prometheus
from tests.support.servers import scaled

pytestmark = pytest.mark.slow

TOKEN = "prom-scrape-token-0123456789"
JOB = "opsdash"


class PromStack:
    def __init__(self, stack: Stack, prom: Prometheus, disk_file: Path, started: float) -> None:
        self.stack = stack
        self.prom = prom
        self.disk_file = disk_file
        self.started = started

    def get(self, path: str) -> bytes:
        req = urllib.request.Request(self.stack.base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read()  # type: ignore[no-any-return]

    def view(self, section: str) -> Any:
        return json.loads(self.get(f"/operator/system/{section}"))


@pytest.fixture(scope="module")
def ps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    work = tmp_path_factory.mktemp("promstack")
    stack = Stack(work)
    prom: Prometheus | None = None
    try:
        stack.env.update({"OPSDASH_AUTH": "token", "OPSDASH_TOKENS": TOKEN})
        disk_file = work / "disk_pct"
        disk_file.write_text("78")
        stack.opsdash("aggregator", "aggregator")
        stack.start_gateway()
        stack.spawn("fleet", ["-m", "tests.peers.fleet", stack.broker.url, str(disk_file)])
        started = time.monotonic()
        # the rules as exported, with the disk rule's for_s shortened the documented way (a configured
        # rule named like a built-in adjusts it), so that the test need not wait 60 s
        export = prometheus_rules(load_config(env={}), JOB, configured=[{"name": "disk_usage_high",
                                                                          "for_s": 2}])
        (work / "rules.yml").write_text(rules_yaml(export))
        prom = Prometheus(work / "prometheus", yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(work / "rules.yml")],
            "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics",
                                "authorization": {"type": "Bearer", "credentials": TOKEN},
                                "static_configs": [{"targets": [f"127.0.0.1:{stack.port}"]}]}],
        })).start()
        yield PromStack(stack, prom, disk_file, started)
    finally:
        if prom is not None:
            prom.stop()
        stack.close()


def _value(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def test_up_is_one_and_the_exposition_is_clean(ps: PromStack) -> None:
    ps.prom.wait("up == 1", lambda: [s for s in ps.prom.query(f'up{{job="{JOB}"}}') if _value(s) == 1])
    # /metrics of the running gateway passes promtool, and counts are integers
    ps.prom.wait("the view's services on /metrics",
                 lambda: b'opsdash_service_events_total{service="ingest"' in ps.get("/metrics"))
    text = ps.get("/metrics").decode()
    promtool = shutil.which("promtool")
    assert promtool
    out = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                         timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    counts = [line for line in text.splitlines()
              if re.match(r"opsdash_(\w+_total|platform_\w+|errors_last_hour|gateway_clients)[{ ]", line)]
    assert len(counts) > 20
    for line in counts:
        assert re.fullmatch(r"-?\d+", line.rsplit(" ", 1)[1]), line


def test_every_panel_expression_of_the_dashboard_returns_data(ps: PromStack) -> None:
    dash = grafana_dashboard(load_config(env={}), JOB)
    exprs = dashboard_expressions(dash)
    assert len(exprs) >= 20

    def substitute(expr: str) -> str:
        return expr.replace("$job", JOB).replace("$__rate_interval", "1m")

    def all_have_data() -> bool:
        return all(ps.prom.query(substitute(e)) for _t, e in exprs)

    try:
        ps.prom.wait("every panel query has data", all_have_data, timeout=45)
    except AssertionError:
        empty = [(t, e) for t, e in exprs if not ps.prom.query(substitute(e))]
        raise AssertionError(f"panels without data: {empty}") from None
    # the status panels decode: every seed component has a code, and ingest is healthy (0)
    codes = {s["metric"]["component"]: _value(s) for s in ps.prom.query(substitute(
        next(e for t, e in exprs if t == "Components now")))}
    assert {"ingest", "evaluator", "dispatcher", "delivery", "postgres", "influxdb", "mqtt",
            "keycloak"} <= set(codes)
    assert codes["ingest"] == 0
    assert codes["keycloak"] == 1  # the fleet's keycloak probe says degraded


def test_exported_rules_load_and_the_disk_rule_fires_on_a_full_disk(ps: PromStack) -> None:
    def loaded() -> list[dict[str, Any]] | bool:
        rules = [r for g in ps.prom.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else False

    rules = ps.prom.wait("every exported rule evaluates", loaded)
    names = {r["name"] for r in rules}
    assert {"component_down", "component_degraded", "disk_usage_high", "pg_connections_high",
            "disk_full_forecast", "view_stale"} <= names
    assert "error_rate_spike" not in names  # listed as not translatable instead
    # at 78 % the disk rule is quiet; keycloak is degraded in the fleet, so that rule is pending
    assert not ps.prom.query('ALERTS{alertname="disk_usage_high"}')
    ps.prom.wait("component_degraded pending for keycloak", lambda: ps.prom.query(
        'ALERTS{alertname="component_degraded",component="keycloak",alertstate="pending"}'))
    ps.disk_file.write_text("95")
    try:
        firing = ps.prom.wait("disk_usage_high firing", lambda: ps.prom.query(
            'ALERTS{alertname="disk_usage_high",alertstate="firing"}'), timeout=30)
        labels = firing[0]["metric"]
        assert labels["severity"] == "warning" and labels["component"] == "disk"
        alerts = ps.prom.api("alerts")["alerts"]
        disk = next(a for a in alerts if a["labels"]["alertname"] == "disk_usage_high")
        assert float(disk["value"]) == pytest.approx(95.0)
        assert disk["annotations"]["summary"] == "disk 95.0 % used (threshold 80 %)"
    finally:
        ps.disk_file.write_text("78")


def test_ingest_rate_from_promql_agrees_with_the_view(ps: PromStack) -> None:
    # both are rates over the last 60 s: wait until the traffic has run for a whole window
    time.sleep(max(0.0, ps.started + scaled(70) - time.monotonic()))
    expr = ('sum(max by (exported_instance) (rate(opsdash_service_events_total{job="opsdash",'
            'service="ingest",counter="messages_received"}[1m])))')
    for _ in range(3):
        promql = _value(ps.prom.query(expr)[0])
        view = ps.view("metrics")["throughput"]["ingest_rate_per_sec"]
        assert view is not None
        print(f"ingest rate: PromQL {promql:.2f}/s, view {view:.2f}/s, "
              f"difference {abs(promql - view) / view:.2%}")
        assert promql == pytest.approx(view, rel=0.05), (promql, view)
        # and both see the known traffic: 80 messages per second, give or take the reporters' timers
        assert view == pytest.approx(80, rel=0.15)
        time.sleep(2)
