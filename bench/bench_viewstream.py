"""The view stream of time travel (issue 19): bytes per day, and the time of ``view?at=``.

    .venv/bin/python bench/bench_viewstream.py [--instances 9 2000] [--seconds 300] [--days 7]

Everything real but the platform: the real fold (as bench/bench_stream_bytes.py drives it: the seed's
four services, 20 series per instance, one error a second, the four probes) publishes a snapshot every
10 s and a patch every tick; each message becomes the row the recorder stores
(history/viewstream.stream_row: cut to the default stream, zstd level 3), in a private PostgreSQL 15.

1. **Bytes per day** of the stream, at the demo's scale (9 instances) and at 2,000: the same rows
   stored three ways in the same run, each table's total size (heap, TOAST, index) after VACUUM, per
   second x 86,400: the JSON in a ``bytea`` left to PostgreSQL's TOAST compression (pglz, the
   default; and lz4), and zstd per row (what opsdash does). TOAST compresses only values over ~2 KB,
   so the patches (most rows) stay raw there.
2. **view?at= time** on ``view_blocks`` holding ``--days`` of the demo-scale stream packed as the
   recorder packs every minute older than 2 min (schema version 6: the sample's minutes packed once by
   history/viewstream's own packing, then repeated with seqs and times shifted, so every moment has its
   block): the rebuild (history/viewstream.view_at: the block with the latest kept snapshot, the
   patches after it, decompress, decode, apply) at 60 random moments, against the baseline of the same
   run: fetching and decoding that block alone. Aim: <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import msgspec
from bench_stream_bytes import COUNTERS, PROBES, SERVICES

from history.schema import ensure_partitions, migrate
from history.viewstream import (
    BLOCK_S,
    INSERT_SQL,
    StreamMessage,
    StreamRow,
    _derived,
    _pack,
    compress_block,
    decode_block,
    decompress,
    stream_row,
    view_at,
)
from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import ViewPatch, ViewSnapshot, encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.graph import GraphConfig, GraphSection
from telemetry_bus.reporter import ReporterCore
from tests.support.servers import PrivatePostgres

SNAPSHOT_EVERY = 10


def stream(n: int, seconds: int, warm: int = 0) -> list[StreamRow]:
    """The rows of ``seconds`` ticks of the real fold at ``n`` instances (a snapshot every 10 s), after
    ``warm`` ticks not recorded (a view's series fill up to 900 points in its first 15 minutes)."""
    rnd = random.Random(n)
    t0 = 1_800_000_000.0
    cfg = AggregatorConfig(max_instances_per_service=max(256, n))
    fold = Fold(cfg, "$ops", t0 - warm)  # started before the warm-up: its series hold values, not nulls
    fold.view.add("graph", GraphSection(GraphConfig(), [*cfg.expected_services, *cfg.expected_probes]),
                  after="health")
    per = max(1, round(n / len(SERVICES)))
    cores = {(s, f"{s}-{i}"): ReporterCore(f"boot-{s}-{i}", 1.0, t0 - warm)
             for i in range(per) for s in SERVICES}
    rows: list[StreamRow] = []
    for sec in range(-warm, seconds):
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
        if sec < 0:
            continue
        if out.base > 0 and sec > 0:
            rows.append(stream_row("patch", encode(ViewPatch(seq=out.seq, base=out.base, ts=out.ts,
                                                              patch=out.patch, append=out.append,
                                                              errors=out.errors))))
        if sec % SNAPSHOT_EVERY == 0:
            rows.append(stream_row("snapshot", encode(ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view))))
    return rows


