"""Quantile error of the aggregator's window, through the wire path, against exact quantiles.

Reporters record latencies and send a 1 s delta each (``ExpHistogram.to_wire``); the aggregator merges
the deltas into per-second histograms (``HistRing.add_wire``) and reads the 60 s window merged, as the
fold does. Each data set is run with the old budgets (reporter 320 buckets, window 320) and the
current ones (``REPORTER_MAX_BUCKETS``, ``WINDOW_MAX_BUCKETS``) in the same run, and compared with
the exact nearest-rank quantile of all values at q = 0.5, 0.9, 0.95, 0.99, 0.999.

    .venv/bin/python bench/bench_quantiles.py [--instances 20] [--per-second 100] [--seconds 60]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telemetry_bus.histogram import (
    REPORTER_MAX_BUCKETS,
    WINDOW_MAX_BUCKETS,
    ExpHistogram,
    relative_error_bound,
)
from telemetry_bus.windows import HistRing

QS = (0.5, 0.9, 0.95, 0.99, 0.999)

DATA_SETS: dict[str, Callable[[random.Random], float]] = {
    "lognormal(mu=1, sigma=1)": lambda r: r.lognormvariate(1.0, 1.0),
    "bimodal 90 % ~2 ms / 10 % ~200 ms": lambda r: (r.lognormvariate(math.log(2), 0.3) if r.random() < 0.9
                                                    else r.lognormvariate(math.log(200), 0.3)),
    "pareto(alpha=1.2) (5 decades)": lambda r: r.paretovariate(1.2),
}


def run(draw: Callable[[random.Random], float], reporter_budget: int, window_budget: int,
        instances: int, per_second: int, seconds: int) -> tuple[float, int, int, float, float]:
    """(worst relative error, window scale, mean wire buckets per delta, merge+read ms, exact-check)."""
    rng = random.Random(7)
    ring = HistRing(seconds + 2, max_buckets=window_budget)
    values: list[float] = []
    wire_buckets = 0
    deltas = 0
    for sec in range(seconds):
        for _ in range(instances):
            h = ExpHistogram(max_buckets=reporter_budget)
            for _ in range(per_second):
                v = draw(rng)
                values.append(v)
                h.record(v)
            wire = h.to_wire()
            wire_buckets += len(wire.counts)
            deltas += 1
            ring.add_wire(sec, wire)
    t0 = time.perf_counter()
    merged = ring.merged(0, seconds - 1)
    assert merged is not None
    est = [merged.quantile(q) for q in QS]
    read_ms = (time.perf_counter() - t0) * 1000
    values.sort()
    worst = 0.0
    for q, e in zip(QS, est, strict=True):
        exact = values[max(1, math.ceil(q * len(values))) - 1]
        assert e is not None
        worst = max(worst, abs(e - exact) / exact)
    return worst, merged.scale, wire_buckets // deltas, read_ms, relative_error_bound(merged.scale)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=20)
    p.add_argument("--per-second", type=int, default=100)
    p.add_argument("--seconds", type=int, default=60)
    a = p.parse_args()
    n = a.instances * a.per_second * a.seconds
    print(f"{a.instances} reporters x {a.per_second} values/s x {a.seconds} s = {n:,} values, "
          f"window merged from 1 s wire deltas")
    print(f"{'data set':36} {'budgets (reporter/window)':26} {'worst err':>9} {'bound':>7} {'scale':>5} "
          f"{'wire buckets':>12} {'read ms':>8}")
    for name, draw in DATA_SETS.items():
        old = run(draw, 320, 320, a.instances, a.per_second, a.seconds)
        new = run(draw, REPORTER_MAX_BUCKETS, WINDOW_MAX_BUCKETS, a.instances, a.per_second, a.seconds)
        now = f"{REPORTER_MAX_BUCKETS}/{WINDOW_MAX_BUCKETS} (now)"
        for label, r in (("320/320 (before)", old), (now, new)):
            print(f"{name:36} {label:26} {100 * r[0]:8.3f}% {100 * r[4]:6.2f}% {r[1]:5d} {r[2]:12d} "
                  f"{r[3]:8.1f}")
        print(f"{'':36} {'ratio now/before':26} {new[0] / old[0]:8.2f}x {'':7} {'':5} "
              f"{new[2] / old[2]:11.2f}x {new[3] / max(old[3], 1e-9):7.2f}x")


if __name__ == "__main__":
    main()
