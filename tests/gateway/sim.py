"""A simulated aggregator for the gateway tests: changing canonical views, and their patches.

It does exactly what the aggregator does with its views (docs/view.md): the patch is
``view_diff.diff`` of the view without ``series``, the series points ride in ``append``.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import aiomqtt

from telemetry_bus.contract import encode, topics
from telemetry_bus.view_diff import apply_append, canonical, diff

T0 = 1_764_236_400.0
SERIES = ("ingest_rate", "alert_rate", "delivery_rate", "write_p50", "write_p95", "write_p99")
COMPONENTS = ("postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator", "dispatcher", "delivery")


class ViewSim:
    def __init__(self, seed: int = 1, series_len: int = 900, errors_size: int = 50,
                 message_pad: int = 0, blob_bytes: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seq = 0
        self.t = T0
        self.series_len = series_len
        self.errors_size = errors_size
        self.message_pad = message_pad
        self.blob_bytes = blob_bytes
        self.errors: list[dict[str, Any]] = []
        self.series: dict[str, list[Any]] = {name: [] for name in SERIES}
        self.body = self._body()  # the view without series

    def _status(self) -> str:
        return self.rng.choices(["healthy", "degraded", "down", "unknown"], [20, 3, 1, 1])[0]

    def _num(self, lo: float, hi: float) -> float | None:
        return None if self.rng.random() < 0.05 else round(self.rng.uniform(lo, hi), 3)

    def _body(self) -> dict[str, Any]:
        r = self.rng
        if r.random() < 0.3:
            svc = r.choice(["delivery", "ingest", "auth"])
            self.errors.insert(0, {"timestamp": f"2026-11-27T10:{len(self.errors) % 60:02d}:00Z",
                                   "ts": self.t, "service": svc, "instance": f"{svc}-1",
                                   "type": r.choice(["webhook_timeout", "parse_error", "token_expired"]),
                                   "severity": "error",
                                   "message": "x" * self.message_pad + f"event at {self.t}"})
            del self.errors[self.errors_size:]
        comps = {}
        for name in COMPONENTS:
            comps[name] = {"kind": "probe" if name in COMPONENTS[:4] else "service",
                           "status": self._status(), "latency_ms": self._num(0.5, 30),
                           "reason": None}
        comps["postgres"].update(connections=r.randint(1, 100), max_connections=100)
        comps["delivery"]["pending_jobs"] = r.randint(0, 80)
        view = {
            "meta": {"seq": self.seq, "generated_at": self.t, "aggregator": "sim",
                     "tick_s": 1.0, "window_s": 60, "series_len": self.series_len,
                     "completeness": {"ratio": self._num(0.9, 1.0)}, "folded": self.seq * 10,
                     "duplicates": 0, "quarantined": r.randint(0, 3)},
            "health": {"status": self._status(), "checked_at": "2026-11-27T10:00:01Z",
                       "components": comps},
            "metrics": {"throughput": {"ingest_rate_per_sec": self._num(50, 200),
                                       "alert_rate_per_sec": self._num(0, 5),
                                       "delivery_rate_per_sec": self._num(0, 5)},
                        "latency": {"influx_write_p50_ms": self._num(1, 5),
                                    "influx_write_p95_ms": self._num(5, 20),
                                    "influx_write_p99_ms": self._num(20, 60),
                                    "relative_error": 0.0054},
                        "period": "last_60_seconds", "window_s": 60},
            "capacity": {"disk": {"postgres_data_bytes": r.randint(10 * 10**9, 13 * 10**9),
                                  "total_volume_bytes": 100 * 10**9, "used_pct": self._num(50, 60)},
                         "postgres": {"db_size_bytes": r.randint(1000 * 10**6, 1300 * 10**6),
                                      "connections_used": r.randint(1, 100),
                                      "connections_max": 100},
                         "influxdb": {"file_count": r.randint(400, 450), "file_limit": 1000}},
            "aggregates": {"tenants": {"active": 12, "suspended": 2, "deleted": 1, "total": 15},
                           "devices": {"registered": 450, "online": r.randint(300, 450), "stale": 70},
                           "alerts": {"open": r.randint(0, 30), "closed_today": 156},
                           "integrations": {"total": 35, "active": 28}},
            "errors": {"errors": copy.deepcopy(self.errors),
                       "counts": {"ingest_failures_1h": r.randint(0, 9), "delivery_failures_1h": 12,
                                  "auth_failures_1h": 45, "rate_limited_1h": 4, "quarantined_1h": 7}},
            "services": {"ingest": {"status": "healthy", "expected": True, "instances": {
                "ingest-1": {"status": self._status(), "boot": "01JDX3K8W6", "restarts": 0,
                             "missing_intervals": 0, "totals": {"messages_received": self.seq * 125},
                             "gauges": {"queue_depth": r.randint(0, 5)}}}}},
        }
        if self.blob_bytes:  # a big member that changes every tick (stress for slow clients)
            view["errors"]["blob"] = self.rng.randbytes(self.blob_bytes // 2).hex()
        return canonical(view)

    def state(self) -> dict[str, Any]:
        """The full canonical view, as a snapshot carries it."""
        return {**copy.deepcopy(self.body), "series": copy.deepcopy(self.series)}

    def client_state(self, sections: frozenset[str] | None = None) -> dict[str, Any]:
        """What a WebSocket client holds: the default stream has services as summaries."""
        from gateway.sections import filter_view
        return filter_view(self.state(), sections)

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.t, "state": self.state()}

    def step(self) -> dict[str, Any]:
        """Advance one tick; the patch message for it."""
        old = self.body
        base = self.seq
        self.seq += 1
        self.t += 1.0
        self.body = self._body()
        append = {name: [self.t, self._num(0, 100)] for name in SERIES}
        apply_append(self.series, append, self.series_len)
        return {"seq": self.seq, "base": base, "ts": self.t, "patch": diff(old, self.body),
                "append": append}


class Publisher:
    """Publishes a ViewSim onto a broker like the aggregator does."""

    def __init__(self, client: aiomqtt.Client, root: str = "$ops") -> None:
        self.client = client
        self.root = root

    async def snapshot(self, sim: ViewSim) -> None:
        await self.client.publish(topics.snapshot(self.root), encode(sim.snapshot()), qos=1, retain=True)

    async def patch(self, patch: dict[str, Any]) -> None:
        await self.client.publish(topics.patch(self.root), encode(patch), qos=0)
