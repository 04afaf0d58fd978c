"""Benchmark: searching 5,000,000 stored events (design.md section 11; aims from issue 12).

    .venv/bin/python bench/bench_events.py [--dsn postgresql://postgres@HOST:PORT/postgres]
                                           [--events 5000000] [--runs 15] [--no-trgm]

Without ``--dsn`` it starts a private PostgreSQL (the machine's binaries) in a temporary directory.
Creates a scratch database with the history schema (history/schema.py, all migrations), generates the
events with one SQL statement (7 days, 8 services x 4 instances, the simulator's kinds and messages,
48 tenants, 10,000 devices), VACUUM ANALYZE, then times each query ``--runs`` times after one warm-up
and prints median and p95, through history/events.py exactly as the API runs them:

- two-word searches over 7 days, first page of 100 (aim <= 100 ms): a selective pair, a rare pair and
  a common pair; and the second page of the first;
- service + severity over the last 24 h, first page of 100 (aim <= 50 ms);
- side by side, in the same run: the same searches with ``ILIKE '%word%'`` on an unindexed copy of the
  table (the baseline every ratio is against), and with ``ILIKE`` on that copy with a pg_trgm GIN index
  on the message (the alternative to tsvector + GIN).

The recorder's ingest cost (2,000 events/s, aim <= 20 % of one core) is measured by
``--ingest``: a real mosquitto, reporters publishing events, the recorder process writing them
(needs history/recorder.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from history.events import EventFilter, decode_cursor, search_events  # noqa: E402
from history.schema import ensure_partitions, migrate  # noqa: E402
from opsdash.servers import PrivatePostgres  # noqa: E402

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
           "cyberdyne", "soylent", "massive", "aperture", "blackmesa", "oscorp", "gringotts", "monarch",
           "vandelay", "dundermifflin", "pied-piper", "prestige", "bluth", "krusty", "duff", "nakatomi",
           "virtucon", "genco", "sterling", "rekall", "weyland", "ollivander", "zorg", "nostromo", "octan",
           "gekko", "lacuna", "cogswell", "spacely", "ingen", "buynlarge", "contoso", "fabrikam",
           "northwind", "tailspin", "adventureworks", "litware", "proseware", "woodgrove"]

# One row per event: g in 1..n, newest first (g = 1 is "now"). Pseudo-random but repeatable choices
# from g (hash arithmetic), so two runs store the same events.
GENERATE = """
INSERT INTO events (ts, service, instance, boot, seq, type, severity, message, attrs)
SELECT $1::timestamptz - (g::float8 / $2) * interval '7 days' AS ts,
       s.service, s.service || '-' || (1 + (g / 7) % 4) AS instance, 'bench' AS boot, g AS seq,
       k.kind, k.severity, k.message, jsonb_build_object('tenant', t.tenant, 'device', d.device) AS attrs
FROM generate_series(1::bigint, $2::bigint) g
CROSS JOIN LATERAL (SELECT (ARRAY['ingest','evaluator','dispatcher','delivery','ingest','delivery',
                                  'gateway','billing'])[(1 + (g * 7919) % 8)::int] AS service) s
