"""Simulated past, written with SQL in bulk (no real-time wait): the demo's first hours and the
benchmark's seven days.

A :class:`Model` says what the platform looked like: every series is ``base x day shape x noise``
(the simulator's day shape: quiet at night, busy in the afternoon), with a past **outage** (InfluxDB
down: ingestion drops, write latency x8, the influxdb and ingest components down) and a **backlog**
(delivery's ``pending_jobs`` climbs to ~400 and drains). ``seconds()`` writes 1 s frames and 1 s
histograms with ``INSERT ... SELECT ... FROM generate_series``; ``rollups()`` writes the 1 min and
15 min rollups straight from the same formulas (for days beyond the 1 s retention); ``states()`` the
component timeline. Numbers come from PostgreSQL's ``random()``, seeded per call.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

import asyncpg

from history.schema import ensure_partitions
from history.second import WRITE_HIST
from history.store import dt
from telemetry_bus.histogram import ExpHistogram

__all__ = ["Model", "SeriesSpec", "demo_model", "rollups", "seconds", "states"]

DAY: Final = 86400.0


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    name: str
    base: float
    kind: str = "rate"  # rate | gauge | capacity
    #: "day": follows the day shape; "flat": base with noise; "backlog": the delivery backlog;
    #: "grow": a slow rise (disk)
    shape: str = "day"
    outage_factor: float = 1.0  # multiplier while the outage lasts


@dataclass(frozen=True, slots=True)
class Model:
    series: tuple[SeriesSpec, ...]
    outage: tuple[float, float] | None = None
    backlog: tuple[float, float] | None = None
    latency_ms: float = 6.0  # median write latency
    samples_per_s: float = 120.0  # write-latency samples per second (at the day-shape mean)
    components: tuple[str, ...] = ("postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator",
                                   "dispatcher", "delivery")
    seed: float = 0.42
    #: The day shape: the simulator's (opsdash/simulator.py ``daily_factor`` without its wiggle) over
    #: ``day_s`` seconds (86,400 for a real day; the demo's simulator compresses a day into 1,200 s),
    #: ``day_t0``/``day_phase`` placing it like the simulator's ``t0`` and seed do.
    day_s: float = 86400.0
    day_t0: float = 0.0
    day_phase: float = 0.42


def demo_model(now: float, day_s: float = 86400.0, day_t0: float = 0.0, day_phase: float = 0.42,
               ingest_rate: float = 120.0) -> Model:
    """The demo's past: the seed's figures, an outage ~3 h ago (20 min), a backlog ~5 h ago (40 min)."""
    out0 = now - 3 * 3600
    bl0 = now - 5 * 3600
    k = ingest_rate / 120.0
    return Model(day_s=day_s, day_t0=day_t0, day_phase=day_phase, samples_per_s=ingest_rate,
        series=(
            SeriesSpec("ingest_rate", 120.0 * k, outage_factor=0.15),
            SeriesSpec("alert_rate", 2.0, outage_factor=0.3),
            SeriesSpec("delivery_rate", 1.8, outage_factor=0.3),
            SeriesSpec("rate:ingest:messages_received", 120.0 * k, outage_factor=0.15),
            SeriesSpec("rate:ingest:messages_written", 119.0 * k, outage_factor=0.05),
            SeriesSpec("rate:evaluator:rules_evaluated", 40.0),
            SeriesSpec("rate:evaluator:alerts_created", 2.0, outage_factor=0.3),
            SeriesSpec("rate:dispatcher:alerts_routed", 2.0, outage_factor=0.3),
            SeriesSpec("rate:delivery:webhooks_sent", 1.8, outage_factor=0.3),
            SeriesSpec("rate:delivery:webhooks_failed", 0.1, shape="flat"),
            SeriesSpec("gauge:ingest:queue_depth", 5.0, "gauge", outage_factor=60.0),
            SeriesSpec("gauge:delivery:pending_jobs", 3.0, "gauge", shape="backlog"),
            SeriesSpec("capacity:disk.used_pct", 57.0, "capacity", shape="grow"),
            SeriesSpec("capacity:postgres.db_size_mb", 1250.0, "capacity", shape="grow"),
            SeriesSpec("capacity:postgres.connections_used", 15.0, "capacity"),
        ),
        outage=(out0, out0 + 1200), backlog=(bl0, bl0 + 2400))


#: The day factor's range (night .. afternoon peak), for quantising it into histogram variants.
DAY_MIN: Final = 0.35
DAY_MAX: Final = 1.6


def _day(m: Model, e: str = "e") -> str:
    """SQL for the simulator's day factor at epoch second ``e``."""
    x = f"(({e} - {m.day_t0!r}) / {m.day_s!r} + {m.day_phase!r})"
    hour = f"(24 * ({x} - floor({x})))"
    return (f"(0.35 + 1.15 * exp(-power(({hour} - 14.5) / 4.2, 2)) "
            f"+ 0.35 * exp(-power(({hour} - 9.0) / 1.4, 2)))")


