"""Bytes per second of the default WebSocket stream as the platform grows (issue 14).

    .venv/bin/python bench/bench_stream_bytes.py [--instances 200 2000] [--seconds 30]

For each size, drives the real fold (with the ``graph`` section, as the aggregator wires it) with the
seed's four services, the instances spread evenly over them, each sending 20 series every second (12
counters, 6 gauges that move, 2 latency histograms), one error event a second, and the four probes. The
gateway's store applies every patch; the script counts, per measured second, the bytes of the patch
message each kind of client gets, exactly as gateway/store.py encodes it:

- the default stream (no ``sections``: every section, ``services`` as per-service summaries);
- a client of one service's instances (``sections=services/ingest``);
- the whole view (every ``services/<name>``: what the default stream carried before issue 14),
  the baseline measured in the same run.

Aims: default stream at 2,000 instances <= 1.5 x its figure at 200, and <= 10 KB/s; the one-service
client pays for that service only (about the whole view's instance bytes / 4).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.store import ViewStore, parse_sections
from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import ViewPatch, ViewSnapshot, encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.graph import GraphConfig, GraphSection
from telemetry_bus.reporter import ReporterCore

SERVICES = ("ingest", "evaluator", "dispatcher", "delivery")
PROBES = ("postgres", "influxdb", "mqtt", "keycloak")
COUNTERS = {"ingest": "messages_received", "evaluator": "rules_evaluated", "dispatcher": "alerts_routed",
            "delivery": "webhooks_sent"}


def measure(n: int, seconds: int, warm: int = 5) -> dict[str, float]:
    rnd = random.Random(n)
    t0 = 1_800_000_000.0
    cfg = AggregatorConfig(max_instances_per_service=max(256, n))
    fold = Fold(cfg, "$ops", t0)
    fold.view.add("graph", GraphSection(GraphConfig(), [*cfg.expected_services, *cfg.expected_probes]),
                  after="health")
    cores = {(s, f"{s}-{i}"): ReporterCore(f"boot-{s}-{i}", 1.0, t0)
             for i in range(n // len(SERVICES)) for s in SERVICES}
    store = ViewStore()
    clients = {"default": None, "one service": parse_sections(["services/ingest"]),
               "whole view": parse_sections([*(f"services/{s}" for s in SERVICES), "health", "metrics",
                                             "capacity", "aggregates", "errors", "series", "probes",
                                             "graph"])}
    got: dict[str, list[int]] = {k: [] for k in clients}
    for sec in range(warm + seconds):
        t = t0 + sec
        for target in PROBES:
            fold.feed(topics.probe("$ops", target), encode(
                {"ts": t, "status": "healthy", "latency_ms": round(rnd.uniform(1, 5), 2), "period_s": 5}), t)
        for (svc, _inst), core in cores.items():
            core.inc(COUNTERS[svc], rnd.randint(80, 160))
            for k in range(11):
                core.inc(f"c{k}", rnd.randint(0, 5))
            for k in range(6):
                core.set_gauge("queue_depth" if k == 0 else f"g{k}", rnd.randint(0, 30))
            for k in range(2):
                core.observe(f"h{k}_ms", rnd.lognormvariate(1.2, 0.6))
        for (svc, inst), core in cores.items():
            fold.feed(topics.metrics("$ops", svc, inst), encode(core.take(t + 0.3)), t + 0.3)
        fold.feed(topics.events("$ops", "delivery", "delivery-0"), encode(
            {"boot": "boot-delivery-0", "seq": sec + 1, "ts": t, "kind": "webhook_timeout",
             "message": f"POST https://hooks.example/t{sec % 40}/alerts timed out after 10 s"}), t + 0.5)
        out = fold.tick(t + 0.9)
        if sec == 0:
            store.apply_snapshot(ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view), t)
            continue
        store.apply_patch(ViewPatch(seq=out.seq, base=out.base, ts=out.ts, patch=out.patch,
                                    append=out.append, errors=out.errors), t)
        if sec >= warm:
            for name, sections in clients.items():
                got[name].append(len(store.patch_message(sections)))
    return {name: statistics.mean(v) for name, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--seconds", type=int, default=30)
    args = ap.parse_args()
    results = {n: measure(n, args.seconds) for n in args.instances}
    print(f"# bytes per client per second of the patch stream, 20 series per instance, {args.seconds} s")
    print(f"{'instances':>9} {'default':>10} {'one service':>12} {'whole view':>12} {'default/whole':>14}")
    for n, r in results.items():
        print(f"{n:>9,} {r['default']:>10,.0f} {r['one service']:>12,.0f} {r['whole view']:>12,.0f} "
              f"{r['default'] / r['whole view']:>14.4f}")
    if len(results) >= 2:
        small, big = min(results), max(results)
        growth = results[big]["default"] / results[small]["default"]
        ok = growth <= 1.5 and results[big]["default"] <= 10_000
        print(f"RESULT default stream {big:,} vs {small:,} instances: {growth:.2f}x "
              f"({results[big]['default']:,.0f} B/s) aim <= 1.5x and <= 10,000 B/s: "
              f"{'met' if ok else 'NOT met'}")
        share = results[big]["one service"] / results[big]["whole view"]
        print(f"RESULT one-service client at {big:,} instances: {results[big]['one service']:,.0f} B/s = "
              f"{share:.3f} of the whole view (its service is 1/{len(SERVICES)} of the instances)")


if __name__ == "__main__":
    main()
