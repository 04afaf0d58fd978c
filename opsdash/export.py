"""The Prometheus/Grafana migration path (design.md section 13): ``opsdash export ...``.

    grafana_dashboard(config, job) -> dict          a Grafana dashboard (classic JSON model)
    prometheus_rules(config, job) -> RuleExport     design.md section 9's rules as Prometheus rules
    rules_yaml(export) -> str                       a rule file that ``promtool check rules`` accepts

Both read only the gateway's ``/metrics`` names (gateway/rest.py), so what Grafana and Prometheus
show is what the gateway exposes. Every gateway serves the same view, so Prometheus scraping several
gateways holds each figure once per gateway: every expression here first takes ``max`` over the
copies (never ``sum``). The view's per-instance label ``instance`` arrives in Prometheus as
``exported_instance`` (the scrape target keeps ``instance``), and that is what the expressions use.

Pure: no I/O; the command prints the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["PromRule", "RuleExport", "RuleSpec", "Skipped", "dashboard_expressions", "effective_rules",
           "grafana_dashboard", "prometheus_rules", "rules_yaml", "translate_metric"]

#: Grafana's classic dashboard JSON model at this schema version (Grafana 12.x; later versions
#: migrate it forward on load).
SCHEMA_VERSION: Final = 42
DASHBOARD_UID: Final = "opsdash"
STATUS_CODES: Final = {"healthy": 0, "degraded": 1, "down": 2, "unknown": 3}
_STATUS_COLORS: Final = {"healthy": "green", "degraded": "orange", "down": "red", "unknown": "text"}
_OPS: Final = (">", ">=", "<", "<=", "==", "!=")


def _sel(job: str, **labels: str) -> str:
    parts = [f'job="{_q(job)}"'] + [f'{k}="{_q(v)}"' for k, v in labels.items()]
    return "{" + ",".join(parts) + "}"


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _status_code(metric: str, job: str, by: str | None) -> str:
    """A status set (one series per status, 1 for the current one) as one number: 0 healthy,
    1 degraded, 2 down, 3 unknown; ``max`` over gateways (and per ``by``)."""
    parts = [f"(({metric}{_sel(job, status=s)} == 1) * {code})" for s, code in STATUS_CODES.items()]
    group = f"max by ({by}) " if by else "max "
    return f"{group}({' or '.join(parts)})"


def _counter_rate(job: str, service: str, counter: str, window: str) -> str:
    return (f"sum(max by (exported_instance) (rate(opsdash_service_events_total"
            f"{_sel(job, service=service, counter=counter)}[{window}])))")


# -- rules ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One effective alert rule (alerts.engine.Rule's fields: built-ins merged with ``[[alerts.rules]]``)."""

    name: str
    metric: str
    op: str
    value: float | str
    for_s: float = 0
    severity: str = "warning"
    summary: str = ""
    keep_firing_s: float = 30.0


@dataclass(frozen=True, slots=True)
class PromRule:
    alert: str
    expr: str
    for_s: float
    keep_firing_s: float | None
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    reason: str


@dataclass
class RuleExport:
    job: str
    rules: list[PromRule] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Untranslatable(Exception):
    """A rule that has no PromQL equivalent over /metrics; the message says why."""


_METRIC_RE: Final = re.compile(r"^[a-z0-9_.:*-]+$")
_NAME: Final = r"[a-z0-9][a-z0-9_.-]*"
#: The Prometheus summaries of the built-ins (theirs use the engine's own placeholders).
BUILTIN_SUMMARIES: Final = {
    "component_down": "{{ $labels.component }} is down",
    "component_degraded": "{{ $labels.component }} is degraded",
    "disk_usage_high": 'disk {{ $value | printf "%.1f" }} % used (threshold 80 %)',
    "pg_connections_high": 'PostgreSQL connections at {{ $value | printf "%.0f" }} % of max',
    "disk_full_forecast": "at the last 6 h's trend the disk is full within 24 h",
    "view_stale": "gateway {{ $labels.instance }} has had no view for {{ $value }} s",
}
_PLACEHOLDERS: Final = {"value": "{{ $value }}", "component": "{{ $labels.component }}",
                        "service": "{{ $labels.service }}", "instance": "{{ $labels.exported_instance }}",
                        "reason_suffix": ""}