async def bytes_per_day(conn: asyncpg.Connection, rows: list[StreamRow], seconds: int) -> dict[str, float]:
    """Bytes per day of ``rows`` stored as raw JSON under TOAST pglz / lz4, and zstd'd per row."""
    out: dict[str, float] = {}
    for name, compression, zstd in (("toast_pglz", "pglz", False), ("toast_lz4", "lz4", False),
                                    ("zstd", None, True)):
        table = f"vs_{name}"
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(f"CREATE TABLE {table} (ts timestamptz NOT NULL, seq bigint NOT NULL, "
                           f"snap boolean NOT NULL, base bigint, raw_len int NOT NULL, body bytea NOT NULL, "
                           f"PRIMARY KEY (snap, ts, seq))")
        if compression:
            await conn.execute(f"ALTER TABLE {table} ALTER COLUMN body SET COMPRESSION {compression}")
        else:
            await conn.execute(f"ALTER TABLE {table} ALTER COLUMN body SET STORAGE EXTERNAL")
        data = rows if zstd else [(*r[:5], decompress(r[5])) for r in rows]
        # the sample repeated to an hour (times and seqs shifted): a table's fixed pages (index root,
        # free-space and visibility maps) must not count as if they were per-second bytes
        span = max(r[1] for r in rows) + 1
        reps = max(1, 3600 // seconds)
        await conn.executemany(INSERT_SQL.replace("view_stream", table), [
            (r[0] + timedelta(seconds=k * seconds), r[1] + k * span, r[2],
             None if r[3] is None else r[3] + k * span, r[4], r[5]) for k in range(reps) for r in data])
        await conn.execute(f"VACUUM ANALYZE {table}")
        size = int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table))
        out[name] = size / (reps * seconds) * 86400
    out["raw_json"] = sum(r[4] for r in rows) / seconds * 86400  # the bare JSON, no row or index
    return out


