"""Aggregator shards: one aggregator against two shards (``0/2`` + ``1/2``) on the same stream.

    .venv/bin/python bench/bench_shards.py [--instances 10000] [--series 20] [--procs 4] [--seconds 40]

Everything real: a private mosquitto, ``opsdash aggregator`` processes, and publisher processes
running the reporter's pure core for many instances each (bench_e2e.py's ``publisher`` role: the
same payloads a Reporter sends, status retained at connect, metrics every 1 s). Run A: one aggregator
(the baseline); run B: two shards, with the same publishers. Printed for each: messages folded per
second (``meta.folded`` of the published view, over the measuring window), completeness
(``meta.completeness.ratio``), RSS and CPU seconds per 1,000 messages of each aggregator process.
The ratio ``B / A`` of folded rates is the figure (aim with 2 shards on 2 cores: ≥ 1.7 when one
aggregator cannot keep up; when one can, both fold everything and the ratio is ~1). The machine is
shared: compare ratios of one run, not absolute figures.
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


def start_aggregator(port: int, k: int, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPSDASH_MQTT_URL": f"mqtt://127.0.0.1:{port}",
           "OPSDASH_AGGREGATOR__ID": f"bench-{k}", "OPSDASH_AGGREGATOR__SHARD": f"{k}/{n}",
           "OPSDASH_AGGREGATOR__MAX_SERVICES": "256"}
    env.pop("OPSDASH_HISTORY_URL", None)
    return subprocess.Popen([sys.executable, "-m", "opsdash.cli", "--log-level", "WARNING", "aggregator"],
                            env=env, start_new_session=True, cwd=ROOT)


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


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
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await watcher
        for p in aggs:
            stop(p)
        broker.stop()


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="opsdash-bench-shards-") as d:
        one = await run(a, 1, Path(d))
        print(json.dumps(one), flush=True)
        two = await run(a, 2, Path(d))
        print(json.dumps(two), flush=True)
    return {"one": one, "two": two, "ratio": round(two["folded_per_s"] / one["folded_per_s"], 2)
            if one["folded_per_s"] else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=10000)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--services", type=int, default=40, help="max_instances_per_service is 256")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--warm", type=float, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    res = asyncio.run(main_async(a))
    one, two = res["one"], res["two"]
    print(f"\n# shards: {a.instances} instances x {a.series} series at 1 s, {a.procs} publisher processes")
    print("| figure | 1 aggregator | 2 shards |")
    print("|---|---|---|")
    for key in ("folded_per_s", "completeness", "instances_in_view", "rss_mb", "cpu_pct", "cpu_s_per_1000"):
        print(f"| {key} | {one[key]} | {two[key]} |")
    print(f"| folded rate, 2 shards / 1 | | {res['ratio']} |")


if __name__ == "__main__":
    main()
