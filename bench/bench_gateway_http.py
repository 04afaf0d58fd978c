"""HTTP through the gateway's request pipeline: what reading bodies and the route table cost.

    .venv/bin/python bench/bench_gateway_http.py [--requests 3000] [--concurrency 32] [--rounds 3]

Three servers in this process on free ports, measured interleaved in the same run, each answering
GET with a small JSON body over a fresh connection per request (websockets closes after any plain HTTP
answer, as the gateway does):

- ``stock``: websockets' own ``ServerConnection`` and a bare ``process_request`` (the baseline);
- ``bodies``: the same with ``create_connection=BodyConnection`` (gateway/httpserver.py: the request
  parser swapped for one that also reads bodies);
- ``gateway``: a real :class:`gateway.server.Gateway` (rate limit off), ``GET /healthz`` through the
  whole pipeline (Host check, route table, query parser, security headers), and ``POST`` of a
  ~200-byte JSON body to a route declared with a body Struct (decoded into it).

Prints requests/s (median of the rounds) and the ratio to ``stock``.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import statistics
import time
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gateway.config import GatewayConfig
from gateway.httpserver import BodyConnection
from gateway.routes import HttpRequest, Reply
from gateway.server import Gateway
from telemetry_bus.config import MqttConfig

BODY = b'{"status":"ok","reasons":[],"gateway":"bench"}'
POST_BODY = msgspec.json.encode({"matchers": {"alertname": "disk_usage_high", "component": "postgres"},
                                 "duration_s": 3600, "comment": "maintenance window " * 4})


class Silence(msgspec.Struct, forbid_unknown_fields=True):
    matchers: dict[str, str]
    duration_s: int
    comment: str = ""


async def _answer(conn: ServerConnection, request: Request) -> Response:
    return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                        ("Content-Length", str(len(BODY))), ("Connection", "close")]),
                    BODY)


async def _handler(conn: ServerConnection) -> None:  # never reached: every request is plain HTTP
    await conn.close()


async def _one(port: int, raw: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1])


async def _load(port: int, raw: bytes, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    statuses: list[int] = []

    async def go() -> None:
        async with sem:
            statuses.append(await _one(port, raw))

    started = time.perf_counter()
    await asyncio.gather(*(go() for _ in range(n)))
    elapsed = time.perf_counter() - started
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} answers were not 200 (first {bad[0]})")
    return n / elapsed


async def main(args: argparse.Namespace) -> None:
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    post = (b"POST /bench/silences HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(POST_BODY)).encode() + b"\r\n\r\n" + POST_BODY)
    stock = await serve(_handler, "127.0.0.1", 0, process_request=_answer)
    bodies = await serve(_handler, "127.0.0.1", 0, process_request=_answer,
                         create_connection=BodyConnection)
    gw = Gateway(GatewayConfig(listen="127.0.0.1:0", handshake_rate=1e9, handshake_burst=10**9),
                 MqttConfig(url="mqtt://127.0.0.1:1"))  # no broker: the MQTT loop just retries

    async def post_silence(req: HttpRequest) -> Reply:
        s: Silence = req.body
        return Reply(201, {"matchers": s.matchers, "duration_s": s.duration_s})

    gw.routes.post("/bench/silences", post_silence, body=Silence)
    await gw.start()
    ports: dict[str, tuple[int, bytes]] = {
        "stock GET": (int(next(iter(stock.sockets)).getsockname()[1]), get),
        "bodies GET": (int(next(iter(bodies.sockets)).getsockname()[1]), get),
        "gateway GET /healthz": (gw.port, get),
        "gateway POST JSON body": (gw.port, post),
    }
    rates: dict[str, list[float]] = {k: [] for k in ports}
    try:
        for name, (port, raw) in ports.items():  # warm up; the POST route answers 201
            if name.startswith("gateway POST"):
                assert await _one(port, raw) == 201, "POST route"
        for _ in range(args.rounds):
            for name, (port, raw) in ports.items():
                if name.startswith("gateway POST"):
                    rates[name].append(await _load_post(port, raw, args.requests, args.concurrency))
                else:
                    rates[name].append(await _load(port, raw, args.requests, args.concurrency))
    finally:
        await gw.stop()
        stock.close()
        bodies.close()
    base = statistics.median(rates["stock GET"])
    print(f"{args.requests} requests x {args.rounds} rounds, {args.concurrency} concurrent, "
          f"a new connection per request")
    for name, r in rates.items():
        med = statistics.median(r)
        print(f"{name:28s} {med:8,.0f} req/s  {med / base:5.2f}x stock  (rounds: "
              f"{', '.join(f'{x:,.0f}' for x in r)})")


async def _load_post(port: int, raw: bytes, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    statuses: list[int] = []

    async def go() -> None:
        async with sem:
            statuses.append(await _one(port, raw))

    started = time.perf_counter()
    await asyncio.gather(*(go() for _ in range(n)))
    elapsed = time.perf_counter() - started
    if any(s != http.HTTPStatus.CREATED for s in statuses):
        raise SystemExit(f"POST answers: {sorted(set(statuses))}")
    return n / elapsed


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    a: Any = p.parse_args()
    asyncio.run(main(a))
