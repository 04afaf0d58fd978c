"""Aggregator shards: one aggregator against two shards (``0/2`` + ``1/2``) on the same stream.

    .venv/bin/python bench/bench_shards.py [--instances 10000] [--series 20] [--procs 4] [--seconds 30]
                                           [--drain-rounds 4]

Everything real: a private mosquitto, ``opsdash aggregator`` processes, and publisher processes
running the reporter's pure core for many instances each (the same payloads a Reporter sends, status
retained at connect). Two measurements, each for one aggregator (the baseline) and for two shards:

1. **Paced**: every instance sends one metrics message a second (bench_e2e.py's ``publisher``) for
   ``--seconds``: completeness (``meta.completeness.ratio`` of the published view), instances in the
   view, RSS and CPU of each aggregator process. On 2 shared cores the publishers may not reach the
   offered rate; the folded rate here says what they reached, not what the aggregator can do.
2. **Drain** (the capacity): the aggregators subscribe (their broker sessions persist), stop; the
   publishers put ``--drain-rounds`` metrics messages per instance into the broker at once; the
   aggregators start again and fold what their sessions queued. The time from their start until the
   published view holds the whole backlog (``meta.folded``) says what one aggregator, or two shards,
   can fold; the figure of merit is the ratio 2 shards / 1 of those rates (aim on 2 cores: ≥ 1.7).

The machine is shared: compare the ratios of one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from opsdash.servers import Mosquitto  # noqa: E402
from telemetry_bus.contract import decode_patch, decode_snapshot  # noqa: E402
from telemetry_bus.view_diff import apply_view_patch  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ViewWatch:
    """The published view, as a gateway holds it."""

    def __init__(self) -> None:
        self.view: dict[str, Any] | None = None
        self.seq: int | None = None

    async def run(self, port: int) -> None:
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.subscribe("$ops/v1/view/#", qos=1)
            async for msg in c.messages:
                body = msg.payload if isinstance(msg.payload, bytes) else b""
                if msg.topic.value.endswith("/snapshot"):
                    s = decode_snapshot(body)
                    self.view, self.seq = s.state, s.seq
                elif msg.topic.value.endswith("/patch") and self.view is not None:
                    p = decode_patch(body)
                    if p.base == self.seq:
                        self.view = apply_view_patch(self.view, p.patch, p.append, p.errors)
                        self.seq = p.seq

    def meta(self) -> dict[str, Any]:
        return (self.view or {}).get("meta") or {}


def role_burst(port: int, first: int, count: int, series: int, services: int, rounds: int) -> None:
    """Publish ``rounds`` metrics messages for each of ``count`` instances as fast as the broker takes
    them (QoS 1), then print ``done`` (the drain measurement's input)."""
    import paho.mqtt.client as mqtt

    from telemetry_bus.contract import encode, topics
    from telemetry_bus.reporter import ReporterCore

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-burst-{first}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    now = time.time()
    insts = []
    for k in range(first, first + count):
        svc, name = f"scale-{k % services}", f"inst-{k:05d}"
        core = ReporterCore(f"burst{k:06d}", 1.0, now)
        insts.append((core, topics.metrics("$ops", svc, name)))
    last = None
    for core, topic in insts:  # the status at connect, retained (how shards find their services)
        c.publish(topic.rsplit("/", 1)[0] + "/status", encode(core.status("online", now)), qos=1, retain=True)
    for r in range(rounds):
        for core, topic in insts:
            for j in range(series - 2):
                core.inc(f"c_{j:02d}_total", r + j + 1)
            core.observe("h_00_ms", 1.0 + r)
            core.observe("h_01_ms", 2.0 + r)
            last = c.publish(topic, encode(core.take(now + r + 1)), qos=1)
    if last is not None:
        last.wait_for_publish(120)
    c.loop_stop()
    c.disconnect()
    print("done", flush=True)


def start_aggregator(port: int, k: int, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPSDASH_MQTT_URL": f"mqtt://127.0.0.1:{port}",
           "OPSDASH_AGGREGATOR__ID": f"bench-{k}", "OPSDASH_AGGREGATOR__SHARD": f"{k}/{n}",
           "OPSDASH_AGGREGATOR__MAX_SERVICES": "256"}
    env.pop("OPSDASH_HISTORY_URL", None)
    level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    return subprocess.Popen([sys.executable, "-m", "opsdash.cli", "--log-level", level, "aggregator"],
                            env=env, start_new_session=True, cwd=ROOT)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


async def teardown(watcher: asyncio.Task[None], aggs: list[subprocess.Popen[bytes]],
                   broker: Mosquitto) -> None:
    """Stop the view watcher, the aggregators and the broker of one measurement."""
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await watcher
    for p in aggs:
        stop(p)
    broker.stop()


async def run(a: argparse.Namespace, shards: int, workdir: Path) -> dict[str, Any]:
    broker = Mosquitto(workdir / f"mq-{shards}")
    broker.start()
    aggs = [start_aggregator(broker.port, k, shards) for k in range(shards)]
    watch = ViewWatch()
    watcher = asyncio.create_task(watch.run(broker.port))
    pubs: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.sleep(2)
        per = a.instances // a.procs
        for i in range(a.procs):
            pubs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "bench_e2e.py"), "publisher",
                 "--port", str(broker.port), "--first", str(i * per), "--count", str(per),
                 "--series", str(a.series), "--services", str(a.services)],
                stdout=subprocess.DEVNULL, cwd=ROOT))
        await asyncio.sleep(a.warm)  # every instance seen, windows filled
        m0, t0 = watch.meta(), time.monotonic()
        cpu0 = [cpu_seconds(p.pid) for p in aggs]
        await asyncio.sleep(a.seconds)
        m1, t1 = watch.meta(), time.monotonic()
        cpu1 = [cpu_seconds(p.pid) for p in aggs]
        folded = (int(m1.get("folded") or 0) - int(m0.get("folded") or 0)) / (t1 - t0)
        services = ((watch.view or {}).get("services") or {}).values()
        insts = sum(len(s.get("instances") or {}) for s in services)
        return {"shards": shards, "folded_per_s": round(folded, 1), "offered_per_s": a.instances,
                "completeness": (m1.get("completeness") or {}).get("ratio"), "instances_in_view": insts,
                "rss_mb": [round(rss_mb(p.pid), 1) for p in aggs],
                "cpu_s_per_1000": [round((c1 - c0) / max(1.0, folded * (t1 - t0)) * 1000, 3)
                                   for c0, c1 in zip(cpu0, cpu1, strict=True)],
                "cpu_pct": [round((c1 - c0) / (t1 - t0) * 100, 1) for c0, c1 in zip(cpu0, cpu1, strict=True)]}
    finally:
        for p in pubs:
            p.terminate()
        for p in pubs:
            p.wait(10)
        await teardown(watcher, aggs, broker)


