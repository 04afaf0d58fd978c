"""Benchmark of the telemetry bus: the fold beside the bare MQTT clients, and the reporter's hot path.

    .venv/bin/python bench/bench_bus.py [--messages 100000] [--runs 3]

Prints, from one run on this machine (ratios matter; absolute numbers vary on a shared machine):

1. messages/s received from one stream of ops ``metrics`` messages (4 publishers, QoS 0, a private
   mosquitto with ``max_queued_messages 0``) by ``mosquitto_sub`` (C), a bare aiomqtt subscriber that
   only counts (``async for message in client.messages``), the same loop calling ``Fold.feed``, and
   the real ``AggregatorService`` (aiomqtt, folding each message on arrival, ticking and publishing
   the view as in production); ratios to mosquitto_sub and to bare aiomqtt (aim: >= 0.8 x bare);
2. the pure fold alone (no MQTT): messages/s;
3. the reporter: cost of one ``inc``, ``set_gauge``, ``observe`` (aim <= 2 us), beside a bare dict
   increment in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt

from opsdash.config import load_config
from opsdash.servers import Mosquitto
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.reporter import Reporter, ReporterCore

PUBLISHERS = 4


def make_stream(n: int) -> list[tuple[str, list[bytes]]]:
    """Per publisher: its topic and its messages (realistic ~400 B metrics payloads)."""
    out = []
    per = n // PUBLISHERS
    for p in range(PUBLISHERS):
        core = ReporterCore(f"boot-{p}", 1.0, 0.0)
        msgs = []
        for k in range(per):
            core.inc("messages_received", 125)
            core.inc("messages_written", 124)
            core.set_gauge("queue_depth", k % 7)
            for v in (1.2, 3.5, 8.0, 44.0):
                core.observe("influx_write_ms", v)
            msgs.append(encode(core.take(float(k))))
        out.append((topics.metrics("$ops", "ingest", f"ingest-{p}"), msgs))
    return out


def publish(broker: Mosquitto, stream: list[tuple[str, list[bytes]]]) -> None:
    procs = []
    for topic, msgs in stream:
        proc = subprocess.Popen(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "0",
                                 "-t", topic, "-l"], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        procs.append((proc, msgs))
    for proc, msgs in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"\n".join(msgs) + b"\n")
        proc.stdin.close()
    for proc, _ in procs:
        proc.wait()


def run_mosquitto_sub(broker: Mosquitto, stream: list[tuple[str, list[bytes]]], n: int) -> float:
    sub = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", "$ops/#",
                            "-C", str(n), "-F", "%I"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert sub.stdout is not None
    threading.Thread(target=publish, args=(broker, stream), daemon=True).start()
    first = sub.stdout.readline()
    t_first = time.perf_counter()
    count = 1 if first else 0
    for _ in sub.stdout:
        count += 1
    sub.wait()
    end = time.perf_counter()
    assert count == n, f"mosquitto_sub got {count} of {n}"
    return (n - 1) / (end - t_first)


async def run_service(broker: Mosquitto, stream: list[tuple[str, list[bytes]]], n: int) -> float:
    """The aggregator's own receive path (AggregatorService: folding on arrival), ticking as usual."""
    config = load_config(env={"OPSDASH_MQTT_URL": broker.url, "OPSDASH_AGGREGATOR__ID": "bench"})
    service = build_aggregator(config)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.connected.wait(), 10)
    pub = asyncio.create_task(asyncio.to_thread(publish, broker, stream))
    while service.fold.folded == 0:
        await asyncio.sleep(0.0005)
    t_first = time.perf_counter()
    while service.fold.folded < n:
        await asyncio.sleep(0.0005)
    end = time.perf_counter()
    await pub
    await cancel_and_wait([task])
    assert service.fold.quarantined == 0
    return (n - 1) / (end - t_first)


