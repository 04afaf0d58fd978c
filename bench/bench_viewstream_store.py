"""The view stream's share of the whole history store (issue 19 aim: <= 20 % at 2,000 instances).

    .venv/bin/python bench/bench_viewstream_store.py [--instances 200 2000] [--seconds 300] [--warm 900 300]

Everything real but the platform: the real fold (bench_stream_bytes.py's load: the seed's four
services, 20 series per instance, one error event a second, four probes) ticks every second; what the
aggregator would publish for history (``<root>/v1/view/second`` from history/second.py, the view
snapshot every 10 s and the patch every tick) and the events and probe results the recorder stores
become the recorder's items (history/recorder.py decodes them the same way) and are written by the
recorder's own ``Writer`` (history/store.py) into a private PostgreSQL 15, then rolled up and the view
stream packed into minute blocks (history/viewstream.compact), as the recorder does.

The ``--seconds`` sample is written again shifted in time (seq and ts) to make an hour, so a table's
fixed pages (index roots, free-space maps, empty partitions) do not count as per-second bytes. The
sample is a whole number of the stream's blocks (5 min) and starts at a block's start, so no block
holds two copies of it (zstd would find the repetition and flatter the figure). Each
table's bytes per second (whole relations: heap, TOAST, indexes, after VACUUM) x what the retention
keeps (``raw_hours`` 48 for the 1 s tables, ``retention_days`` 7 for the rest) is its share of the
store in steady state. Baseline in the same run: the stream as rows of one message each (zstd per row,
what schema version 4 stored), measured before the packing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import msgspec
import zstandard
from bench_stream_bytes import COUNTERS, PROBES, SERVICES

from history.second import second_record
from history.store import Item, Writer
from history.viewstream import BLOCK_LEVEL, BLOCK_S, StreamRow, compact, stream_row
from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import ViewPatch, ViewSnapshot, decode_event, decode_probe, encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.graph import GraphConfig, GraphSection
from telemetry_bus.reporter import ReporterCore
from tests.support.servers import PrivatePostgres

SNAPSHOT_EVERY = 10
STREAM = ("view_stream", "view_blocks")


def sample(n: int, seconds: int, warm: int, t0: float) -> tuple[list[list[Item]], int]:
    """Per recorded second, the recorder's items: the view stream's rows, the second's record, the
    event and the probe results; and the bytes of the last view's ``services`` with the per-instance
    detail (what the stream does not keep), zstd at the blocks' level."""
    rnd = random.Random(n)
    cfg = AggregatorConfig(max_instances_per_service=max(256, n))
    start = t0 - warm
    fold = Fold(cfg, "$ops", start)
    fold.view.add("graph", GraphSection(GraphConfig(), [*cfg.expected_services, *cfg.expected_probes]),
                  after="health")
    per = max(1, round(n / len(SERVICES)))
    cores = {(s, f"{s}-{i}"): ReporterCore(f"boot-{s}-{i}", 1.0, start) for i in range(per) for s in SERVICES}
    out: list[list[Item]] = []
    last: dict[str, Any] = {}
    for sec in range(-warm, seconds):
        t = t0 + sec
        items: list[Item] = []
        for target in PROBES:
            payload = encode({"ts": t, "status": "healthy", "latency_ms": round(rnd.uniform(1, 5), 2),
                              "period_s": 5})
            fold.feed(topics.probe("$ops", target), payload, t)
            res = decode_probe(payload)
            items.append(Item("probe", t, msgspec.structs.asdict(res), target))
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
        ev = encode({"boot": "boot-delivery-0", "seq": sec + warm + 1, "ts": t, "kind": "webhook_timeout",
                     "message": f"POST https://hooks.example/t{sec % 40}/alerts timed out after 10 s"})
        fold.feed(topics.events("$ops", "delivery", "delivery-0"), ev, t + 0.5)
        res_ev = decode_event(ev)
        items.append(Item("event", t, msgspec.structs.asdict(res_ev), "delivery", "delivery-0"))
        out_t = fold.tick(t + 0.9)
        last = out_t.view
        if sec < 0:
            continue
        rec = second_record(fold, out_t.view, out_t.ts, list(out_t.errors))
        if rec is not None:
            items.append(Item("second", float(rec["ts"]), {}, raw=encode(rec)))
        rows: list[StreamRow] = []
        if out_t.base > 0 and sec > 0:
            rows.append(stream_row("patch", encode(ViewPatch(seq=out_t.seq, base=out_t.base, ts=out_t.ts,
                                                             patch=out_t.patch, append=out_t.append,
                                                             errors=out_t.errors))))
        if sec % SNAPSHOT_EVERY == 0:
            rows.append(stream_row("snapshot", encode(ViewSnapshot(seq=out_t.seq, ts=out_t.ts,
                                                                   state=out_t.view))))
        items.extend(Item("view", r[0].timestamp(), {"row": r}) for r in rows)
        out.append(items)
    detail = len(zstandard.ZstdCompressor(level=BLOCK_LEVEL).compress(encode(last["services"])))
    return out, detail


