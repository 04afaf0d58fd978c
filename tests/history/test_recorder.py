"""Known traffic in → history out, against a real broker, aggregator, recorder and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import random
import time

import asyncpg
import pytest

from history.query import HistoryReader
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.history.conftest import Stack, start_stack
from tests.support.servers import Mosquitto, PrivatePostgres


async def traffic(url: str, seconds: float, seed: int = 1) -> tuple[int, list[float], list[Reporter]]:
    """3 ingest instances: uneven counts and latency samples; returns (total count, samples, reporters)."""
    rnd = random.Random(seed)
    reps = [Reporter("ingest", f"hist-{i}", mqtt_url=url, interval_s=1.0) for i in range(3)]
    for r in reps:
        await r.start()
        await r.wait_connected()
    total, samples = 0, []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    k = 0
    while loop.time() < end:
        for i, r in enumerate(reps):
            n = 2 + (k + i) % 7
            r.inc("messages_received", n)
            total += n
            for _ in range(n):
                v = rnd.lognormvariate(1.5, 0.8)
                r.observe("influx_write_ms", v)
                samples.append(v)
            r.set_gauge("queue_depth", float(i + 1))
        k += 1
        await asyncio.sleep(0.05)
    return total, samples, reps


def exact_quantile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[max(1, math.ceil(q * len(s))) - 1]


async def settle(stack: Stack, reps: list[Reporter]) -> None:
    """Stop the reporters (their last interval is sent) and wait until that second is written."""
    for r in reps:
        await r.stop()
    target = time.time() + 4  # the rates of a second are published RATE_LAG_S behind

    async def written() -> bool:
        return stack.recorder.writer.rows_written > 0 and not stack.recorder.buffer and time.time() > target
    await eventually(written, timeout=15, what="recorder caught up")


async def series_total(dsn: str, name: str) -> tuple[float, int]:
    conn = await asyncpg.connect(dsn)
    try:
        sid = await conn.fetchval("SELECT id FROM series WHERE name = $1", name)
        row = await conn.fetchrow(f"SELECT sum(vals[{sid}]), count(vals[{sid}]) FROM frames")
        return float(row[0] or 0), int(row[1])
    finally:
        await conn.close()


async def test_known_traffic_is_in_history(mosquitto: Mosquitto, stack: Stack) -> None:
    t0 = time.time()
    total, samples, reps = await traffic(mosquitto.url, 10)
    await settle(stack, reps)
    # every increment is in the per-second rates, once (the fold spreads an interval, never loses it)
    got, _ = await series_total(stack.dsn, "ingest_rate")
    assert got == pytest.approx(total, rel=0.01)
    got2, _ = await series_total(stack.dsn, "rate:ingest:messages_received")
    assert got2 == pytest.approx(total, rel=0.01)
    pool = await asyncpg.create_pool(stack.dsn, min_size=1, max_size=2)
    try:
        reader = HistoryReader(pool)
        cat = await reader.catalogue()
        for name in ("ingest_rate", "write_p99", "rate:ingest:messages_received", "gauge:ingest:queue_depth"):
            assert name in cat["series"]
        assert cat["oldest"] is not None and cat["oldest"] >= t0 - 5
        # the mean of a 10 s step times its 10 seconds, over the steps, is the total again
        ans = await reader.series(["ingest_rate", "gauge:ingest:queue_depth"], t0 - 10, time.time(), 10)
        pts = ans["series"]["ingest_rate"]
        assert all(t % 10 == 0 for t, _ in pts)
        # each 10 s mean is the mean of the 1 s points present in it
        ones = await reader.series(["ingest_rate"], t0 - 10, time.time(), 1)
        by_step: dict[float, list[float]] = {}
        for t, v in ones["series"]["ingest_rate"]:
            if v is not None:
                by_step.setdefault(t // 10 * 10, []).append(v)
        checked = 0
        for t, v in pts:
            if t in by_step:
                # (7 significant digits: the 1 s frames are float4)
                assert v == pytest.approx(sum(by_step[t]) / len(by_step[t]), rel=1e-6)
                checked += 1
            else:
                assert v is None
        assert checked >= 1
        gauges = [v for _, v in ans["series"]["gauge:ingest:queue_depth"] if v is not None]
        assert gauges and max(gauges) == pytest.approx(6.0)  # 1 + 2 + 3 while all three live
        # quantiles of all samples, from merged histograms, within the bound shown
        ans = await reader.series(["write_p50", "write_p95", "write_p99"], t0 - 5, time.time(), 86400)
        bound = ans["relative_error"]["write_p99"]
        assert 0 < bound < 0.02
        for name, q in (("write_p50", 0.5), ("write_p95", 0.95), ("write_p99", 0.99)):
            (_t, v), = [p for p in ans["series"][name] if p[1] is not None]
            exact = exact_quantile(samples, q)
            assert abs(v - exact) <= exact * bound + 0.001, (name, v, exact, bound)
        # 1 s step: a hole is null, never zero
        ans = await reader.series(["ingest_rate"], t0 - 60, t0 - 30, 1)
        assert all(v is None for _, v in ans["series"]["ingest_rate"])
    finally:
        await pool.close()


async def test_database_stopped_20s_under_traffic_loses_nothing(
        mosquitto: Mosquitto, private_pg: PrivatePostgres, private_dsn: str) -> None:
    stack = await start_stack(mosquitto.url, private_dsn)
    try:
        await eventually(lambda: stack.recorder.db_up, timeout=10, what="database up")
        agg_patches = stack.aggregator.published_patches
        stop_task = asyncio.create_task(asyncio.to_thread(_stop_for, private_pg, 20.0))
        total, _samples, reps = await traffic(mosquitto.url, 26)
        await stop_task
        # the live path went on while the database was away
        assert stack.aggregator.published_patches - agg_patches >= 20
        await settle(stack, reps)
        assert stack.recorder.drops == 0
        got, _n = await series_total(private_dsn, "ingest_rate")
        assert got == pytest.approx(total, rel=0.01)
        conn = await asyncpg.connect(private_dsn)
        try:
            secs = [int(r[0].timestamp()) for r in await conn.fetch("SELECT ts FROM frames ORDER BY ts")]
        finally:
            await conn.close()
        assert secs == list(range(secs[0], secs[0] + len(secs))), "a second is missing"
    finally:
        await cancel_and_wait(stack.tasks)


def _stop_for(pg: PrivatePostgres, seconds: float) -> None:
    time.sleep(2)
    pg.stop()
    time.sleep(seconds)
    pg.start()


async def test_buffer_overflow_counts_drops_and_leaves_the_live_path_alone(
        mosquitto: Mosquitto, private_pg: PrivatePostgres, private_dsn: str) -> None:
    stack = await start_stack(mosquitto.url, private_dsn, OPSDASH_RECORDER__BUFFER="10")
    try:
        await eventually(lambda: stack.recorder.db_up, timeout=10, what="database up")
        private_pg.stop()
        before = stack.aggregator.published_patches
        held: list[int] = []
        kinds: set[str] = set()

        async def sample() -> None:  # one buffer, one bound: the view stream's messages count with the rest
            while True:
                held.append(len(stack.recorder.buffer))
                kinds.update(it.kind for _, _, it in stack.recorder.buffer)
                await asyncio.sleep(0.05)
        sampler = asyncio.create_task(sample())
        _total, _s, reps = await traffic(mosquitto.url, 16)
        await cancel_and_wait([sampler])
        assert stack.recorder.drops > 0
        assert len(stack.recorder.buffer) <= 10 and max(held) <= 10
        assert {"view", "second"} <= kinds, kinds
        assert not stack.recorder.db_up and stack.recorder.db_error
        assert stack.aggregator.published_patches - before >= 12  # live path undisturbed
        # what it shows on the bus: degraded, with the drops counted
        rep = Reporter("opsdash-recorder", "t", mqtt_url=mosquitto.url)
        stack.recorder.report(rep)
        m = rep.core.take(time.time())
        assert m.health == "degraded" and "dropped" in m.detail
        assert m.counters["drops"] == stack.recorder.drops
        assert m.gauges["db_up"] == 0.0 and m.gauges["buffer"] <= 10
        private_pg.start()
        await eventually(lambda: stack.recorder.db_up and not stack.recorder.buffer, timeout=20,
                         what="backlog written")
        for r in reps:
            await r.stop()
    finally:
        await cancel_and_wait(stack.tasks)
