"""Tick work of the aggregator's fold (every section the aggregator registers) at N instances.

Each simulated second every instance sends one metrics message (16 counters, 3 gauges, one latency
histogram: 20 series, built with the real ReporterCore and fed through ``Fold.feed``), then a regular
tick runs, then an early tick with nothing new since (what the aggregator does ~0.1 s after news when
nothing else arrived). The baseline, in the same run, is the same fold with the incremental parts
defeated: every instance's view cache dropped and every instance marked as touched before each tick
(what every tick cost before they existed).

    .venv/bin/python bench/bench_tick.py [--instances 2000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.contract import encode
from telemetry_bus.reporter import ReporterCore

SERVICES = ("ingest", "evaluator", "dispatcher", "delivery")


def run(instances: int, seconds: int, incremental: bool) -> tuple[list[float], list[float], float]:
    cfg = load_config(env={"OPSDASH_AGGREGATOR__MAX_INSTANCES_PER_SERVICE": str(instances)})
    fold = build_aggregator(cfg, clock=lambda: 1000.0).fold
    rng = random.Random(1)
    cores = [(SERVICES[i % 4], f"{SERVICES[i % 4]}-{i}", ReporterCore(f"b{i:08d}", 1.0, 1000.0))
             for i in range(instances)]
    t = 1000.0
    news, quiet, feed = [], [], []
    for _ in range(seconds):
        t += 1.0
        t0 = time.perf_counter()
        for svc, inst, c in cores:
            for k in range(16):
                c.inc(f"counter_{k}", rng.randint(0, 5))
            for k in range(3):
                c.set_gauge(f"gauge_{k}", rng.random())
            c.observe("influx_write_ms", rng.lognormvariate(1, 1))
            fold.feed(f"$ops/v1/svc/{svc}/{inst}/metrics", encode(c.take(t - 0.5)), t - 0.5)
        feed.append(time.perf_counter() - t0)
        for now, full, out in ((t, True, news), (t + 0.3, False, quiet)):
            if not incremental:
                for s in fold.services.values():
                    for i in s.instances.values():
                        i.view_cache = None
                        fold._touched.add((s.name, i.name))
            t1 = time.perf_counter()
            fold.tick(now, full=full)
            out.append((time.perf_counter() - t1) * 1000)
    skip = 3  # first ticks: instances appear, windows fill
    return news[skip:], quiet[skip:], statistics.mean(feed) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument("--seconds", type=int, default=15)
    a = p.parse_args()
    base = run(a.instances, a.seconds, incremental=False)
    now = run(a.instances, a.seconds, incremental=True)
    print(f"{a.instances} instances x 20 series, {a.seconds} s; feed {now[2]:.0f} ms per second of messages")
    print(f"{'tick':32} {'baseline mean/p99 ms':>22} {'now mean/p99 ms':>18} {'ratio (mean)':>12}")

    def p99(v: list[float]) -> float:
        return sorted(v)[max(0, int(len(v) * 0.99) - 1)]

    for label, b, n in (("regular, after every instance", base[0], now[0]),
                        ("early, nothing new since", base[1], now[1])):
        print(f"{label:32} {statistics.mean(b):10.1f} / {p99(b):8.1f} {statistics.mean(n):8.1f} / "
              f"{p99(n):7.1f} {statistics.mean(n) / statistics.mean(b):11.2f}x")


if __name__ == "__main__":
    main()