def shifted(items: list[Item], dt_s: float, dseq: int) -> list[Item]:
    """The same items ``dt_s`` later (the view rows' seq ``dseq`` on: each copy is its own chain)."""
    out: list[Item] = []
    for it in items:
        if it.kind == "view":
            ts, seq, snap, base, raw_len, body = it.data["row"]
            row = (ts + timedelta(seconds=dt_s), seq + dseq, snap, None if base is None else base + dseq,
                   raw_len, body)
            out.append(Item("view", it.ts + dt_s, {"row": row}))
        elif it.kind == "second":
            assert it.raw is not None
            d: dict[str, Any] = msgspec.json.decode(it.raw)
            d["ts"] = d["ts"] + dt_s
            out.append(Item("second", it.ts + dt_s, {}, raw=encode(d)))
        else:
            d = dict(it.data)
            d["ts"] = d["ts"] + dt_s
            if it.kind == "event":
                d["seq"] = int(d["seq"]) + int(dt_s)
            out.append(Item(it.kind, it.ts + dt_s, d, it.service, it.instance))
    return out


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    """Bytes of every partitioned table (all its partitions, with TOAST and indexes)."""
    rows = await conn.fetch(
        "SELECT p.relname AS t, sum(pg_total_relation_size(c.oid)) AS b FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'r' "
        "GROUP BY p.relname")
    return {str(r["t"]): int(r["b"]) for r in rows}