def _status_expr(metric: str, job: str, value: float | str, by: str | None, **labels: str) -> str:
    if not isinstance(value, str) or value not in STATUS_CODES:
        raise Untranslatable(f"a status compares with one of {', '.join(STATUS_CODES)}, got {value!r}")
    group = f"max by ({by}) " if by else "max"
    return f"{group}({metric}{_sel(job, **labels, status=value)})"


def translate_metric(metric: str, job: str, value: float | str) -> tuple[str, dict[str, str], bool]:
    """(PromQL of the metric's value, static labels, is-a-status-set) for a rule's ``metric``.

    A status set is 1 for the current status: the rule then compares it with 1 (``==``) or 0 (``!=``).
    Raises Untranslatable with the reason.
    """
    if not _METRIC_RE.match(metric):
        raise Untranslatable(f"metric {metric!r} is not a view path or history series name")
    if metric.startswith("capacity:"):
        metric = "capacity." + metric.removeprefix("capacity:")
    parts = metric.split(":") if ":" in metric else metric.split(".")
    j = job
    match parts:
        case ["health", "status"]:
            return _status_expr("opsdash_status", j, value, None), {}, True
        case ["health", "components", "*", "status"]:
            return _status_expr("opsdash_component_status", j, value, "component"), {}, True
        case ["health", "components", c, "status"]:
            return (_status_expr("opsdash_component_status", j, value, None, component=c),
                    {"component": c}, True)
        case ["services", svc, "instances", inst, "status"]:
            labels = {k: v for k, v in (("service", svc), ("exported_instance", inst)) if v != "*"}
            return (_status_expr("opsdash_instance_status", j, value, "service, exported_instance", **labels),
                    {}, True)
        case ["health", "components", c, "latency_ms"] if c != "*":
            return (f"max(opsdash_component_latency_seconds{_sel(j, component=c)}) * 1000",
                    {"component": c}, False)
        case ["metrics", "throughput", k] if k.endswith("_rate_per_sec"):
            return f"max(opsdash_rate_per_second{_sel(j, rate=k.removesuffix('_rate_per_sec'))})", {}, False
        case ["metrics", "latency", k] if re.fullmatch(r"influx_write_p(50|95|99)_ms", k):
            p = k.split("_")[2]
            return f"max(opsdash_influx_write_latency_seconds{_sel(j, percentile=p)}) * 1000", {}, False
        case ["write_p50" | "write_p95" | "write_p99" as k]:
            p = k.split("_")[1]
            return f"max(opsdash_influx_write_latency_seconds{_sel(j, percentile=p)}) * 1000", {}, False
        case [k] if k.endswith("_rate") and k.removesuffix("_rate") in (
                "ingest", "alert", "delivery", "write", "rules", "routed", "delivery_failed"):
            # the history series is a 1 s point; /metrics has the view's 60 s rate (the closest)
            return f"max(opsdash_rate_per_second{_sel(j, rate=k.removesuffix('_rate'))})", {}, False
        case ["capacity", "disk", "used_pct"]:
            return f"max(opsdash_disk_used_ratio{_sel(j)}) * 100", {"component": "disk"}, False
        case ["capacity", "disk", k] if k.endswith("_bytes"):
            return (f"max(opsdash_disk_bytes{_sel(j, volume=k.removesuffix('_bytes'))})",
                    {"component": "disk"}, False)
        case ["capacity", "postgres", "db_size_bytes"]:
            return f"max(opsdash_postgres_database_bytes{_sel(j)})", {"component": "postgres"}, False
        case ["capacity", "postgres", "connections_used" | "connections_max" as k]:
            st = k.removeprefix("connections_")
            return f"max(opsdash_postgres_connections{_sel(j, state=st)})", {"component": "postgres"}, False
        case ["capacity", "postgres", "connections_used_pct"]:
            return (f"100 * max(opsdash_postgres_connections{_sel(j, state='used')})"
                    f" / max(opsdash_postgres_connections{_sel(j, state='max')})",
                    {"component": "postgres"}, False)
        case ["capacity", "influxdb", "file_count"]:
            return f"max(opsdash_influxdb_files{_sel(j)})", {"component": "influxdb"}, False
        case ["capacity", "influxdb", "file_limit"]:
            return f"max(opsdash_influxdb_file_limit{_sel(j)})", {"component": "influxdb"}, False
        case ["aggregates", ("tenants" | "devices" | "alerts" | "integrations") as e, k]:
            return f"max(opsdash_platform_{e}{_sel(j, state=k)})", {}, False
        case ["errors", "counts", k] if k.endswith("_1h"):
            return f"max(opsdash_errors_last_hour{_sel(j, kind=k.removesuffix('_1h'))})", {}, False
        case ["meta", "completeness", "ratio"]:
            return f"min(opsdash_data_completeness_ratio{_sel(j)})", {}, False
        case ["rate", svc, counter] if "*" not in svc + counter:
            return _counter_rate(j, svc, counter, "1m"), {}, False
        case ["gauge", svc, gauge] if "*" not in svc + gauge:
            return (f"sum(max by (exported_instance) (opsdash_service_reported_value"
                    f"{_sel(j, service=svc, name=gauge)}))"), {}, False
        case ["view_age_s"]:
            # per gateway; one that never had a view has no age, only the stale flag (counted as "ever")
            return (f"(max by (instance) (opsdash_gateway_view_age_seconds{_sel(j)})"
                    f" or max by (instance) (opsdash_gateway_view_stale{_sel(j)}) * 1e9)"), {}, False
        case ["disk_full_in_s"]:
            return f"opsdash_disk_used_ratio{_sel(j)}", {"component": "disk"}, False  # see _translate
        case ["errors_spike", _]:
            raise Untranslatable(
                "the view carries errors per category only as rolling one-hour counts "
                "(opsdash_errors_last_hour), not as counters, so the last minute's count cannot be "
                "recovered in PromQL (a rolling count's change mixes new errors with ones aging out); "
                "opsdash keeps evaluating it (design.md section 9)")
    raise Untranslatable(f"no /metrics name carries {metric!r} (docs/deploy.md section 7 lists what does)")


