"""Bytes per client per second: the live patch stream beside polling the five REST endpoints.

    .venv/bin/python bench/bench_patch_bytes.py [--seconds 120] [--errors-per-s 1]

Drives the real fold (telemetry_bus.fold.Fold) with the seed's four services (2 instances each,
steady traffic, latency histograms, gauges) and a stream of error events, for --seconds of simulated
time (no broker, no clock: it measures bytes, not speed). The first half fills the error feed with one
error a second; the second half runs at --errors-per-s and is measured. Prints:

- the WebSocket patch message a browser gets for the five REST sections (health, metrics, capacity,
  aggregates, errors; meta always included), exactly as gateway/store.py encodes it;
- the same with every section (services, probes and series appends too);
- one poll of the five REST endpoints (gateway/rest.py renderings, uncompressed and gzipped);
and the ratios (issue 4 aims at <= 0.10 x polling).
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.rest import section
from gateway.store import ViewStore
from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import ViewPatch, ViewSnapshot, encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.reporter import ReporterCore

REST = ("health", "metrics", "capacity", "aggregates", "errors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--errors-per-s", type=float, default=1.0)
    args = ap.parse_args()
    rnd = random.Random(1)
    t0 = 1_800_000_000.0
    fold = Fold(AggregatorConfig(), "$ops", t0)
    cores = {(s, f"{s}-{i}"): ReporterCore(f"boot-{s}-{i}", 1.0, t0)
             for s in ("ingest", "evaluator", "dispatcher", "delivery") for i in range(2)}
    counters = {"ingest": "messages_received", "evaluator": "rules_evaluated", "dispatcher": "alerts_routed",
                "delivery": "webhooks_sent"}
    store = ViewStore()
    rest_secs = frozenset(REST)
    five, every, polls, polls_gz = [], [], [], []
    event_seq = 0
    warm, start = 0, 0
    for sec in range(args.seconds):
        if sec == args.seconds // 2:
            warm, start = event_seq, sec
        t = t0 + sec
        for (svc, inst), core in cores.items():
            core.inc(counters[svc], rnd.randint(80, 160))
            core.set_gauge("queue_depth" if svc == "ingest" else "pending_jobs", rnd.randint(0, 30))
            if svc == "ingest":
                for _ in range(20):
                    core.observe("influx_write_ms", rnd.lognormvariate(1.2, 0.6))
            fold.feed(topics.metrics("$ops", svc, inst), encode(core.take(t + 0.3)), t + 0.3)
        # first half: one error a second fills the feed (a platform's feed is rarely empty);
        # the measured second half runs at --errors-per-s
        rate = 1.0 if sec < args.seconds // 2 else args.errors_per_s
        while event_seq < warm + (sec + 1 - start) * rate:
            event_seq += 1
            fold.feed(topics.events("$ops", "delivery", "delivery-0"), encode(
                {"boot": "b", "seq": event_seq, "ts": t, "kind": "webhook_timeout",
                 "message": f"POST https://hooks.example/t{event_seq % 40}/alerts timed out after 10 s"}),
                t + 0.5)
        out = fold.tick(t + 0.9)
        if sec == 0:
            store.apply_snapshot(ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view), t)
            continue
        store.apply_patch(ViewPatch(seq=out.seq, base=out.base, ts=out.ts, patch=out.patch, append=out.append,
                                    errors=out.errors), t)
        assert store.state == out.view, "the gateway's copy must equal the aggregator's view"
        if sec < args.seconds // 2:
            continue
        five.append(len(store.patch_message(rest_secs)))
        every.append(len(store.patch_message(None)))
        bodies = [encode(section(store.state, name)) for name in REST]
        polls.append(sum(len(b) for b in bodies))
        polls_gz.append(sum(len(gzip.compress(b)) for b in bodies))
    p5, pall = statistics.mean(five), statistics.mean(every)
    poll, pollz = statistics.mean(polls), statistics.mean(polls_gz)
    print(f"# patch stream vs polling, {args.seconds} s simulated, 8 instances, "
          f"{args.errors_per_s:g} error event/s in the measured second half (feed filled before)")
    print(f"{'stream':<44} {'B/client/s':>11} {'vs polling':>11} {'vs gzip poll':>13}")
    for name, v in (("patch, the five REST sections (+meta)", p5), ("patch, every section (+series)", pall),
                    ("polling the five REST endpoints once a s", poll), ("same, gzip", pollz)):
        print(f"{name:<44} {v:>11,.0f} {v / poll:>11.3f} {v / pollz:>13.3f}")


if __name__ == "__main__":
    main()