async def measure(dsn: str, n: int, seconds: int, warm: int, reps: int) -> dict[str, Any]:
    t0 = float(int(time.time()) // 3600 * 3600 - 3 * 3600)  # an hour boundary, 3 h ago (within raw_hours)
    assert t0 % BLOCK_S == 0 and seconds % BLOCK_S == 0  # every copy fills its own blocks
    t = time.perf_counter()
    per_sec, detail = sample(n, seconds, warm, t0)
    gen_s = time.perf_counter() - t
    writer = Writer(dsn, 7, 48, 2)
    await writer.open()
    span = max(it.data["row"][1] for items in per_sec for it in items if it.kind == "view") + 1
    try:
        for k in range(reps):
            for items in per_sec:
                await writer.write(shifted(items, k * seconds, k * span) if k else items)
            await writer.rollup()
        await writer.rollup(force=True)
        assert writer.pool is not None
        async with writer.pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE")
            before = await sizes(conn)
            t = time.perf_counter()
            while await compact(conn, t0 + reps * seconds + 3600):
                pass
            pack_s = time.perf_counter() - t
            await conn.execute("VACUUM FULL view_stream")  # the packed rows' space given back
            await conn.execute("VACUUM ANALYZE")
            after = await sizes(conn)
            blocks = int(await conn.fetchval("SELECT count(*) FROM view_blocks"))
            shape = await conn.fetchrow("SELECT avg(length(body)) AS b, avg(messages) AS m, "
                                        "avg(raw_len) AS r FROM view_blocks")
    finally:
        await writer.close()
    total_s = reps * seconds
    keep = {t: (48 * 3600 if t in ("frames", "hist_1s") else 7 * 86400) for t in after}

    def store(sz: dict[str, int], stream_tables: tuple[str, ...]) -> tuple[float, float]:
        whole = sum(sz[t] / total_s * keep[t] for t in sz if t not in STREAM)
        stream = sum(sz[t] / total_s * keep[t] for t in stream_tables)
        return stream, whole + stream

    rows_stream, rows_total = store(before, ("view_stream",))
    blk_stream, blk_total = store(after, STREAM)
    ev = sum(after[t] / total_s * keep[t] for t in ("events", "probe_results"))
    return {"n": n, "ev": ev, "detail": detail, "gen_s": gen_s, "blocks": blocks,
            "block_bytes": float(shape["b"]), "block_msgs": float(shape["m"]), "block_raw": float(shape["r"]),
            "pack_ms_per_block": pack_s / max(1, blocks) * 1000,
            "after": after,
            "per_day": {t: after[t] / total_s * 86400 for t in after},
            "rows": (rows_stream, rows_total), "packed": (blk_stream, blk_total)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--seconds", type=int, default=BLOCK_S)
    ap.add_argument("--warm", type=int, nargs="+", default=[900, 300],
                    help="ticks before recording, per --instances (900: series full, as after 15 min)")
    ap.add_argument("--hours", type=float, default=1.0, help="the sample repeated to this long")
    args = ap.parse_args()
    if args.seconds % BLOCK_S:
        ap.error(f"--seconds: a multiple of the stream's block ({BLOCK_S} s)")
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="opsdash-bench-vss-"))).start()
    gib = 2 ** 30
    try:
        for i, n in enumerate(args.instances):
            warm = args.warm[min(i, len(args.warm) - 1)]
            admin = await asyncpg.connect(pg.admin_dsn)
            await admin.execute(f"CREATE DATABASE b{n}")
            await admin.close()
            reps = max(1, round(args.hours * 3600 / args.seconds))
            r = await measure(pg.dsn(f"b{n}"), n, args.seconds, warm, reps)
            print(f"# {n:,} instances: {args.seconds} s of the real fold after {warm} s warm-up "
                  f"(generated in {r['gen_s']:.0f} s), written {reps}x shifted; MiB per day by table:")
            print("  " + ", ".join(f"{t} {b / 2**20:.1f}" for t, b in sorted(r["per_day"].items(),
                                                                            key=lambda x: -x[1]) if b > 0))
            rs, rt = r["rows"]
            bs, bt = r["packed"]
            print(f"  {r['blocks']} blocks: {r['block_bytes'] / 1024:.1f} KiB each "
                  f"({r['block_raw'] / 1024:.0f} KiB of JSON), {r['block_msgs']:.1f} messages kept each")
            print(f"  store in steady state (48 h of 1 s tables, 7 d of the rest): {bt / gib:.3f} GiB, of "
                  f"which the view stream {bs / gib:.3f} GiB, events and probe results "
                  f"{r['ev'] / gib:.3f} GiB; "
                  f"packing {r['pack_ms_per_block']:.1f} ms a block of {BLOCK_S // 60} min")
            d = r["detail"]
            print(f"  not kept: services with per-instance detail {d / 1024:.0f} KiB zstd a copy: once a "
                  f"minute {d * 1440 / 2**20:.0f} MiB/day, every 10 s {d * 8640 / 2**20:.0f} MiB/day, every "
                  f"15 min {d * 96 / 2**20:.1f} MiB/day (share with it once a minute: "
                  f"{(bs + d * 1440 * 7) / (bt + d * 1440 * 7):.3f})")
            print(f"  without events and probe results in the store (series, states, stream only): "
                  f"{bs / (bt - r['ev']):.3f}")
            print(f"RESULT view stream share of the history store at {n:,} instances: {bs / bt:.3f} "
                  f"({bs / 2**20 / 7:.1f} MiB/day) aim <= 0.20: {'met' if bs / bt <= 0.2 else 'NOT met'}; "
                  f"baseline one row per message: {rs / rt:.3f} ({rs / 2**20 / 7:.1f} MiB/day), "
                  f"packed/rows {bs / rs:.3f}x")
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