async def run_aiomqtt(broker: Mosquitto, stream: list[tuple[str, list[bytes]]], n: int,
                      fold: Fold | None) -> float:
    count = 0
    t_first = 0.0
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe("$ops/v1/svc/#", qos=0)
        pub = asyncio.create_task(asyncio.to_thread(publish, broker, stream))
        feed = fold.feed if fold is not None else None
        clock = time.time
        async for message in client.messages:
            if count == 0:
                t_first = time.perf_counter()
            count += 1
            if feed is not None:
                payload = message.payload
                assert isinstance(payload, bytes)
                feed(message.topic.value, payload, clock(), bool(message.retain))
            if count == n:
                break
        end = time.perf_counter()
        await pub
    return (n - 1) / (end - t_first)


def pure_fold_rate(stream: list[tuple[str, list[bytes]]]) -> float:
    fold = Fold(AggregatorConfig(), "$ops", time.time())
    items = [(t, m) for t, msgs in stream for m in msgs]
    start = time.perf_counter()
    now = time.time()
    for k, (t, m) in enumerate(items):
        fold.feed(t, m, now + k * 1e-5)
    elapsed = time.perf_counter() - start
    assert fold.quarantined == 0 and fold.folded == len(items)
    return len(items) / elapsed


def reporter_costs() -> dict[str, float]:
    rep = Reporter("ingest", "bench", mqtt_url="mqtt://127.0.0.1:1")  # never started: hot path only
    rep.inc("messages_received")
    rep.set_gauge("queue_depth", 1)
    rep.observe("influx_write_ms", 3.2)
    n = 1_000_000
    d = {"messages_received": 0}

    def bare() -> None:
        d["messages_received"] += 1

    out = {}
    for name, stmt in (("bare dict += 1", bare), ("rep.inc", lambda: rep.inc("messages_received")),
                       ("rep.set_gauge", lambda: rep.set_gauge("queue_depth", 7.0)),
                       ("rep.observe", lambda: rep.observe("influx_write_ms", 3.2))):
        best = min(timeit.repeat(stmt, number=n, repeat=5))
        out[name] = best / n * 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.messages // PUBLISHERS * PUBLISHERS
    stream = make_stream(n)
    size = statistics.mean(len(m) for _, msgs in stream for m in msgs[:100])
    workdir = Path(tempfile.mkdtemp(prefix="opsdash-bench-"))
    broker = Mosquitto(workdir, extra_conf="max_queued_messages 0\nmax_queued_bytes 0").start()
    rates: dict[str, list[float]] = {"mosquitto_sub": [], "bare aiomqtt": [], "aiomqtt iter + fold": [],
                                     "aggregator": []}
    try:
        for _ in range(args.runs):  # interleaved, so drift on the shared machine hits all alike
            rates["mosquitto_sub"].append(run_mosquitto_sub(broker, stream, n))
            rates["bare aiomqtt"].append(asyncio.run(run_aiomqtt(broker, stream, n, None)))
            fold = Fold(AggregatorConfig(), "$ops", time.time())
            rates["aiomqtt iter + fold"].append(asyncio.run(run_aiomqtt(broker, stream, n, fold)))
            assert fold.quarantined == 0 and fold.folded == n, (fold.folded, fold.quarantine_reasons)
            rates["aggregator"].append(asyncio.run(run_service(broker, stream, n)))
    finally:
        broker.stop()
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"# bus benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {n} metrics messages of ~{size:.0f} B, "
          f"{PUBLISHERS} publishers, QoS 0, median of {args.runs} interleaved runs, {os.cpu_count()} cores")
    print(f"{'receiver':<19} {'msg/s':>10} {'vs mosquitto_sub':>17} {'vs bare aiomqtt':>16}")
    for k, v in med.items():
        print(f"{k:<19} {v:>10,.0f} {v / med['mosquitto_sub']:>17.2f} {v / med['bare aiomqtt']:>16.2f}")
    pure = pure_fold_rate(stream)
    print(f"{'fold alone (pure)':<19} {pure:>10,.0f} {pure / med['mosquitto_sub']:>17.2f} "
          f"{pure / med['bare aiomqtt']:>16.2f}")
    print()
    costs = reporter_costs()
    print(f"{'reporter call':<19} {'us/call':>10} {'vs bare dict':>17}")
    for k, v in costs.items():
        print(f"{k:<19} {v:>10.3f} {v / costs['bare dict += 1']:>17.2f}")


if __name__ == "__main__":
    main()