def _expr(s: SeriesSpec, m: Model, e: str = "e", day: str = "d") -> str:
    """SQL for the value of ``s`` at epoch second ``e`` (a double precision expression), where
    ``day`` names the day factor computed once per row (see ``_day``)."""
    noise = "(0.9 + 0.2 * random())"
    match s.shape:
        case "flat":
            v = f"{s.base!r} * {noise}"
        case "grow":
            v = f"{s.base!r} * (1 + ({e} - 1.7e9) / 86400.0 * 0.001) * (0.999 + 0.002 * random())"
        case "backlog":
            if m.backlog:
                b0, b1 = m.backlog
                v = (f"CASE WHEN {e} >= {b0!r} AND {e} < {b1!r} THEN 400.0 * (1 - abs(({e} - {b0!r}) / "
                     f"{(b1 - b0)!r} * 2 - 1)) + 5 * random() ELSE {s.base!r} * {noise} END")
            else:
                v = f"{s.base!r} * {noise}"
        case _:
            v = f"{s.base!r} * {day} * {noise}"
    if m.outage and s.outage_factor != 1.0:
        o0, o1 = m.outage
        v = f"({v}) * CASE WHEN {e} >= {o0!r} AND {e} < {o1!r} THEN {s.outage_factor!r} ELSE 1 END"
    if s.kind in {"rate", "gauge"}:
        v = f"round(({v})::numeric, 3)::float8"
    return v


async def _ids(conn: asyncpg.Connection, m: Model) -> dict[str, int]:
    """Series ids for the model (created after the existing ones, dense)."""
    ids = {str(r["name"]): int(r["id"]) for r in await conn.fetch("SELECT id, name FROM series")}
    for s in (*m.series, SeriesSpec(WRITE_HIST, 0.0, "hist")):
        if s.name not in ids:
            ids[s.name] = len(ids) + 1
            await conn.execute("INSERT INTO series (id, name, kind) VALUES ($1, $2, $3)", ids[s.name], s.name,
                               s.kind)
    return ids


def _base_hist(m: Model) -> ExpHistogram:
    """A latency shape (log-normal around ``latency_ms``) of 1,000 samples, deterministic."""
    rnd = random.Random(7)
    h = ExpHistogram(max_buckets=4096)
    for _ in range(1000):
        h.record(rnd.lognormvariate(math.log(m.latency_ms), 0.5))
    return h


async def _partitions(conn: asyncpg.Connection, start: float, end: float) -> None:
    days = sorted({dt(t).date() for t in range(int(start), int(end) + 86400, 86400) if t < end + 86400})
    await ensure_partitions(conn, dt(end), days=days)


async def seconds(conn: asyncpg.Connection, m: Model, start: float, end: float) -> int:
    """1 s frames and histograms for ``[start, end)``; existing seconds are kept. Returns seconds written."""
    await _partitions(conn, start, end)
    ids = await _ids(conn, m)
    n = max(ids.values())
    cols = ["NULL::float8"] * n
    for s in m.series:
        cols[ids[s.name] - 1] = _expr(s, m)
    await conn.execute("SELECT setseed($1)", m.seed)
    status = await conn.execute(
        f"INSERT INTO frames (ts, vals) SELECT to_timestamp(e::float8), ARRAY[{', '.join(cols)}] "
        f"FROM (SELECT e, {_day(m)} AS d FROM generate_series($1::bigint, $2::bigint - 1, 1) AS e) g "
        "ON CONFLICT (ts) DO NOTHING",
        int(start), int(end))
    await _hists(conn, m, ids[WRITE_HIST], start, end, 1)
    return int(status.split()[-1])


#: Histogram variants per call: the day shape is quantised into this many levels (x 2: outage or not),
#: so PostgreSQL joins precomputed arrays instead of building one per second (~100x faster).
LEVELS: Final = 24