def effective_rules(config: Any,
                    configured: Iterable[Any] | None = None) -> tuple[list[RuleSpec], list[Skipped]]:
    """The rules opsdash evaluates (alerts.engine.compile_rules: built-ins adjusted, replaced or
    switched off by ``[[alerts.rules]]``), and the switched-off ones. ``configured`` (mappings or
    RuleConfig) replaces the configuration's rules."""
    import msgspec

    from alerts.config import AlertsConfig, RuleConfig
    from alerts.engine import compile_rules

    alerts = getattr(config, "alerts", None)
    if not isinstance(alerts, AlertsConfig):
        alerts = AlertsConfig()
    if configured is not None:
        rules = [r if isinstance(r, RuleConfig) else msgspec.convert(r, RuleConfig) for r in configured]
        alerts = msgspec.structs.replace(alerts, rules=rules)
    compiled = compile_rules(alerts)
    specs = [RuleSpec(r.name, r.metric, r.op, r.value, r.for_s, r.severity, r.summary, r.keep_firing_s)
             for r in compiled.values()]
    off = [Skipped(r.name, "switched off in the configuration (enabled = false)")
           for r in alerts.rules if not r.enabled]
    return specs, off


def prometheus_rules(config: Any, job: str = "opsdash",
                     configured: Iterable[Any] | None = None) -> RuleExport:
    """design.md section 9's rules, as opsdash evaluates them, as Prometheus alerting rules."""
    from alerts.engine import BUILTINS

    out = RuleExport(job=job)
    specs, off = effective_rules(config, configured)
    for spec in specs:
        try:
            out.rules.append(_translate(spec, job, BUILTINS.get(spec.name)))
        except Untranslatable as exc:
            out.skipped.append(Skipped(spec.name, str(exc)))
    out.skipped += off
    return out


