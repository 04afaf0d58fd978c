"""History benchmark (issue 11): the recorder's cost at scale, bytes on disk, query times.

    .venv/bin/python bench/bench_history.py [--instances 2000] [--series 20] [--seconds 40]
                                            [--skip-recorder] [--skip-queries] [--json out.json]

Everything real: a private mosquitto and a private PostgreSQL (initdb, fsync off like the tests), and
``opsdash aggregator`` / ``opsdash recorder`` as subprocesses with history on.

1. **Recorder cost** at the scale of bench/bench_e2e.py (2,000 instances x 20 series at 1 s from 4
   publisher processes, 10 services): the recorder's CPU (from /proc) beside the aggregator's in the
   same run (the baseline: the ratio says what history adds to the live path's own cost); its lag
   (``lag_s`` of its self-report: age of the oldest unwritten message), buffer and drops; rows/s.
   Aim: <= 25 % of one core, lag <= 2 s.
2. **Bytes on disk per day** at that scale: the growth of the 1 s tables (frames, 1 s histograms) over
   the run, per second, x 86,400, plus the rollups of a day; per stored point, against Netdata's
   published cost (dbengine tier 0: ~0.6 bytes per point on disk, 4 bytes uncompressed; tier 1:
   ~6 bytes per per-minute point; learn.netdata.cloud "Disk Requirements & Retention").
3. **Query times** on a database holding 7 days at that scale, generated with SQL
   (history/generate.py: 1 min and 15 min rollups and histograms of 7 days, 1 s data for the last 2
   hours), through the same ``HistoryReader`` the gateway uses: 24 h of one series at 1 min step; 7 d
   of 6 series at the default step; p99 over 7 d from merged histograms. Beside them the same questions
   to a plain table (one row per point and second, unpartitioned, no rollups, primary key (series, ts))
   holding the 6 series at 1 s for 7 days, and 1 s histograms for 24 h (7 days of those would be
   ~1.5 GB: the p99 baseline covers 24 h, i.e. 1/7 of the range, which flatters the baseline).
   Aims: 50 ms, 200 ms, 300 ms. Medians of 7 runs after 1 warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiomqtt  # noqa: E402
import asyncpg  # noqa: E402
from bench_e2e import cpu_seconds, spawn_role  # noqa: E402

from history import generate  # noqa: E402
from history.query import HistoryReader  # noqa: E402
from history.schema import migrate  # noqa: E402
from opsdash.servers import Mosquitto, PrivatePostgres  # noqa: E402

NETDATA_TIER0_B = 0.6
NETDATA_TIER1_B = 6.0


def start(part: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "opsdash.cli", "--log-level", "WARNING", part],
                            env={**os.environ, **env}, start_new_session=True, cwd=ROOT)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(2)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


async def raw_bytes(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        out = {}
        for t in ("frames", "hist_1s", "rollup_1m", "hist_1m", "rollup_15m", "hist_15m", "states", "events"):
            out[t] = int(await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relname = $1", t))
        out["frames_rows"] = int(await conn.fetchval("SELECT count(*) FROM frames"))
        out["hist_1s_rows"] = int(await conn.fetchval("SELECT count(*) FROM hist_1s"))
        out["series"] = int(await conn.fetchval("SELECT count(*) FROM series WHERE kind <> 'hist'"))
        return out
    finally:
        await conn.close()


async def recorder_cost(a: argparse.Namespace, workdir: Path, pg: PrivatePostgres) -> dict[str, Any]:
    broker = Mosquitto(workdir / "mosquitto").start()
    admin = await asyncpg.connect(pg.admin_dsn)
    await admin.execute("CREATE DATABASE rec")
    await admin.close()
    dsn = pg.dsn("rec")
    env = {"OPSDASH_MQTT_URL": broker.url, "OPSDASH_HISTORY_URL": dsn}
    agg = start("aggregator", env)
    rec = start("recorder", env)
    pubs = []
    out: dict[str, Any] = {"instances": a.instances, "series_per_instance": a.series}
    reports: list[dict[str, Any]] = []

    async def watch() -> None:
        async with aiomqtt.Client(broker.host, broker.port) as c:
            await c.subscribe("$ops/v1/svc/opsdash-recorder/+/metrics")
            async for m in c.messages:
                reports.append(json.loads(m.payload))  # type: ignore[arg-type]

    watcher = asyncio.create_task(watch())
    try:
        per = math.ceil(a.instances / a.procs)
        for p in range(a.procs):
            count = min(per, a.instances - p * per)
            pubs.append(await spawn_role(broker.port, "publisher", "--first", str(p * per), "--count",
                                         str(count), "--series", str(a.series), "--services", "10"))
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in pubs)), 120)
        await asyncio.sleep(15)  # warm-up: every instance seen, the series catalogue complete
        b0 = await raw_bytes(dsn)
        c_agg, c_rec, t0 = cpu_seconds(agg.pid), cpu_seconds(rec.pid), time.monotonic()
        n0 = len(reports)
        await asyncio.sleep(a.seconds)
        dt = time.monotonic() - t0
        c_agg, c_rec = cpu_seconds(agg.pid) - c_agg, cpu_seconds(rec.pid) - c_rec
        b1 = await raw_bytes(dsn)
        window = reports[n0:]
        lags = [r["gauges"].get("lag_s", 0.0) for r in window if "gauges" in r]
        bufs = [r["gauges"].get("buffer", 0.0) for r in window if "gauges" in r]
        rows = sum(r.get("counters", {}).get("rows_written", 0) for r in window)
        drops = sum(r.get("counters", {}).get("drops", 0) for r in window)
        out.update({
            "measured_s": dt,
            "recorder_cpu_pct": 100 * c_rec / dt, "aggregator_cpu_pct": 100 * c_agg / dt,
            "ratio_recorder_to_aggregator": c_rec / c_agg if c_agg else None,
            "lag_s_p50": statistics.median(lags) if lags else None, "lag_s_max": max(lags) if lags else None,
            "buffer_max": max(bufs) if bufs else None, "rows_per_s": rows / dt, "drops": drops,
            "series_recorded": b1["series"], "frames_per_s": (b1["frames_rows"] - b0["frames_rows"]) / dt,
        })
        # (bytes: measured on the generated 7-day database, see queries(); here only a check)
        # bytes per stored second: whole relations (table, index, TOAST) over their rows at the end
        # (the growth over 40 s moves in 8 KiB pages: too coarse)
        per_frame = b1["frames"] / max(1, b1["frames_rows"])
        per_hist = b1["hist_1s"] / max(1, b1["hist_1s_rows"])
        raw_per_s = per_frame + per_hist
        out["bytes_per_frame"], out["bytes_per_hist_1s"] = per_frame, per_hist
        series = b1["series"]
        rollup_row = 60  # bytes of one rollup row with its index entry (measured on the 7-day database)
        per_day_raw = raw_per_s * 86400
        per_day_rollups = series * (1440 + 96) * rollup_row
        out["bytes"] = {
            "raw_per_day": per_day_raw, "rollups_per_day": per_day_rollups,
            "per_point_1s": raw_per_s / series if series else None,
            "per_point_1m": rollup_row,
            "netdata_tier0_per_point": NETDATA_TIER0_B, "netdata_tier1_per_point": NETDATA_TIER1_B,
            "ratio_1s_to_netdata": (raw_per_s / series) / NETDATA_TIER0_B if series else None,
            "seven_days_at_48h_raw": 2 * per_day_raw + 7 * per_day_rollups,
        }
    finally:
        watcher.cancel()
        for c in pubs:
            await c.kill()
        stop(rec)
        stop(agg)
        broker.stop()
    return out


async def timed(fn: Any, runs: int = 7) -> float:
    await fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def queries(a: argparse.Namespace, pg: PrivatePostgres) -> dict[str, Any]:
    admin = await asyncpg.connect(pg.admin_dsn)
    await admin.execute("CREATE DATABASE q")
    await admin.close()
    dsn = pg.dsn("q")
    now = math.floor(time.time())
    m = generate.scale_model(10, 12, 6, now)
    conn = await asyncpg.connect(dsn)
    out: dict[str, Any] = {"series": len(m.series)}
    try:
        await migrate(conn)
        t = time.perf_counter()
        await generate.rollups(conn, m, now - 7 * 86400, now - 7200)
        await generate.seconds(conn, m, now - 7200, now)
        from history.store import roll_range
        await roll_range(conn, (now - 7200) // 60 * 60, (now - 120) // 60 * 60)
        out["generate_s"] = time.perf_counter() - t
        out["rollup_1m_rows"] = await conn.fetchval("SELECT count(*) FROM rollup_1m")
        # bytes per stored row (table + index + TOAST over rows) on 2 h of 1 s data and 7 days of
        # rollups at this scale: the per-day and per-point figures
        await conn.execute("VACUUM ANALYZE")
        sizes = {}
        for t in ("frames", "hist_1s", "rollup_1m", "rollup_15m", "hist_1m", "hist_15m"):
            size = await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relname = $1", t)
            rows = await conn.fetchval(f"SELECT count(*) FROM {t}")
            sizes[t] = {"bytes": int(size), "rows": int(rows), "per_row": size / max(1, rows)}
        n = len(m.series)
        per_s = sizes["frames"]["per_row"] + sizes["hist_1s"]["per_row"]
        day_rollups = (1440 * (n * sizes["rollup_1m"]["per_row"] + sizes["hist_1m"]["per_row"])
                       + 96 * (n * sizes["rollup_15m"]["per_row"] + sizes["hist_15m"]["per_row"]))
        out["bytes"] = {"tables": sizes, "per_point_1s": per_s / n,
                        "per_point_1s_values_only": sizes["frames"]["per_row"] / n,
                        "per_point_1m": sizes["rollup_1m"]["per_row"],
                        "raw_per_day": per_s * 86400, "rollups_per_day": day_rollups,
                        "seven_days_at_48h_raw": 2 * per_s * 86400 + 7 * day_rollups}
        # the plain baseline: one row per point, no partitions, no rollups
        six = ["ingest_rate", "alert_rate", "delivery_rate", "rate:ingest:messages_received",
               "gauge:delivery:pending_jobs", "capacity:disk.used_pct"]
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM series")}
        t = time.perf_counter()
        await conn.execute("CREATE TABLE plain (series_id int, ts timestamptz, v float8, "
                           "PRIMARY KEY (series_id, ts))")
        for name in six:
            spec = next(s for s in m.series if s.name == name)
            await conn.execute(
                f"INSERT INTO plain SELECT $1, to_timestamp(e::float8), {generate._expr(spec, m)} "
                f"FROM (SELECT e, {generate._day(m)} AS d "
                "FROM generate_series($2::bigint, $3::bigint - 1) e) g",
                ids[name], now - 7 * 86400, now)
        await conn.execute("CREATE TABLE plain_hist (LIKE hist_1s)")
        await conn.execute("ALTER TABLE plain_hist ADD PRIMARY KEY (series_id, ts)")
        await generate._hists(conn, m, ids["write_latency"], now - 86400, now, 1, "plain_hist")
        await conn.execute("ANALYZE")
        out["plain_generate_s"] = time.perf_counter() - t
        out["plain_rows"] = await conn.fetchval("SELECT count(*) FROM plain")
        out["plain_bytes"] = await conn.fetchval("SELECT pg_total_relation_size('plain')")
    finally:
        await conn.close()

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    reader = HistoryReader(pool)
    try:
        q1 = await timed(lambda: reader.series(["ingest_rate"], now - 86400, now, 60))
        q2 = await timed(lambda: reader.series(six, now - 7 * 86400, now, None))
        q3 = await timed(lambda: reader.series(["write_p99"], now - 7 * 86400, now, None))
        ans = await reader.series(six, now - 7 * 86400, now, None)
        out["auto_step_7d"] = ans["step"]

        async def plain1() -> None:
            async with pool.acquire() as c:
                await c.fetch("SELECT (floor(extract(epoch FROM ts) / 60) * 60)::bigint, avg(v) FROM plain "
                              "WHERE series_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1",
                              ids["ingest_rate"], generate.dt(now - 86400), generate.dt(now))

        async def plain2() -> None:
            async with pool.acquire() as c:
                await c.fetch("SELECT series_id, (floor(extract(epoch FROM ts) / 900) * 900)::bigint, avg(v) "
                              "FROM plain WHERE series_id = ANY($1::int[]) AND ts >= $2 AND ts < $3 "
                              "GROUP BY 1, 2",
                              [ids[n] for n in six], generate.dt(now - 7 * 86400), generate.dt(now))

        async def plain3() -> None:
            from history.store import hist_from_row
            async with pool.acquire() as c:
                rows = await c.fetch("SELECT * FROM plain_hist WHERE series_id = $1 AND ts >= $2 AND ts < $3",
                                     ids["write_latency"], generate.dt(now - 86400), generate.dt(now))
            merged: dict[int, Any] = {}
            for r in rows:
                t = int(r["ts"].timestamp()) // 900 * 900
                h = merged.get(t)
                if h is None:
                    merged[t] = hist_from_row(r)
                else:
                    h.merge(hist_from_row(r))
            for h in merged.values():
                h.quantile(0.99)

        p1, p2, p3 = await timed(plain1, 3), await timed(plain2, 3), await timed(plain3, 3)
    finally:
        await pool.close()
    out["queries_ms"] = {
        "24h_1series_1min": {"history": q1, "plain": p1, "ratio": p1 / q1, "aim": 50},
        "7d_6series_auto": {"history": q2, "plain": p2, "ratio": p2 / q2, "aim": 200},
        "7d_p99_merged_hists": {"history": q3, "plain_24h_only": p3, "ratio": p3 / q3, "aim": 300},
    }
    return out


def report(res: dict[str, Any]) -> None:
    r = res.get("recorder")
    if r:
        print(f"\nrecorder at {r['instances']} instances x {r['series_per_instance']} series "
              f"({r['series_recorded']} history series at 1 s), {r['measured_s']:.0f} s:")
        print(f"  recorder CPU {r['recorder_cpu_pct']:.1f} % of one core (aim <= 25 %); aggregator "
              f"{r['aggregator_cpu_pct']:.1f} % in the same run; ratio recorder/aggregator "
              f"{r['ratio_recorder_to_aggregator']:.3f}")
        print(f"  lag p50 {r['lag_s_p50']} s, max {r['lag_s_max']} s (aim <= 2 s); buffer max "
              f"{r['buffer_max']}; drops {r['drops']}; {r['rows_per_s']:.1f} rows/s; "
              f"{r['frames_per_s']:.2f} frames/s")
        print(f"  (bytes per point: from the 7-day database below; this run's {r['frames_per_s']:.2f} "
              "frames/s and table sizes are in --json)")
    q = res.get("queries")
    if q:
        print(f"\nqueries on 7 days x {q['series']} series (generated in {q['generate_s']:.0f} s; "
              f"{q['rollup_1m_rows']:,} 1 min rollup rows; plain table {q['plain_rows']:,} rows, "
              f"{q['plain_bytes'] / 2**20:.0f} MiB):")
        qb = q["bytes"]
        print(f"  bytes on disk: {qb['per_point_1s']:.2f} B per 1 s point with its merged histogram "
              f"({qb['per_point_1s_values_only']:.2f} B values only; Netdata tier 0: {NETDATA_TIER0_B} B), "
              f"{qb['per_point_1m']:.0f} B per 1 min point (Netdata tier 1: {NETDATA_TIER1_B} B); per day "
              f"{qb['raw_per_day'] / 2**20:.0f} MiB of 1 s data + {qb['rollups_per_day'] / 2**20:.0f} MiB of "
              f"rollups; 7 days with 48 h of 1 s: {qb['seven_days_at_48h_raw'] / 2**30:.2f} GiB")
        for name, v in q["queries_ms"].items():
            base = v.get("plain", v.get("plain_24h_only"))
            print(f"  {name:24s} history {v['history']:8.1f} ms (aim {v['aim']} ms)   plain {base:8.1f} ms   "
                  f"plain/history {v['ratio']:.1f}x")
        print(f"  (7 d auto step: {q['auto_step_7d']} s; p99 plain baseline over 24 h only)")


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="opsdash-bench-hist-"))
    workdir.chmod(0o711)
    pg = PrivatePostgres(workdir / "pg").start()
    res: dict[str, Any] = {}
    try:
        if not a.skip_queries:
            res["queries"] = await queries(a, pg)
            report(res)
        if not a.skip_recorder:
            res["recorder"] = await recorder_cost(a, workdir, pg)
            report({"recorder": res["recorder"]})
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--skip-recorder", action="store_true")
    ap.add_argument("--skip-queries", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    res = asyncio.run(main_async(a))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