async def _hists(conn: asyncpg.Connection, m: Model, sid: int, start: float, end: float, step: int,
                 table: str = "hist_1s") -> None:
    base = _base_hist(m)
    wire = base.to_wire()
    shift = 3 * 2**wire.scale  # x8 latency during the outage: 3 doublings
    mean = base.sum / base.count
    rnd = random.Random(int(start) ^ step)
    rows = []
    for level in range(LEVELS):
        shape = DAY_MIN + (DAY_MAX - DAY_MIN) * (level + 0.5) / LEVELS
        f = m.samples_per_s * step * shape / base.count
        counts = [round(c * f * rnd.uniform(0.8, 1.2)) for c in wire.counts]
        n = sum(counts)
        for outage in (0, 1):
            mult = 8 if outage else 1
            rows.append((level + LEVELS * outage, wire.offset + shift * outage, counts, n, mean * n * mult,
                         (wire.min or 0.0) * mult, (wire.max or 0.0) * mult))
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS gen_variants (k int PRIMARY KEY, off int, "
                       "counts bigint[], n bigint, sum float8, min float8, max float8)")
    await conn.execute("TRUNCATE gen_variants")
    await conn.executemany("INSERT INTO gen_variants VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
    o0, o1 = m.outage if m.outage else (0.0, 0.0)
    await conn.execute(
        f"INSERT INTO {table} (series_id, ts, scale, zero_count, \"offset\", counts, count, sum, min, max) "
        "SELECT $1, to_timestamp(e::float8), $2, 0, v.off, v.counts, v.n, v.sum, v.min, v.max "
        "FROM generate_series($3::bigint, $4::bigint - 1, $5::bigint) AS e JOIN gen_variants v ON v.k = "
        f"least({LEVELS - 1}, greatest(0, floor(({_day(m)} - {DAY_MIN!r}) / {DAY_MAX - DAY_MIN!r} "
        f"* {LEVELS})))::int + CASE WHEN e >= $6 AND e < $7 THEN {LEVELS} ELSE 0 END "
        "WHERE v.n > 0 ON CONFLICT DO NOTHING",
        sid, wire.scale, int(start), int(end), step, o0, o1)


async def rollups(conn: asyncpg.Connection, m: Model, start: float, end: float) -> None:
    """1 min and 15 min rollups for ``[start, end)`` straight from the model (60 / 900 noisy seconds
    each, summarised as n, sum, min, max), and their merged histograms."""
    await _partitions(conn, start, end)
    ids = await _ids(conn, m)
    await conn.execute("SELECT setseed($1)", m.seed)
    for step, table, htable in ((60, "rollup_1m", "hist_1m"), (900, "rollup_15m", "hist_15m")):
        a = math.floor(start / step) * step
        for s in m.series:
            mid = f"(e + {0.5 * step!r})"
            v = _expr(s, m, mid)
            await conn.execute(
                f"INSERT INTO {table} (series_id, ts, n, sum, min, max) "
                f"SELECT $1, to_timestamp(e::float8), $4, v * $4, v * 0.9, v * 1.1 FROM (SELECT e, {v} AS v "
                f"FROM (SELECT e, {_day(m, mid)} AS d "
                f"FROM generate_series($2::bigint, $3::bigint - 1, $4::bigint) AS e) g0) g "
                "ON CONFLICT (series_id, ts) DO NOTHING", ids[s.name], int(a), int(end), step)
        await _hists(conn, m, ids[WRITE_HIST], a, end, step, htable)


async def states(conn: asyncpg.Connection, m: Model, start: float, end: float) -> None:
    """Every component healthy from ``start``; influxdb and ingest down through the outage; delivery
    degraded through the backlog."""
    await _partitions(conn, start, end)
    rows: list[tuple[float, str, str, str | None]] = [(start, c, "healthy", None) for c in m.components]
    if m.outage:
        o0, o1 = m.outage
        rows += [(o0, "influxdb", "down", "connection refused (simulated outage)"),
                 (o1, "influxdb", "healthy", None),
                 (o0 + 5, "ingest", "down", "ingest-1: reports down: InfluxDB unreachable"),
                 (o1 + 10, "ingest", "healthy", None)]
    if m.backlog:
        b0, b1 = m.backlog
        rows += [(b0 + 300, "delivery", "degraded", "delivery-1: pending_jobs 61 > 50"),
                 (b1 - 300, "delivery", "healthy", None)]
    rows = [r for r in rows if start <= r[0] < end]
    await conn.executemany("INSERT INTO states (ts, component, status, reason) VALUES ($1, $2, $3, $4) "
                           "ON CONFLICT DO NOTHING", [(dt(t), c, s, why) for t, c, s, why in rows])


def scale_model(services: int, counters: int, gauges: int, now: float) -> Model:
    """The benchmark's platform: ``services`` x (``counters`` rates + ``gauges`` gauges) series."""
    base = demo_model(now)
    extra: list[SeriesSpec] = []
    for k in range(services):
        extra += [SeriesSpec(f"rate:scale-{k}:c{j}", 10.0 + j) for j in range(counters)]
        extra += [SeriesSpec(f"gauge:scale-{k}:g{j}", 5.0 + j, "gauge", shape="flat") for j in range(gauges)]
    return Model(series=(*base.series, *extra), outage=base.outage, backlog=base.backlog, day_s=base.day_s)



async def past(dsn: str, m: Model, start: float, end: float, chunk_s: float = 3600.0) -> int:
    """The demo's simulated past over ``[start, end)``, newest hour first (so the 1 h and 6 h views fill
    first), each hour rolled up as soon as it is written; skipped where frames exist already.
    Returns the seconds written."""
    from history.schema import migrate
    from history.store import roll_range

    conn = await asyncpg.connect(dsn)
    written = 0
    try:
        await migrate(conn)
        await states(conn, m, start, end)
        hi = end
        while hi > start:
            lo = max(start, hi - chunk_s)
            written += await seconds(conn, m, lo, hi)
            a, b = int(lo) // 60 * 60, -(-int(hi) // 60) * 60
            await roll_range(conn, a, b)
            hi = lo
    finally:
        await conn.close()
    return written