CROSS JOIN LATERAL (SELECT $3::text[] AS tenants) tt
CROSS JOIN LATERAL (SELECT tt.tenants[(1 + (g * 104729) % 48)::int] AS tenant) t
CROSS JOIN LATERAL (SELECT 'dev-' || lpad(((g * 15485863) % 10000)::text, 4, '0') AS device) d
CROSS JOIN LATERAL (
  SELECT * FROM (VALUES
    (0, 'webhook_timeout', 'error',
        'POST https://hooks.' || t.tenant || '.example/alerts timed out after 10 s'),
    (1, 'webhook_failed', 'error', 'POST https://hooks.' || t.tenant || '.example/alerts returned '
                                   || (ARRAY['500','502','503','404','410'])[(1 + g % 5)::int]),
    (2, 'parse_error', 'error',
        'Invalid JSON from ' || d.device || ': Expecting '','' delimiter: line 1 column ' || (20 + g % 160)),
    (3, 'auth_failed', 'warning', 'device ' || d.device || ': bad signature on connect'),
    (4, 'rate_limited', 'warning',
        'tenant ' || t.tenant || ' over ' || (ARRAY['200','500','1000'])[(1 + g % 3)::int]
        || ' msg/s: throttled'),
    (5, 'log', 'warning', 'garbage collection paused the worker for ' || (120 + g % 780) || ' ms'),
    (6, 'log', 'critical', 'InfluxDB write retried 3 times: 503 Service Unavailable (compaction running)'),
    (7, 'rule_evaluated', 'info', 'rule r-' || (g % 997) || ' for ' || t.tenant || ' evaluated in '
                                  || (g % 90) || ' ms'),
    (8, 'quarantined', 'warning', 'message from ' || d.device || ' quarantined: unknown schema version 7'),
    (9, 'state_change', 'info', 'instance came back after ' || (g % 60) || ' s')
  ) AS v(n, kind, severity, message)
  WHERE v.n = CASE WHEN (g * 31) % 100 < 12 THEN 0 WHEN (g * 31) % 100 < 16 THEN 1
                   WHEN (g * 31) % 100 < 28 THEN 2 WHEN (g * 31) % 100 < 34 THEN 3
                   WHEN (g * 31) % 100 < 40 THEN 4 WHEN (g * 31) % 100 < 52 THEN 5
                   WHEN (g * 31) % 100 < 53 THEN 6 WHEN (g * 31) % 100 < 88 THEN 7
                   WHEN (g * 31) % 100 < 92 THEN 8 ELSE 9 END
) k
"""

PLAIN = """
CREATE TABLE events_plain AS SELECT id, ts, service, instance, boot, seq, type, severity, message, attrs
FROM events;
"""


def ilike_sql(words: list[str], service: str | None, severity: tuple[str, ...] | None,
              start: dt.datetime) -> tuple[str, list[Any]]:
    where = ["ts >= $1"]
    args: list[Any] = [start]
    for w in words:
        args.append(f"%{w}%")
        where.append(f"message ILIKE ${len(args)}")
    if service:
        args.append(service)
        where.append(f"service = ${len(args)}")
    if severity:
        args.append(list(severity))
        where.append(f"severity = ANY(${len(args)}::text[])")
    return (f"SELECT id, ts, service, instance, type, severity, message, attrs FROM events_plain "
            f"WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT 101", args)


async def timed(fn: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float, Any]:
    result = await fn()  # warm-up: plans, buffers
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))], result


def row(figure: str, value: str, aim: str = "-", met: str = "-") -> None:
    print(f"| {figure} | {value} | {aim} | {met} |", flush=True)


async def bench(url: str, n: int, runs: int, trgm: bool) -> None:
    conn = await asyncpg.connect(url)
    now = dt.datetime.now(dt.UTC)
    await migrate(conn, now=now)
    await ensure_partitions(conn, now, days=[(now - dt.timedelta(days=d)).date() for d in range(9)])
    t = time.perf_counter()
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET maintenance_work_mem = '512MB'")
    # bulk load: the schema's indexes are dropped and built again after (a GIN index builds far
    # faster at once than row by row); the generated search column is computed on insert as always
    indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' "
                               "AND indexdef NOT LIKE '%UNIQUE%'")
    for ix in indexes:
        await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
    await conn.execute(GENERATE, now, n, TENANTS, timeout=3600)
    for ix in indexes:
        # pg_indexes shows a partitioned index as "ON ONLY events": that alone would index no partition
        await conn.execute(ix["indexdef"].replace(" ON ONLY ", " ON "), timeout=3600)
    gen_s = time.perf_counter() - t
    await conn.execute("VACUUM ANALYZE events")
    size = await conn.fetchval("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                               "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass")
    print(f"generated {n:,} events over 7 days in {gen_s:.0f} s (table + indexes {size})", flush=True)
    t = time.perf_counter()
    await conn.execute(PLAIN, timeout=3600)
    await conn.execute("VACUUM ANALYZE events_plain")
    print(f"unindexed copy in {time.perf_counter() - t:.0f} s", flush=True)

    week = (now - dt.timedelta(days=7)).timestamp()
    day = (now - dt.timedelta(days=1)).timestamp()
    # a rare pair that exists: the device and a word of one parse error (a device has ~60 of them)
    rare = await conn.fetchval("SELECT attrs->>'device' FROM events WHERE type = 'parse_error' LIMIT 1")
    searches = [("selective pair", "acme timed"), ("rare pair", f"{rare} delimiter"),
                ("common pair", "post alerts")]
    print("\n| figure | value | aim | met |\n|---|---|---|---|")
    row("events bench setup", f"{n:,} events over 7 days, {runs} timed runs after a warm-up, "
        "first page of 100, median (p95)")
    base: dict[str, float] = {}
    for label, q in searches:
        words = q.replace("-", " ").split()
        sql, args = ilike_sql(q.split(), None, None, now - dt.timedelta(days=7))
        med, p95, rows = await timed(lambda sql=sql, args=args: conn.fetch(sql, *args), max(3, runs // 3))
        base[label] = med
        row(f"search {label} \"{q}\" over 7 d: ILIKE, unindexed (baseline)",
            f"{med:,.1f} ms ({p95:,.1f}), {min(len(rows), 100)} rows")
        f = EventFilter(start=week, q=q)
        med, p95, page = await timed(lambda f=f: search_events(conn, f), runs)
        hits = len(page["events"])
        row(f"search {label} \"{q}\" over 7 d: tsvector + GIN", f"{med:,.1f} ms ({p95:,.1f}), {hits} rows, "
            f"{base[label] / med:,.1f}x faster than ILIKE", "<= 100 ms", "yes" if p95 <= 100 else "NO")
        if label == "selective pair" and page["next"]:
            f2 = EventFilter(start=week, q=q, before=decode_cursor(page["next"]))
            med2, p952, _ = await timed(lambda f2=f2: search_events(conn, f2), runs)
            row(f"search {label} over 7 d: tsvector + GIN, second page", f"{med2:,.1f} ms ({p952:,.1f})",
                "<= 100 ms", "yes" if p952 <= 100 else "NO")
        del words
    sql, args = ilike_sql([], "delivery", ("error", "critical"), now - dt.timedelta(days=1))
    bmed, bp95, _ = await timed(lambda: conn.fetch(sql, *args), max(3, runs // 3))
    row("filter service=delivery severity=error over 24 h: unindexed (baseline)",
        f"{bmed:,.1f} ms ({bp95:,.1f})")
    f = EventFilter(start=day, services=("delivery",), severity="error")
    med, p95, page = await timed(lambda: search_events(conn, f), runs)
    row("filter service=delivery severity=error over 24 h: indexed", f"{med:,.1f} ms ({p95:,.1f}), "
        f"{len(page['events'])} rows, {bmed / med:,.1f}x faster", "<= 50 ms", "yes" if p95 <= 50 else "NO")
    if trgm:
        t = time.perf_counter()
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        await conn.execute("CREATE INDEX events_plain_trgm ON events_plain USING gin (message gin_trgm_ops)",
                           timeout=3600)
        await conn.execute("CREATE INDEX events_plain_ts ON events_plain (ts DESC, id DESC)", timeout=3600)
        await conn.execute("ANALYZE events_plain")
        tsize = await conn.fetchval("SELECT pg_size_pretty(pg_relation_size('events_plain_trgm'))")
        gsize = await conn.fetchval(
            "SELECT pg_size_pretty(sum(pg_relation_size(c.oid))) FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = 'events_search'::regclass")
        row("pg_trgm GIN index on the message", f"built in {time.perf_counter() - t:.0f} s, {tsize} "
            f"(tsvector GIN: {gsize})")
        for label, q in searches:
            sql, args = ilike_sql(q.split(), None, None, now - dt.timedelta(days=7))
            med, p95, rows = await timed(lambda sql=sql, args=args: conn.fetch(sql, *args), runs)
            row(f"search {label} \"{q}\" over 7 d: ILIKE + pg_trgm GIN", f"{med:,.1f} ms ({p95:,.1f}), "
                f"{min(len(rows), 100)} rows, {base[label] / med:,.1f}x faster than ILIKE")
    await conn.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="a PostgreSQL superuser DSN (default: a private server)")
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-trgm", action="store_true", help="skip the pg_trgm comparison")
    args = ap.parse_args()
    server = None
    dsn = args.dsn
    if dsn is None:
        server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="opsdash-bench-events-"))).start()
        dsn = server.admin_dsn
    name = f"opsdash_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await bench(dsn.rsplit("/", 1)[0] + f"/{name}", args.events, args.runs, not args.no_trgm)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
