"""Rates over a real broker against ground truth: every increment's wall time is recorded by the test."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from telemetry_bus.reporter import Reporter
from telemetry_bus.service import AggregatorService
from tests.support.servers import Mosquitto


async def test_rate_equals_the_increments_in_the_window_it_covers(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    reps = [Reporter("ingest", f"rate-{i}", mqtt_url=mosquitto.url, interval_s=1.0) for i in range(3)]
    for r in reps:
        await r.start()
        await r.wait_connected()
    log: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 16
    k = 0
    while loop.time() < end:
        for i, r in enumerate(reps):
            n = 3 + (k + i) % 5  # uneven traffic, so a wrong window shows
            r.inc("messages_received", n)
            log.append((time.time(), n))
        k += 1
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    out = aggregator.last
    assert out is not None
    now = out.ts
    view = out.view
    fold = aggregator.fold
    # the window the fold averages over (fold._rate): whole seconds ending RATE_LAG_S before now
    last = math.floor(now) - 2
    first_seen = min(i.first_seen for i in fold.services["ingest"].instances.values())
    covered = min(60, last + 1 - math.floor(first_seen))
    lo, hi = last - covered + 1, last + 1
    truth = sum(n for t, n in log if lo <= t < hi) / covered
    rate = view["metrics"]["throughput"]["ingest_rate_per_sec"]
    print(f"rate {rate} vs ground truth {truth:.3f} over [{lo}, {hi}) ({covered} s)")
    # exact but for the window's edges, where an interval's counts are spread evenly over it
    assert rate == pytest.approx(truth, rel=0.02)
    # the series' last points: each second's increments (edges spread over the interval)
    series = dict((int(p[0]), p[1]) for p in view["series"]["ingest_rate"])
    per_sec = {s: sum(n for t, n in log if s - 1 <= t < s) for s in range(lo + 3, hi)}
    total_series = sum(series.get(s, 0) or 0 for s in per_sec)
    assert total_series == pytest.approx(sum(per_sec.values()), rel=0.1)
    for r in reps:
        await r.stop()