def _translate(spec: RuleSpec, job: str, builtin: Any) -> PromRule:
    value_expr, labels, status_set = translate_metric(spec.metric, job, spec.value)
    op, value = spec.op, spec.value
    if status_set:
        if op not in ("==", "!="):
            raise Untranslatable(f"a status compares only with == or !=, got {op!r}")
        expr = f"{value_expr} == {1 if op == '==' else 0}"
    elif isinstance(value, str):
        raise Untranslatable(f"{spec.metric} is a number; {value!r} is not")
    elif spec.metric == "disk_full_in_s":
        # full within `value` seconds at the trend of the last 6 h, once there are 30 min of it
        # (the engine's FORECAST_MIN_SPAN_S)
        if op not in ("<", "<="):
            raise Untranslatable(f"disk_full_in_s translates only with < or <=, got {op!r}")
        expr = (f"max(predict_linear(opsdash_disk_used_ratio{_sel(job)}[6h], {_num(value)})) >= 1"
                f" and on() count(opsdash_disk_used_ratio{_sel(job)} offset 30m) > 0")
        labels = {"component": "disk"}
    else:
        expr = f"{value_expr} {op} {_num(value)}"
    summary = spec.summary
    if builtin is not None and summary == builtin.summary and spec.name in BUILTIN_SUMMARIES:
        summary = BUILTIN_SUMMARIES[spec.name]
    else:
        summary = _prom_summary(spec)
    return PromRule(spec.name, expr, spec.for_s, spec.keep_firing_s, {"severity": spec.severity, **labels},
                    {"summary": summary, "source": "opsdash export prometheus-rules (design.md section 9)"})


def _prom_summary(spec: RuleSpec) -> str:
    """The engine's ``{placeholders}`` as Prometheus templates; a summary with others falls back."""
    out = spec.summary
    for key, template in _PLACEHOLDERS.items():
        out = out.replace("{" + key + "}", template)
    if re.search(r"(?<!\{)\{[a-z_]+\}(?!\})", out):
        return f"{spec.name}: {spec.metric} {spec.op} {spec.value!r} (now {{{{ $value }}}})"
    return out


def _num(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


def _dur(seconds: float) -> str:
    s = round(seconds * 1000)
    return f"{s // 1000}s" if s % 1000 == 0 else f"{s}ms"


def _y(value: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(value, ensure_ascii=False)


def rules_yaml(export: RuleExport) -> str:
    lines = [
        "# Prometheus alerting rules exported by `opsdash export prometheus-rules` from design.md",
        f"# section 9's rules, over the gateway's /metrics (job {export.job!r}).",
        "# Load with rule_files in prometheus.yml; check with `promtool check rules FILE`.",
    ]
    if export.skipped:
        lines.append("#")
        lines.append("# Not translated (opsdash keeps evaluating these itself):")
        for s in export.skipped:
            lines.append(f"#   {s.name}: {s.reason}")
    lines += ["groups:", "  - name: opsdash", "    rules:"]
    for r in export.rules:
        lines.append(f"      - alert: {r.alert}")
        lines.append(f"        expr: {_y(r.expr)}")
        if r.for_s:
            lines.append(f"        for: {_dur(r.for_s)}")
        if r.keep_firing_s:
            lines.append(f"        keep_firing_for: {_dur(r.keep_firing_s)}")
        lines.append("        labels:")
        lines += [f"          {k}: {_y(v)}" for k, v in r.labels.items()]
        lines.append("        annotations:")
        lines += [f"          {k}: {_y(v)}" for k, v in r.annotations.items()]
    # a gateway Prometheus cannot scrape shows nothing at all: say so (Prometheus-side only)
    lines += [
        "      - alert: opsdash_gateway_unreachable",
        f"        expr: {_y(f'up{_sel(export.job)} == 0')}",
        "        for: 30s",
        "        labels:",
        f"          severity: {_y('critical')}",
        "        annotations:",
        f"          summary: {_y('Prometheus cannot scrape the opsdash gateway {{ $labels.instance }}')}",
        f"          source: {_y('opsdash export prometheus-rules (Prometheus only: scrape health)')}",
    ]
    return "\n".join(lines) + "\n"


# -- the Grafana dashboard --------------------------------------------------------------------------

_DS: Final = {"type": "prometheus", "uid": "${datasource}"}


class _Layout:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "panels": [], "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def _id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def _targets(*queries: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"refId": chr(ord("A") + i), "datasource": _DS, "expr": expr, "legendFormat": legend,
             "range": True, "instant": False, "editorMode": "code"}
            for i, (expr, legend) in enumerate(queries)]


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def _status_mappings() -> list[dict[str, Any]]:
    return [{"type": "value", "options": {
        str(code): {"text": s, "color": _STATUS_COLORS[s], "index": code}
        for s, code in STATUS_CODES.items()}}]


