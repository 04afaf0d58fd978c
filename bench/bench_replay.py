"""Replay at 60x keeps up with its clock on one core (issue 19 aim).

    .venv/bin/python bench/bench_replay.py [--instances 9 2000] [--seconds 600 180] [--speed 60]

A recorded stream (the real fold at the demo's scale and at 2,000 instances, as bench_viewstream.py
drives it: a snapshot every 10 s, a patch a tick, cut to the default stream) is stored as the recorder
stores it (rows, then each closed minute packed into a block, history/viewstream.compact) in a private
PostgreSQL, ending an hour ago. A real gateway (gateway/server.py with gateway/view_api.py, a private
mosquitto for its live side) replays it to one WebSocket client at ``--speed``; the gateway and the
client share one event loop, so one core. For every replayed frame: how late it arrived against the
replay clock (``from`` + wall time x speed); and the whole replay's wall time against the recorded
span / speed (1.00 = keeps up exactly). Baseline in the same run: the same messages read from the
database as fast as they come (history/viewstream.messages_after in a loop, no pacing): the replay's
capacity in recorded seconds per wall second, i.e. its headroom over ``--speed``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from bench_viewstream import stream
from websockets.asyncio.client import connect

from gateway.config import GatewayConfig
from gateway.server import Gateway
from history.config import HistoryConfig
from history.schema import ensure_partitions, migrate
from history.viewstream import INSERT_SQL, StreamRow, compact, messages_after
from telemetry_bus.config import MqttConfig
from tests.support.servers import Mosquitto, PrivatePostgres


def pct(v: list[float], q: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


async def store(dsn: str, rows: list[StreamRow]) -> tuple[float, float, int]:
    """The rows moved to end an hour ago, written and packed; (first ts, last ts, last seq)."""
    shift = (time.time() - 3600) - rows[-1][0].timestamp()
    shift -= shift % 60  # keep the minute alignment of the sample
    moved = [(r[0] + timedelta(seconds=shift), *r[1:]) for r in rows]
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_partitions(conn, moved[0][0], days=sorted({r[0].date() for r in moved}))
        await conn.executemany(INSERT_SQL, moved)
        while await compact(conn, time.time()):
            pass
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return moved[0][0].timestamp(), moved[-1][0].timestamp(), max(r[1] for r in moved)


async def capacity(dsn: str, first: float, last: float) -> tuple[float, int]:
    """Recorded seconds read per wall second by messages_after alone, and the messages read."""
    conn = await asyncpg.connect(dsn)
    try:
        t = time.perf_counter()
        cursor, n = (first, -1, False), 0
        while True:
            batch = await messages_after(conn, *cursor, last)
            if not batch:
                break
            n += len(batch)
            m = batch[-1]
            cursor = (m.ts, m.seq, m.base is None)
        return (last - first) / (time.perf_counter() - t), n
    finally:
        await conn.close()


async def replay(url: str, first: float, last: float, speed: float) -> dict[str, float]:
    lags: list[float] = []
    frames = 0
    async with connect(url, max_size=2**26) as ws:
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        await ws.send(json.dumps({"type": "replay", "from": first, "speed": speed}))
        wall0: float | None = None
        end = 0.0
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg["type"] == "replay":
                assert msg.get("ok") is True, msg
                if wall0 is None:
                    wall0 = loop.time()
                continue
            if not msg.get("replay"):
                continue
            assert wall0 is not None
            now = loop.time()
            frames += 1
            lags.append(now - (wall0 + (msg["ts"] - first) / speed))
            if msg["ts"] >= last:
                end = now
                break
        cpu = time.process_time() - cpu0
    assert wall0 is not None
    wall = end - wall0
    return {"frames": frames, "wall": wall, "ratio": wall / ((last - first) / speed),
            "lag_p50": pct(lags, 0.5) * 1000, "lag_p99": pct(lags, 0.99) * 1000, "lag_max": max(lags) * 1000,
            "cpu": cpu / wall}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, nargs="+", default=[9, 2000])
    ap.add_argument("--seconds", type=int, nargs="+", default=[600, 180])
    ap.add_argument("--warm", type=int, nargs="+", default=[900, 120])
    ap.add_argument("--speed", type=float, default=60.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opsdash-bench-replay-"))
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="opsdash-bench-replay-pg-"))).start()
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="opsdash-bench-replay-mqtt-"))).start()
    try:
        for i, n in enumerate(args.instances):
            secs = args.seconds[min(i, len(args.seconds) - 1)]
            warm = args.warm[min(i, len(args.warm) - 1)]
            t = time.perf_counter()
            rows = stream(n, secs, warm)
            gen = time.perf_counter() - t
            admin = await asyncpg.connect(pg.admin_dsn)
            await admin.execute(f"CREATE DATABASE r{n}")
            await admin.close()
            dsn = pg.dsn(f"r{n}")
            first, last, _ = await store(dsn, rows)
            cap, read = await capacity(dsn, first, last)
            gw = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(work)),
                         MqttConfig(url=broker.url),
                         app_config=SimpleNamespace(history=HistoryConfig(url=dsn)))
            await gw.start()
            try:
                r = await replay(gw.url.replace("http", "ws", 1) + "/operator/system/live", first, last,
                                 args.speed)
            finally:
                await gw.stop()
            print(f"# {n:,} instances: {last - first:.0f} s recorded ({len(rows)} messages, generated in "
                  f"{gen:.0f} s), stored packed; replay at {args.speed:g}x through the gateway to one client")
            print(f"  frames {r['frames']}, wall {r['wall']:.2f} s, lag behind the replay clock p50 "
                  f"{r['lag_p50']:.0f} ms, p99 {r['lag_p99']:.0f} ms, max {r['lag_max']:.0f} ms; process CPU "
                  f"{r['cpu'] * 100:.0f} % of one core (gateway + client)")
            print(f"RESULT replay at {args.speed:g}x, {n:,} instances: wall / replay clock {r['ratio']:.3f} "
                  f"(1.00 = keeps up), lag max {r['lag_max']:.0f} ms; baseline: reading the stream unpaced "
                  f"runs at {cap:.0f}x ({cap / args.speed:.1f}x headroom over {args.speed:g}x, "
                  f"{read} messages) "
                  f"aim keeps up: {'met' if r['ratio'] <= 1.05 else 'NOT met'}")
    finally:
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
