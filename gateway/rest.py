"""Pure renderings of the view for the REST endpoints: the seed's JSON shapes, the series, /metrics.

Nothing here computes a figure: it reshapes what the aggregator published. The view is canonical
(no ``null`` members, docs/view.md), so the seed's documented fields that are unknown are put back
as ``null`` from a small template of the seed's keys (seed: "API Endpoints"); extra fields stay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

__all__ = [
    "SEED_SECTIONS",
    "SERIES_NAME",
    "PromWriter",
    "SeriesQueryError",
    "prometheus_text",
    "section",
    "series_query",
]

SEED_SECTIONS: Final = ("health", "metrics", "capacity", "aggregates", "errors")

#: Component fields of the seed's health example, per component; every component gets ``status``.
_COMPONENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "postgres": ("latency_ms", "connections", "max_connections"),
    "influxdb": ("latency_ms", "file_count"),
    "mqtt": ("connected_clients",),
    "keycloak": ("latency_ms",),
    "ingest": ("queue_depth",),
    "evaluator": (),
    "dispatcher": (),
    "delivery": ("pending_jobs",),
}

_TEMPLATES: Final[dict[str, dict[str, Any]]] = {
    "health": {"status": None, "checked_at": None},
    "metrics": {
        "throughput": {"ingest_rate_per_sec": None, "alert_rate_per_sec": None,
                       "delivery_rate_per_sec": None},
        "latency": {"influx_write_p50_ms": None, "influx_write_p95_ms": None,
                    "influx_write_p99_ms": None},
        "period": "last_60_seconds",
    },
    "capacity": {
        "disk": {"postgres_data_gb": None, "influxdb_data_gb": None, "total_volume_gb": None,
                 "used_pct": None},
        "postgres": {"db_size_mb": None, "connections_used": None, "connections_max": None},
        "influxdb": {"file_count": None, "file_limit": None},
    },
    "aggregates": {
        "tenants": {"active": None, "suspended": None, "total": None},
        "devices": {"registered": None, "online": None, "stale": None},
        "alerts": {"open": None, "closed_today": None, "triggered_today": None},
        "integrations": {"total": None, "active": None},
    },
    "errors": {
        "counts": {"ingest_failures_1h": None, "delivery_failures_1h": None, "auth_failures_1h": None,
                   "quarantined_1h": None},
    },
}
_ERROR_FIELDS: Final = ("timestamp", "service", "type", "message")


def _fill(template: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """``value`` (a dict, or anything else meaning unknown) with the template's missing keys added."""
    out: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
    for key, default in template.items():
        if isinstance(default, dict):
            out[key] = _fill(default, out.get(key))
        elif out.get(key) is None:
            out[key] = default
    return out


#: The seed's size fields and their decimal units, derived from the view's byte counts
#: (``(section, byte field, seed field, divisor, decimals)``; docs/view.md "Units").
_SIZES: Final = (
    ("disk", "postgres_data_bytes", "postgres_data_gb", 1e9, 3),
    ("disk", "influxdb_data_bytes", "influxdb_data_gb", 1e9, 3),
    ("disk", "total_volume_bytes", "total_volume_gb", 1e9, 3),
    ("disk", "used_volume_bytes", "used_volume_gb", 1e9, 3),
    ("postgres", "db_size_bytes", "db_size_mb", 1e6, 1),
    ("influxdb", "data_bytes", "data_gb", 1e9, 3),
)


def _seed_sizes(capacity: Any) -> Any:
    """The capacity section with the seed's GB / MB fields added (decimal: 1 GB = 10^9 bytes)."""
    if not isinstance(capacity, dict):
        return capacity
    out = dict(capacity)
    for part, src, dst, div, digits in _SIZES:
        sub = out.get(part)
        if isinstance(sub, dict):
            v = _num(sub.get(src))
            out[part] = {**sub, dst: None if v is None else round(v / div, digits)}
    return out