def _panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *,
           unit: str = "short", min_: float | None = None, max_: float | None = None,
           thresholds: dict[str, Any] | None = None, mappings: list[dict[str, Any]] | None = None,
           options: dict[str, Any] | None = None, custom: dict[str, Any] | None = None,
           decimals: int | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "mappings": mappings or [],
                                "thresholds": thresholds or _thresholds((None, "green")),
                                "color": {"mode": "thresholds" if kind != "timeseries"
                                          else "palette-classic"}}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom is not None:
        defaults["custom"] = custom
    return {"type": kind, "title": title, "description": description, "datasource": _DS,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options or {}}


def _stat_options(text_mode: str = "auto", graph: str = "none") -> dict[str, Any]:
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto", "textMode": text_mode, "colorMode": "background",
            "graphMode": graph, "justifyMode": "auto", "wideLayout": True, "showPercentChange": False}


def _gauge_options() -> dict[str, Any]:
    return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto", "showThresholdLabels": False, "showThresholdMarkers": True,
            "minVizHeight": 75, "minVizWidth": 75, "sizing": "auto"}


def _ts_options() -> dict[str, Any]:
    return {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom", "calcs": []},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def _ts_custom() -> dict[str, Any]:
    return {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False, "axisPlacement": "auto"}


def _split(path: str) -> tuple[str, str]:
    service, _, metric = path.partition(".")
    return service, metric


def grafana_dashboard(config: Any, job: str = "opsdash") -> dict[str, Any]:
    """The dashboard's sections as Grafana panels (classic JSON model, ``schemaVersion`` 42).

    Variables: ``datasource`` (any Prometheus data source) and ``job`` (default ``job``).
    """
    agg = getattr(config, "aggregator", None)

    def mapped(key: str, default: str) -> tuple[str, str]:
        return _split(str(getattr(agg, key, default) or default))

    J = "$job"
    lay = _Layout()
    rate_w = "$__rate_interval"

    lay.row("Health")
    lay.add(_panel("stat", "Platform", "The worst component (the view's health.status).",
                   _targets((_status_code("opsdash_status", J, None), "platform")),
                   mappings=_status_mappings(), options=_stat_options("value")), 4, 6)
    lay.add(_panel("stat", "Components now", "Each component's status as the view has it now.",
                   _targets((_status_code("opsdash_component_status", J, "component"), "{{component}}")),
                   mappings=_status_mappings(), options=_stat_options("value_and_name")), 20, 6)
    lay.add(_panel("state-timeline", "Component status over time",
                   "0 healthy, 1 degraded, 2 down, 3 unknown, as scraped (the scrape interval is the "
                   "resolution: opsdash itself shows a change within a second).",
                   _targets((_status_code("opsdash_component_status", J, "component"), "{{component}}")),
                   mappings=_status_mappings(),
                   options={"mergeValues": True, "showValue": "never", "alignValue": "left",
                            "rowHeight": 0.9, "legend": {"showLegend": False, "displayMode": "list",
                                                         "placement": "bottom"},
                            "tooltip": {"mode": "single", "sort": "none"}},
                   custom={"fillOpacity": 80, "lineWidth": 0}), 16, 9)
    lay.add(_panel("stat", "View age", "Seconds since the gateway last received the view "
                   "(over 10 s: the aggregator is not publishing).",
                   _targets((f"max(opsdash_gateway_view_age_seconds{_sel(J)})", "age")), unit="s",
                   thresholds=_thresholds((None, "green"), (5, "orange"), (10, "red")),
                   options=_stat_options("value", "area"), decimals=1), 4, 9)
    lay.add(_panel("stat", "Data completeness", "Share of the reporters' intervals that arrived.",
                   _targets((f"min(opsdash_data_completeness_ratio{_sel(J)})", "completeness")),
                   unit="percentunit", min_=0, max_=1,
                   thresholds=_thresholds((None, "red"), (0.95, "orange"), (0.99, "green")),
                   options=_stat_options("value", "area"), decimals=2), 4, 9)

    lay.row("Throughput and latency")
    flows = [("ingest", mapped("ingest_rate", "ingest.messages_received")),
             ("written", mapped("write_rate", "ingest.messages_written")),
             ("alerts", mapped("alert_rate", "evaluator.alerts_created")),
             ("rules", mapped("rules_rate", "evaluator.rules_evaluated")),
             ("routed", mapped("routed_rate", "dispatcher.alerts_routed")),
             ("deliveries", mapped("delivery_rate", "delivery.webhooks_sent")),
             ("delivery failures", mapped("delivery_failed_rate", "delivery.webhooks_failed"))]
    lay.add(_panel("timeseries", "Throughput (per second)",
                   "Rates computed by Prometheus from the counter totals of every instance "
                   "(opsdash_service_events_total), the same counters as the view's metrics.",
                   _targets(*[(_counter_rate(J, svc, ctr, rate_w), label) for label, (svc, ctr) in flows]),
                   unit="reqps", min_=0, options=_ts_options(), custom=_ts_custom()), 12, 8)
    lay.add(_panel("timeseries", "Counter rates by service",
                   "Every counter of every service, per second.",
                   _targets((f"sum by (service, counter) (max by (service, exported_instance, counter) "
                             f"(rate(opsdash_service_events_total{_sel(J)}[{rate_w}])))",
                             "{{service}} {{counter}}")),
                   unit="reqps", min_=0, options=_ts_options(), custom=_ts_custom()), 12, 8)
    lay.add(_panel("timeseries", "Write latency", "InfluxDB write latency p50/p95/p99 over the view's "
                   "60 s window (quantiles of the merged histograms, relative error < 1 %).",
                   _targets((f"max by (percentile) (opsdash_influx_write_latency_seconds{_sel(J)})",
                             "{{percentile}}")),
                   unit="s", min_=0, options=_ts_options(), custom=_ts_custom()), 12, 8)
    lay.add(_panel("timeseries", "Instances not healthy", "Instances per service by status.",
                   _targets((f"sum by (service, status) (max by (service, exported_instance, status) "
                             f"(opsdash_instance_status{_sel(J)}))", "{{service}} {{status}}")),
                   min_=0, decimals=0, options=_ts_options(), custom=_ts_custom()), 12, 8)

    lay.row("Capacity")
    pct = _thresholds((None, "green"), (0.8, "orange"), (0.9, "red"))
    lay.add(_panel("gauge", "Disk used", "Share of the data volume in use (the seed's 80 % warning).",
                   _targets((f"max(opsdash_disk_used_ratio{_sel(J)})", "disk")),
                   unit="percentunit", min_=0, max_=1, thresholds=pct, options=_gauge_options()), 6, 7)
    lay.add(_panel("gauge", "PostgreSQL connections", "Connections in use / max_connections.",
                   _targets((f"max(opsdash_postgres_connections{_sel(J, state='used')}) / "
                             f"max(opsdash_postgres_connections{_sel(J, state='max')})", "connections")),
                   unit="percentunit", min_=0, max_=1, thresholds=pct, options=_gauge_options()), 6, 7)
    lay.add(_panel("gauge", "InfluxDB files", "Data files / the configured file limit.",
                   _targets((f"max(opsdash_influxdb_files{_sel(J)}) / "
                             f"max(opsdash_influxdb_file_limit{_sel(J)})", "files")),
                   unit="percentunit", min_=0, max_=1, thresholds=pct, options=_gauge_options()), 6, 7)
    lay.add(_panel("stat", "Database size", "Size of the platform database.",
                   _targets((f"max(opsdash_postgres_database_bytes{_sel(J)})", "database")),
                   unit="bytes", options=_stat_options("value", "area")), 6, 7)
    lay.add(_panel("gauge", "Memory by container or service",
                   "Memory in use / its limit (Docker, or cgroup v2 / /proc where there is no Docker).",
                   _targets((f"max by (container) (opsdash_container_memory_bytes{_sel(J)}) / "
                             f"max by (container) (opsdash_container_memory_limit_bytes{_sel(J)})",
                             "{{container}}")),
                   unit="percentunit", min_=0, max_=1, thresholds=pct, options=_gauge_options()), 12, 7)
    lay.add(_panel("timeseries", "Memory in use", "Bytes per container or service.",
                   _targets((f"max by (container) (opsdash_container_memory_bytes{_sel(J)})",
                             "{{container}}")),
                   unit="bytes", min_=0, options=_ts_options(), custom=_ts_custom()), 12, 7)

    lay.row("Platform")
    for entity, title in (("tenants", "Tenants"), ("devices", "Devices"), ("alerts", "Alerts"),
                          ("integrations", "Integrations")):
        lay.add(_panel("stat", title, f"Platform {entity} by state (platform probe).",
                       _targets((f"max by (state) (opsdash_platform_{entity}{_sel(J)})", "{{state}}")),
                       decimals=0, thresholds=_thresholds((None, "blue")),
                       options={**_stat_options("value_and_name"), "colorMode": "value"}), 6, 5)

    lay.row("Errors")
    lay.add(_panel("timeseries", "Errors over the last hour", "Errors of each category over the "
                   "last hour (a rolling count), as scraped.",
                   _targets((f"max by (kind) (opsdash_errors_last_hour{_sel(J)})", "{{kind}}")),
                   min_=0, decimals=0, options=_ts_options(), custom=_ts_custom()), 16, 7)
    lay.add(_panel("stat", "Quarantined messages", "Messages the aggregator refused (per second).",
                   _targets((f"max(rate(opsdash_quarantined_messages_total{_sel(J)}[{rate_w}]))",
                             "quarantined")),
                   unit="reqps", thresholds=_thresholds((None, "green"), (0.1, "orange")),
                   options=_stat_options("value", "area")), 8, 7)

    return {
        "uid": DASHBOARD_UID,
        "title": "opsdash: platform operator view",
        "description": "The opsdash dashboard's sections over the gateway's /metrics "
                       "(opsdash export grafana-dashboard; docs/deploy.md).",
        "tags": ["opsdash"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
            "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [],
             "refresh": 1, "regex": "", "skipUrlSync": False},
            {"name": "job", "label": "Job", "type": "query", "datasource": _DS,
             "definition": "label_values(opsdash_gateway_view_seq, job)",
             "query": {"query": "label_values(opsdash_gateway_view_seq, job)", "refId": "job",
                       "qryType": 1},
             "current": {"selected": True, "text": job, "value": job},
             "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 2,
             "regex": "", "skipUrlSync": False, "sort": 1},
        ]},
        "panels": lay.panels,
    }


def dashboard_expressions(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of a dashboard, rows included."""
    out: list[tuple[str, str]] = []

    def walk(panels: Iterable[Mapping[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets") or []:
                out.append((str(p.get("title")), str(t["expr"])))
            walk(p.get("panels") or [])

    walk(dashboard.get("panels") or [])
    return out