async def fill(conn: asyncpg.Connection, rows: list[StreamRow], seconds: int, days: int) -> float:
    """``view_blocks`` with ``days`` of the sample packed and repeated (seq and ts shifted); returns the
    end time."""
    end = time.time() - 300
    end -= end % BLOCK_S
    start = end - days * 86400
    t0 = rows[0][0].timestamp()
    seqs = [r[1] for r in rows]
    span = max(seqs) - min(seqs) + 1
    await ensure_partitions(conn, datetime.now(UTC), days=[
        (datetime.fromtimestamp(start, UTC) + timedelta(days=d)).date() for d in range(days + 2)])
    msgs = sorted((StreamMessage(r[0].timestamp(), r[1], r[3], msgspec.json.decode(decompress(r[5])))
                   for r in rows), key=lambda m: m.key)
    minutes: dict[int, list[StreamMessage]] = {}
    for m in msgs:
        minutes.setdefault(int((m.ts - t0) // BLOCK_S), []).append(m)
    packed = {k: _pack(v, _derived(v), columns=True) for k, v in minutes.items()}
    reps = days * 86400 // seconds
    batch: list[tuple[datetime, datetime | None, datetime | None, int, int, bytes]] = []
    for k in range(reps):
        dt_s, dseq = start - t0 + k * seconds, k * span
        for minute, d in packed.items():
            body = dict(d)
            body["snaps"] = [[ts + dt_s, seq + dseq, state] for ts, seq, state in d["snaps"]]
            body["heads"] = [[ts + dt_s, seq + dseq, base + dseq] for ts, seq, base in d["heads"]]
            raw = msgspec.json.encode(body)
            snaps = [datetime.fromtimestamp(ts, UTC) for ts, _, _ in body["snaps"]]
            batch.append((datetime.fromtimestamp(t0 + dt_s + minute * BLOCK_S, UTC),
                          snaps[0] if snaps else None, snaps[-1] if snaps else None,
                          len(body["snaps"]) + len(body["heads"]), len(raw), compress_block(raw)))
        if len(batch) >= 500 or k == reps - 1:
            await conn.executemany("INSERT INTO view_blocks VALUES ($1, $2, $3, $4, $5, $6)", batch)
            batch = []
    await conn.execute("VACUUM ANALYZE view_blocks")
    return start + reps * seconds


async def timings(conn: asyncpg.Connection, lo: float, hi: float,
                  n: int = 60) -> tuple[list[float], list[float]]:
    rnd = random.Random(7)
    rebuild: list[float] = []
    base: list[float] = []
    await view_at(conn, (lo + hi) / 2)  # warm-up
    for _ in range(n):
        at = rnd.uniform(lo + 20, hi)
        t = time.perf_counter()
        got = await view_at(conn, at)
        rebuild.append((time.perf_counter() - t) * 1000)
        assert got is not None and got.ts <= at
        t = time.perf_counter()
        row = await conn.fetchrow("SELECT body FROM view_blocks WHERE ts <= $1 ORDER BY ts DESC LIMIT 1",
                                  datetime.fromtimestamp(at, UTC))
        decode_block(row["body"])
        base.append((time.perf_counter() - t) * 1000)
    return rebuild, base


def pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, nargs="+", default=[9, 2000])
    ap.add_argument("--seconds", type=int, default=BLOCK_S, help="a multiple of the blocks' 5 min")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--warm", type=int, nargs="+", default=[900, 0],
                    help="ticks before recording, per --instances (900: series full, as after 15 min)")
    args = ap.parse_args()
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="opsdash-bench-vs-"))).start()
    try:
        admin = await asyncpg.connect(pg.admin_dsn)
        await admin.execute("CREATE DATABASE bench")
        await admin.close()
        conn = await asyncpg.connect(pg.dsn("bench"))
        await migrate(conn)
        print(f"# view stream bytes per day ({args.seconds} s of the real fold, a snapshot every "
              f"{SNAPSHOT_EVERY} s, default stream)")
        print(f"{'instances':>9} {'rows/s':>7} {'raw JSON':>10} {'TOAST pglz':>11} {'TOAST lz4':>10} "
              f"{'zstd':>9} {'zstd/pglz':>10} {'zstd/lz4':>9}")
        demo_rows: list[StreamRow] = []
        for i, n in enumerate(args.instances):
            warm = args.warm[min(i, len(args.warm) - 1)]
            rows = stream(n, args.seconds, warm)
            if not demo_rows:
                demo_rows = rows
            b = await bytes_per_day(conn, rows, args.seconds)
            mib = 2 ** 20
            print(f"{n:>9,} {len(rows) / args.seconds:>7.2f} {b['raw_json'] / mib:>8.1f}Mi "
                  f"{b['toast_pglz'] / mib:>9.1f}Mi {b['toast_lz4'] / mib:>8.1f}Mi {b['zstd'] / mib:>7.1f}Mi "
                  f"{b['zstd'] / b['toast_pglz']:>10.3f} {b['zstd'] / b['toast_lz4']:>9.3f}")
            print(f"RESULT view stream at {n:,} instances (after {warm} s): {b['zstd'] / mib:.1f} MiB/day "
                  f"zstd "
                  f"({b['zstd'] * 7 / 2**30:.2f} GiB for 7 days) vs {b['toast_lz4'] / mib:.1f} MiB/day "
                  f"TOAST lz4, "
                  f"{b['toast_pglz'] / mib:.1f} MiB/day TOAST pglz")
        t = time.perf_counter()
        end = await fill(conn, demo_rows, args.seconds, args.days)
        count = await conn.fetchval("SELECT count(*) FROM view_blocks")
        print(f"# view_blocks filled: {count:,} packed blocks = {args.days} d at {args.instances[0]} "
              f"instances "
              f"in {time.perf_counter() - t:.0f} s")
        rebuild, base = await timings(conn, end - args.days * 86400, end)
        print(f"view?at= rebuild (the latest kept snapshot + the patches after it): p50 "
              f"{pct(rebuild, 0.5):.1f} ms, p99 {pct(rebuild, 0.99):.1f} ms; the block alone (fetch, "
              f"decompress, decode) p50 {pct(base, 0.5):.1f} ms")
        print(f"RESULT view?at= over {args.days} d: p50 {pct(rebuild, 0.5):.1f} ms, max "
              f"{max(rebuild):.1f} ms ({statistics.median(rebuild) / statistics.median(base):.2f}x the "
              f"block alone) aim <= 100 ms: {'met' if max(rebuild) <= 100 else 'NOT met'}")
        await conn.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