def section(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The seed-shaped JSON of one of the five seed sections of the view."""
    raw_section = state.get(name)
    body = _fill(_TEMPLATES[name], _seed_sizes(raw_section) if name == "capacity" else raw_section)
    if name == "health":
        raw = body.get("components")
        comps: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        for comp in _COMPONENT_FIELDS:
            comps.setdefault(comp, {})
        body["components"] = {
            comp: _fill(dict.fromkeys(("status", *_COMPONENT_FIELDS.get(comp, ()))), value)
            for comp, value in comps.items()}
    elif name == "errors":
        raw_errors = body.get("errors")
        items = raw_errors if isinstance(raw_errors, list) else []
        body["errors"] = [_fill(dict.fromkeys(_ERROR_FIELDS), e) for e in items]
    return body


class SeriesQueryError(ValueError):
    """A bad ``/operator/system/series`` query; the message says what is wrong."""


#: What a series name looks like (the view's ``series`` keys; gateway/openapi.json says the same).
SERIES_NAME: Final = r"^[A-Za-z0-9_:.-]{1,100}$"


def series_query(state: Mapping[str, Any], names: list[str] | None,
                 since: float | None) -> dict[str, Any]:
    """``{"series": {name: [[ts, v], ...]}, "since": float|None, "series_len": int}``.

    ``names`` selects series (all when None); ``since`` keeps points with ts > since (Unix seconds).
    An unknown name raises SeriesQueryError. The query itself was parsed by gateway/query.py.
    """
    raw = state.get("series")
    series: dict[str, Any] = raw if isinstance(raw, dict) else {}
    wanted = sorted(series) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in series]
    if unknown:
        raise SeriesQueryError(f"unknown series {', '.join(map(repr, unknown[:10]))}; "
                               f"known: {', '.join(sorted(series)) or '(none yet)'}")
    out: dict[str, list[Any]] = {}
    for name in wanted:
        points = series[name] if isinstance(series[name], list) else []
        if since is not None:
            points = [p for p in points if isinstance(p, list) and p and _num(p[0]) is not None
                      and p[0] > since]
        out[name] = points
    meta = state.get("meta")
    series_len = meta.get("series_len") if isinstance(meta, dict) else None
    return {"series": out, "since": since, "series_len": series_len}


# -- Prometheus text exposition ---------------------------------------------------------------------

def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(value: float) -> str:
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class PromWriter:
    """Collects samples per metric family and writes the text format (one HELP/TYPE per family).

    >>> w = PromWriter()
    >>> w.add("opsdash_up", "gauge", "Always 1.", 1)
    >>> w.text()
    '# HELP opsdash_up Always 1.\\n# TYPE opsdash_up gauge\\nopsdash_up 1\\n'
    """

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: Any,
            labels: Mapping[str, str] | None = None) -> None:
        """Add one sample; an unknown (null or non-numeric) value is left out, never written as 0."""
        v = _num(value)
        family = self._families.setdefault(name, (kind, help_text, []))
        if v is None:
            return
        label_text = ""
        if labels:
            label_text = "{" + ",".join(f'{k}="{_escape(str(lv))}"' for k, lv in labels.items()) + "}"
        family[2].append(f"{name}{label_text} {_fmt(v)}")

    def text(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            if not samples:
                continue
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(dict.fromkeys(samples))  # a duplicate sample line would be refused
        return "\n".join(lines) + "\n" if lines else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


_STATUSES: Final = ("healthy", "degraded", "down", "unknown")


def _status_set(w: PromWriter, name: str, help_text: str, status: Any, labels: dict[str, str]) -> None:
    if not isinstance(status, str):
        return
    for s in _STATUSES:
        w.add(name, "gauge", help_text, 1 if status == s else 0, {**labels, "status": s})


def _items(d: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    return ((k, d[k]) for k in sorted(d))


def prometheus_text(state: Mapping[str, Any] | None, gateway: Mapping[str, Any],
                    extra: Iterable[tuple[str, str, str, Any, dict[str, str] | None]] = ()) -> str:
    """The view as Prometheus text exposition (format 0.0.4): gauges and counters with labels.

    ``gateway`` holds the gateway's own figures (clients, view age, staleness); ``extra`` more samples
    as ``(name, type, help, value, labels)``.
    """
    w = PromWriter()
    g = gateway
    w.add("opsdash_gateway_view_stale", "gauge", "1 when the view is stale (aggregator silent).",
          1 if g.get("stale") else 0)
    w.add("opsdash_gateway_view_age_seconds", "gauge",
          "Seconds since the gateway last applied a snapshot or patch.", g.get("age_s"))
    w.add("opsdash_gateway_view_seq", "gauge", "Sequence number of the view the gateway holds.",
          g.get("seq"))
    w.add("opsdash_gateway_clients", "gauge", "WebSocket clients connected to this gateway.",
          g.get("clients"))
    for name, kind, help_text, value, labels in extra:
        w.add(name, kind, help_text, value, labels)
    if state is None:
        return w.text()

    meta = _dict(state.get("meta"))
    w.add("opsdash_view_generated_timestamp_seconds", "gauge",
          "When the aggregator generated the view (Unix seconds).", meta.get("generated_at"))
    comp = _dict(meta.get("completeness"))
    w.add("opsdash_data_completeness_ratio", "gauge",
          "Share of expected reporter intervals that arrived.", comp.get("ratio"))
    w.add("opsdash_missing_intervals_total", "counter", "Reporter intervals that never arrived.",
          comp.get("missing_intervals"))
    w.add("opsdash_folded_messages_total", "counter", "Metrics messages folded by the aggregator.",
          meta.get("folded"))
    w.add("opsdash_duplicate_messages_total", "counter", "Duplicate messages folded once.",
          meta.get("duplicates"))
    w.add("opsdash_quarantined_messages_total", "counter", "Messages quarantined by the aggregator.",
          meta.get("quarantined"))

    health = _dict(state.get("health"))
    _status_set(w, "opsdash_status", "Overall platform status (1 for the current state).",
                health.get("status"), {})
    for cname, raw_c in _items(_dict(health.get("components"))):
        c = _dict(raw_c)
        labels = {"component": cname, "kind": str(c.get("kind", ""))}
        _status_set(w, "opsdash_component_status", "Component status (1 for the current state).",
                    c.get("status"), labels)
        lat = _num(c.get("latency_ms"))
        w.add("opsdash_component_latency_seconds", "gauge", "Latency of the component's last check.",
              None if lat is None else lat / 1000, {"component": cname})

    metrics = _dict(state.get("metrics"))
    for key, value in _items(_dict(metrics.get("throughput"))):
        if key.endswith("_rate_per_sec"):
            w.add("opsdash_rate_per_second", "gauge", "Rates over the view's window, per second.",
                  value, {"rate": key.removesuffix("_rate_per_sec")})
    latency = _dict(metrics.get("latency"))
    for q, key in (("p50", "influx_write_p50_ms"), ("p95", "influx_write_p95_ms"),
                   ("p99", "influx_write_p99_ms")):
        v = _num(latency.get(key))
        w.add("opsdash_influx_write_latency_seconds", "gauge",
              "InfluxDB write latency percentiles over the view's window (a gauge: the aggregator "
              "merged the histograms).",
              None if v is None else v / 1000, {"percentile": q})

    cap = _dict(state.get("capacity"))
    for key, value in _items(_dict(cap.get("disk"))):
        if key.endswith("_bytes"):
            w.add("opsdash_disk_bytes", "gauge", "Disk usage and size by volume.", value,
                  {"volume": key.removesuffix("_bytes")})
    used = _num(_dict(cap.get("disk")).get("used_pct"))
    w.add("opsdash_disk_used_ratio", "gauge", "Share of the data volume in use.",
          None if used is None else used / 100)
    pg = _dict(cap.get("postgres"))
    w.add("opsdash_postgres_database_bytes", "gauge", "Size of the platform database.",
          pg.get("db_size_bytes"))
    w.add("opsdash_postgres_connections", "gauge", "PostgreSQL connections.",
          pg.get("connections_used"), {"state": "used"})
    w.add("opsdash_postgres_connections", "gauge", "PostgreSQL connections.",
          pg.get("connections_max"), {"state": "max"})
    influx = _dict(cap.get("influxdb"))
    w.add("opsdash_influxdb_files", "gauge", "InfluxDB data files.", influx.get("file_count"))
    w.add("opsdash_influxdb_file_limit", "gauge", "Configured InfluxDB file limit.",
          influx.get("file_limit"))
    for raw_c in _dict(cap.get("memory")).get("containers") or []:
        c = _dict(raw_c)
        labels = {"container": str(c.get("name", "")), "service": str(c.get("service", ""))}
        w.add("opsdash_container_memory_bytes", "gauge", "Container memory usage.",
              c.get("mem_bytes"), labels)
        w.add("opsdash_container_memory_limit_bytes", "gauge", "Container memory limit.",
              c.get("mem_limit_bytes"), labels)
        cpu = _num(c.get("cpu_pct"))
        w.add("opsdash_container_cpu_ratio", "gauge", "Container CPU usage (1 = one core).",
              None if cpu is None else cpu / 100, labels)

    agg = _dict(state.get("aggregates"))
    for entity in ("tenants", "devices", "alerts", "integrations"):
        for key, value in _items(_dict(agg.get(entity))):
            w.add(f"opsdash_platform_{entity}", "gauge", f"Platform {entity} by state.", value,
                  {"state": key})

    counts = _dict(_dict(state.get("errors")).get("counts"))
    for key, value in _items(counts):
        w.add("opsdash_errors_last_hour", "gauge", "Errors over the last hour, by kind.", value,
              {"kind": key.removesuffix("_1h")})

    for sname, raw_svc in _items(_dict(state.get("services"))):
        svc = _dict(raw_svc)
        for iname, raw_inst in _items(_dict(svc.get("instances"))):
            inst = _dict(raw_inst)
            labels = {"service": sname, "instance": iname}
            _status_set(w, "opsdash_instance_status", "Instance status (1 for the current state).",
                        inst.get("status"), labels)
            w.add("opsdash_instance_restarts_total", "counter", "Restarts seen (new boot ids).",
                  inst.get("restarts"), labels)
            w.add("opsdash_instance_missing_intervals_total", "counter",
                  "Intervals of this instance that never arrived.", inst.get("missing_intervals"),
                  labels)
            for cname, value in _items(_dict(inst.get("totals"))):
                w.add("opsdash_service_events_total", "counter",
                      "Counter totals since the aggregator first saw the instance.", value,
                      {**labels, "counter": cname})
            for gname, value in _items(_dict(inst.get("gauges"))):
                w.add("opsdash_service_reported_value", "gauge",
                      "Latest gauges reported by the instance.", value, {**labels, "name": gname})
    return w.text()
