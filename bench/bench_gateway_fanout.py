"""Gateway fan-out benchmark: patch delivery latency and gateway CPU at N clients, beside a bare
``websockets.broadcast()`` server sending the same bytes to the same clients, and the bytes per client
per second of the patch stream beside polling the five REST endpoints once a second.

    .venv/bin/python bench/bench_gateway_fanout.py --clients 1000 5000 10000 --ticks 15

Everything real: a private mosquitto, the gateway as a separate process (``opsdash gateway``), the
clients in two other processes, a publisher that publishes one view patch per second exactly like the
aggregator (tests/gateway/sim.py). Latency = client receive time - publish time (same machine clock).
CPU = the server process's user+system time during the measured ticks / wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import httpx  # noqa: E402
import msgspec  # noqa: E402

from telemetry_bus.contract import encode, topics  # noqa: E402
from tests.gateway.sim import ViewSim  # noqa: E402
from tests.support.servers import Mosquitto, free_port, wait_port  # noqa: E402

BARE = r'''
import asyncio, sys, aiomqtt
from websockets.asyncio.server import serve, broadcast
conns = set()
async def handler(ws):
    conns.add(ws)
    try:
        await ws.wait_closed()
    finally:
        conns.discard(ws)
async def main():
    port, mqtt_port = int(sys.argv[1]), int(sys.argv[2])
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=4):
        async with aiomqtt.Client("127.0.0.1", mqtt_port) as c:
            await c.subscribe("$ops/v1/view/patch")
            async for m in c.messages:
                # the gateway's frame is the patch with "type" in front: send the same bytes
                broadcast(conns, b'{"type":"patch",' + bytes(m.payload)[1:], text=True)
asyncio.run(main())
'''


class CalmSim(ViewSim):
    """A realistic tick: rates, percentiles, a few gauges and meta change; statuses, capacity and
    totals mostly hold; an error arrives on 5 % of ticks. (ViewSim re-draws every figure each tick.)"""

    def _body(self) -> dict[str, Any]:
        if not hasattr(self, "body"):
            return super()._body()
        import copy

        body: dict[str, Any] = copy.deepcopy(self.body)
        r = self.rng
        body["meta"].update(seq=self.seq, generated_at=self.t, folded=self.seq * 10)
        body["metrics"]["throughput"].update(ingest_rate_per_sec=round(r.uniform(120, 130), 1),
                                             alert_rate_per_sec=round(r.uniform(2, 3), 1),
                                             delivery_rate_per_sec=round(r.uniform(1, 2), 1))
        body["metrics"]["latency"].update(influx_write_p50_ms=round(r.uniform(2.9, 3.1), 2),
                                          influx_write_p95_ms=round(r.uniform(11, 13), 2),
                                          influx_write_p99_ms=round(r.uniform(40, 50), 2))
        body["health"]["components"]["delivery"]["pending_jobs"] = r.randint(0, 5)
        body["services"]["ingest"]["instances"]["ingest-1"]["totals"]["messages_received"] = self.seq * 125
        if r.random() < 0.05:
            body["errors"]["errors"].insert(0, {"timestamp": "2026-11-27T10:02:15Z", "ts": self.t,
                                                "service": "delivery", "type": "webhook_timeout",
                                                "message": "POST https://example.com/hook timed out"})
            del body["errors"]["errors"][50:]
        return body


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def client_proc(url: str, n: int, ready: Any, out: Any, stop: Any) -> None:
    """One client process: n connections; records (seq, receive time) of every patch."""
    from websockets.asyncio.client import connect

    dec = msgspec.json.Decoder()

    async def main() -> None:
        got: list[tuple[int, float]] = []
        conns = []
        for i in range(n):
            for attempt in range(20):
                try:
                    conns.append(await connect(url, compression=None, max_size=None, open_timeout=60,
                                               ping_interval=None))
                    break
                except Exception:
                    await asyncio.sleep(0.2 * (attempt + 1))
            if i % 500 == 499:
                await asyncio.sleep(0.05)

        async def reader(ws: Any) -> None:
            async for raw in ws:
                t = time.time()
                if raw.startswith('{"type":"patch"'):
                    got.append((dec.decode(raw)["seq"], t))

        tasks = [asyncio.create_task(reader(ws)) for ws in conns]
        ready.put(len(conns))
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        out.put(got)
        for ws in conns:
            ws.transport.abort()

    asyncio.run(main())


async def publish_ticks(mqtt_port: int, sim: ViewSim, ticks: int) -> dict[int, float]:
    sent: dict[int, float] = {}
    async with aiomqtt.Client("127.0.0.1", mqtt_port) as c:
        await c.publish(topics.snapshot("$ops"), encode(sim.snapshot()), qos=1, retain=True)
        await asyncio.sleep(1.0)
        for _ in range(ticks):
            p = sim.step()
            sent[p["seq"]] = time.time()
            await c.publish(topics.patch("$ops"), encode(p), qos=0)
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.5)
    return sent


def run_case(kind: str, n: int, mqtt_port: int, ticks: int, deflate: bool = False) -> dict[str, Any]:
    port = free_port()
    if kind == "gateway":
        env = {**os.environ, "OPSDASH_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
               "OPSDASH_LISTEN": f"127.0.0.1:{port}", "OPSDASH_GATEWAY__MAX_CONNECTIONS_PER_ADDRESS": "20000",
               "OPSDASH_GATEWAY__HANDSHAKE_RATE": "100000", "OPSDASH_GATEWAY__HANDSHAKE_BURST": "100000",
               "OPSDASH_GATEWAY__PING_INTERVAL_S": "600",
               "OPSDASH_GATEWAY__COMPRESSION": "deflate" if deflate else "none"}
        server = subprocess.Popen([sys.executable, "-m", "opsdash.cli", "--log-level", "WARNING", "gateway"],
                                  env=env, start_new_session=True)
        url = f"ws://127.0.0.1:{port}/operator/system/live"
    else:
        server = subprocess.Popen([sys.executable, "-c", BARE, str(port), str(mqtt_port)],
                                  start_new_session=True)
        url = f"ws://127.0.0.1:{port}/"
    wait_port("127.0.0.1", port)
    ctx = mp.get_context("spawn")
    ready, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=client_proc, args=(url, n // 2, ready, out, stop)) for _ in range(2)]
    for p in procs:
        p.start()
    connected = sum(ready.get(timeout=600) for _ in procs)
    sim = CalmSim(seed=1)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    sent = asyncio.run(publish_ticks(mqtt_port, sim, ticks))
    cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
    rss = rss_mb(server.pid)
    stop.set()
    got = [x for _ in procs for x in out.get(timeout=120)]
    for p in procs:
        p.join(30)
    server.send_signal(signal.SIGINT)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
    lat = sorted((t - sent[s]) * 1000 for s, t in got if s in sent)
    expected = connected * len(sent)
    return {"kind": kind + (" (deflate)" if deflate else ""), "clients": connected,
            "delivered": len(lat), "expected": expected,
            "p50_ms": statistics.median(lat) if lat else None,
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
            "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0), "rss_mb": rss}


async def bytes_comparison(mqtt_port: int) -> dict[str, float]:
    """Average patch frame size per second vs one poll of the five REST endpoints (with headers)."""
    from websockets.asyncio.client import connect

    from gateway.config import GatewayConfig
    from gateway.server import Gateway
    from telemetry_bus.config import MqttConfig

    gw = Gateway(GatewayConfig(listen="127.0.0.1:0"), MqttConfig(url=f"mqtt://127.0.0.1:{mqtt_port}"))
    await gw.start()
    sim = CalmSim(seed=2)
    frames: list[int] = []
    async with aiomqtt.Client("127.0.0.1", mqtt_port) as c, \
            connect(f"ws://127.0.0.1:{gw.port}/operator/system/live", max_size=None,
                    compression=None) as ws:
        await c.publish(topics.snapshot("$ops"), encode(sim.snapshot()), qos=1, retain=True)

        async def reader() -> None:
            async for raw in ws:
                if raw.startswith('{"type":"patch"'):
                    frames.append(len(raw.encode()) + 4)  # + WebSocket frame header

        task = asyncio.create_task(reader())
        for _ in range(120):
            await c.publish(topics.patch("$ops"), encode(sim.step()), qos=0)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        task.cancel()
        poll = poll_gz = 0
        async with httpx.AsyncClient(base_url=gw.url) as http:
            for name in ("health", "metrics", "capacity", "aggregates", "errors"):
                r = await http.get(f"/operator/system/{name}")
                req = len(f"GET /operator/system/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Accept: */*\r\nAuthorization: Bearer xxxxxxxxxxxxxxxxxxxxxxxx\r\n\r\n")
                head = sum(len(k) + len(v) + 4 for k, v in r.headers.items()) + 17
                poll += req + head + len(r.content)
                poll_gz += req + head + len(gzip.compress(r.content))
    await gw.stop()
    patch = statistics.mean(frames)
    return {"patch_bytes_per_s": patch, "poll_bytes_per_s": poll, "poll_gzip_bytes_per_s": poll_gz,
            "ratio": patch / poll, "ratio_vs_gzip": patch / poll_gz, "frames": len(frames)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--ticks", type=int, default=15)
    ap.add_argument("--deflate-at", type=int, default=0, help="also run the gateway with deflate at N")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto").start()
        try:
            rows = []
            for n in args.clients:
                for kind in ("bare", "gateway"):
                    row = run_case(kind, n, broker.port, args.ticks)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if n == args.deflate_at:
                    row = run_case("gateway", n, broker.port, args.ticks, deflate=True)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            b = asyncio.run(bytes_comparison(broker.port))
        finally:
            broker.stop()
    print()
    print("| clients | server | delivered | p50 ms | p99 ms | CPU % | RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['kind']} | {r['delivered']}/{r['expected']} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['cpu_pct']:.0f} | {r['rss_mb']:.0f} |")
    print()
    for n in args.clients:
        g = next(r for r in rows if r["clients"] >= n * 0.99 and r["kind"] == "gateway")
        bare = next(r for r in rows if r["clients"] >= n * 0.99 and r["kind"] == "bare")
        print(f"{n} clients: gateway/bare p50 {g['p50_ms'] / bare['p50_ms']:.2f}x, "
              f"p99 {g['p99_ms'] / bare['p99_ms']:.2f}x, CPU {g['cpu_pct'] / max(bare['cpu_pct'], 0.1):.2f}x")
    print(f"patch stream {b['patch_bytes_per_s']:.0f} B/client/s vs polling the five REST endpoints "
          f"{b['poll_bytes_per_s']:.0f} B/s (gzip {b['poll_gzip_bytes_per_s']:.0f}): "
          f"{b['ratio']:.3f}x ({b['ratio_vs_gzip']:.3f}x of gzipped polling)")


if __name__ == "__main__":
    main()