async def drain(a: argparse.Namespace, shards: int, workdir: Path) -> dict[str, Any]:
    broker = Mosquitto(workdir / f"drain-{shards}", extra_conf="max_queued_messages 0\nmax_queued_bytes 0")
    broker.start()
    watch = ViewWatch()
    watcher = asyncio.create_task(watch.run(broker.port))
    aggs = [start_aggregator(broker.port, k, shards) for k in range(shards)]
    try:
        # 1. every instance's status once (shards subscribe per service), while the aggregators run
        per = a.instances // a.procs

        def burst(rounds: int) -> list[subprocess.Popen[bytes]]:
            args = [str(a.series), str(a.services), str(rounds)]
            return [subprocess.Popen([sys.executable, __file__, "burst", str(broker.port), str(i * per),
                                      str(per), *args], stdout=subprocess.PIPE, cwd=ROOT)
                    for i in range(a.procs)]

        pubs = burst(1)
        for p in pubs:
            p.wait(300)
        await asyncio.sleep(5)
        for p in aggs:
            stop(p)  # their broker sessions (and subscriptions) stay
        folded_before = 0
        # 2. the backlog: rounds x instances metrics messages, queued for the stopped aggregators
        pubs = burst(a.drain_rounds)
        for p in pubs:
            p.wait(600)
        backlog = per * a.procs * a.drain_rounds
        # 3. start again and time the drain, from the published view's meta.folded
        watch.view = None
        t0 = time.monotonic()
        aggs = [start_aggregator(broker.port, k, shards) for k in range(shards)]
        deadline = t0 + 600
        # the rate is timed from the first view that shows folding under way (process start-up and
        # connecting are not folding) to the view that holds the whole backlog
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            folded = int(watch.meta().get("folded") or 0)
            if first is None and folded > 0:
                first = (time.monotonic(), folded)
            if folded >= backlog:
                break
            await asyncio.sleep(0.02)
        end = time.monotonic()
        folded = int(watch.meta().get("folded") or 0) - folded_before
        t1, f1 = first or (t0, 0)
        # from process start to the whole backlog in the view (start-up included: an aggregator busy
        # folding may publish its first view only when it is done, so there is no later start to time)
        return {"shards": shards, "backlog": backlog, "folded": folded, "seconds": round(end - t0, 2),
                "folded_per_s": round(folded / max(end - t0, 1e-3), 1),
                "first_view_after_s": round(t1 - t0, 2) if first else None, "first_view_folded": f1,
                "rss_mb": [round(rss_mb(p.pid), 1) for p in aggs]}
    finally:
        await teardown(watcher, aggs, broker)


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="opsdash-bench-shards-") as d:
        for shards in (1, 2):
            res[f"drain{shards}"] = await drain(a, shards, Path(d))
            print(json.dumps(res[f"drain{shards}"]), flush=True)
        if a.seconds:
            for shards in (1, 2):
                res[f"paced{shards}"] = await run(a, shards, Path(d))
                print(json.dumps(res[f"paced{shards}"]), flush=True)
    one, two = res["drain1"]["folded_per_s"], res["drain2"]["folded_per_s"]
    res["ratio"] = round(two / one, 2) if one else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--services", type=int, default=40, help="max_instances_per_service is 256")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--warm", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--drain-rounds", type=int, default=4)
    if len(sys.argv) > 1 and sys.argv[1] == "burst":
        port, first, count, series, services, rounds = map(int, sys.argv[2:8])
        role_burst(port, first, count, series, services, rounds)
        return
    a = ap.parse_args()
    res = asyncio.run(main_async(a))
    print(f"\n# shards: {a.instances} instances x {a.series} series, {a.procs} publisher processes")
    print("| figure | 1 aggregator | 2 shards |")
    print("|---|---|---|")
    d1, d2 = res["drain1"], res["drain2"]
    print(f"| drain: {d1['backlog']} queued metrics messages folded in | {d1['seconds']} s "
          f"| {d2['seconds']} s |")
    print(f"| drain: folded per second | {d1['folded_per_s']} | {d2['folded_per_s']} |")
    print(f"| drain: folded rate, 2 shards / 1 | | {res['ratio']} |")
    print(f"| drain: RSS MB per process | {d1['rss_mb']} | {d2['rss_mb']} |")
    if "paced1" in res:
        p1, p2 = res["paced1"], res["paced2"]
        for key in ("completeness", "instances_in_view", "folded_per_s", "rss_mb", "cpu_pct"):
            print(f"| paced at 1 s: {key} | {p1[key]} | {p2[key]} |")


if __name__ == "__main__":
    main()
