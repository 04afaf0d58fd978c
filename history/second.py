"""What the aggregator publishes for history once per second (``<root>/v1/view/second``).

The view carries 15 minutes of six series and window figures (rates over 60 s, quantiles over 60 s);
history needs each second on its own: the count of every service counter in that second, every
service gauge, the capacity figures, and the merged write-latency histogram of the second (quantiles
over any range are computed from merged histograms). Built from the fold's own rings, so the recorder
never re-folds the raw bus. Pure: takes the fold and the tick's view, returns a JSON-able dict.

    {"ts": 1764236398.0,                 # the second [ts, ts + 1) the rates and the histogram cover
     "aggregator": "agg-1",
     "values": {"ingest_rate": 125.0, "rate:ingest:messages_received": 125.0,
                "gauge:delivery:pending_jobs": 3.0, "capacity:disk.used_pct": 57.7, ...},
     "hists": {"write_latency": {<wire histogram: scale, zero_count, offset, counts, count, sum, min, max>}},
     "components": {"postgres": ["healthy", null, 1764236000.0], ...},   # status, reason, since
     "feed": [<the error-feed entries added since the previous second, as in the patch>]}
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from telemetry_bus.state import RATE_LAG_S

if TYPE_CHECKING:
    from telemetry_bus.fold import Fold

__all__ = ["CAPACITY_FIGURES", "VIEW_RATES", "WRITE_HIST", "record_second", "second_record", "topic"]

#: The view's rate series (names of docs/view.md ``series``) and the config key naming their counter.
VIEW_RATES: Final = (("ingest_rate", "ingest_rate"), ("alert_rate", "alert_rate"),
                     ("delivery_rate", "delivery_rate"))
#: The stored histogram behind ``write_p50`` / ``write_p95`` / ``write_p99``.
WRITE_HIST: Final = "write_latency"
#: Numeric capacity figures recorded as ``capacity:<section>.<field>``.
CAPACITY_FIGURES: Final = {
    "disk": ("used_pct", "used_volume_bytes", "total_volume_bytes", "postgres_data_bytes",
             "influxdb_data_bytes"),
    "postgres": ("db_size_bytes", "connections_used", "connections_max"),
    "influxdb": ("file_count", "file_limit", "data_bytes"),
    "memory": ("running", "total"),
}


def topic(root: str) -> str:
    return f"{root}/v1/view/second"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def record_second(now: float) -> int:
    """The second a record made at ``now`` covers (rates lag ``RATE_LAG_S`` like the view's series)."""
    return math.floor(now) - RATE_LAG_S


def second_record(fold: Fold, view: dict[str, Any], now: float,
                  feed: list[dict[str, Any]], sec: int | None = None) -> dict[str, Any] | None:
    """The record of second ``sec`` (default: the last complete one at ``now``; an earlier one when a
    tick came late and seconds are caught up: the rings keep ``window_s`` seconds); None for a second
    that began before the fold started (not watched: history keeps it a gap)."""
    if sec is None:
        sec = record_second(now)
    if sec < math.floor(fold.started_at):
        return None
    values: dict[str, float | None] = {}
    cfg = fold.cfg
    for name, key in VIEW_RATES:
        svc_name, counter = str(getattr(cfg, key)).split(".")
        svc = fold.services.get(svc_name)
        if svc is not None and svc.instances:
            ring = svc.rings.get(counter)
            values[name] = ring.get(sec) if ring else 0.0
    for svc in fold.services.values():
        if not svc.instances:
            continue
        counters: set[str] = set()
        gauges: dict[str, list[float]] = {}
        for inst in svc.instances.values():
            counters.update(inst.totals)
            live = inst.state.state in ("healthy", "degraded")
            for g, v in inst.gauges.items():
                lst = gauges.setdefault(g, [])
                if live:
                    lst.append(v)
        for c in counters:
            ring = svc.rings.get(c)
            values[f"rate:{svc.name}:{c}"] = ring.get(sec) if ring else 0.0
        for g, vs in gauges.items():
            values[f"gauge:{svc.name}:{g}"] = math.fsum(vs) if vs else None
    capacity = view.get("capacity") or {}
    for section, fields in CAPACITY_FIGURES.items():
        sect = capacity.get(section) or {}
        for f in fields:
            figure = _num(sect.get(f))
            if figure is not None:
                values[f"capacity:{section}.{f}"] = figure
    hists: dict[str, Any] = {}
    hsvc, hname = cfg.write_latency.split(".")
    svc = fold.services.get(hsvc)
    if svc is not None and hname in svc.hists:
        merged = svc.hists[hname].merged(sec, sec)
        if merged is not None and merged.count:
            hists[WRITE_HIST] = merged.to_wire()
    components = {
        name: [c.get("status", "unknown"), c.get("reason"), c.get("since")]
        for name, c in ((view.get("health") or {}).get("components") or {}).items()
    }
    return {"ts": float(sec), "aggregator": cfg.id,
            "values": {k: v for k, v in values.items() if v is None or math.isfinite(v)},
            "hists": hists, "components": components, "feed": feed}
