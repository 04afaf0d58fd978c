"""Benchmark: the recorder storing 2,000 events/s (issue 12 aim: <= 20 % of one core).

    .venv/bin/python bench/bench_events_ingest.py [--rate 2000] [--seconds 30]

Starts a private mosquitto and PostgreSQL, the real recorder (``opsdash recorder``, its own process)
and, as the baseline in the same run, a bare aiomqtt subscriber that only counts the same messages.
A publisher process sends ``--rate`` events a second (QoS 1, 20 instances of 4 services, the
simulator's kinds and messages) for ``--seconds``. CPU is read from /proc (utime + stime) over the
steady part of the run: the recorder, the bare subscriber, and the PostgreSQL server's processes.
At the end every event sent must be in the events table (counted), or the figure does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opsdash.servers import Mosquitto, PrivatePostgres  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

PUBLISHER = textwrap.dedent('''
    import json, random, sys, time
    import paho.mqtt.client as mqtt
    port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    rng = random.Random(1)
    names = [(s, f"{s}-{i}") for s in ("ingest", "evaluator", "delivery", "dispatcher") for i in range(5)]
    seq = {n: 0 for n in names}
    sent = 0
    start = time.monotonic()
    step = 0.05
    infos = []
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            n = names[sent % len(names)]
            seq[n] += 1
            tenant = rng.choice(["acme", "globex", "initech", "umbrella"])
            body = {"boot": "bench", "seq": seq[n], "ts": time.time(), "kind": "webhook_timeout",
                    "severity": "error", "message": f"POST https://hooks.{tenant}.example/alerts timed out "
                    f"after 10 s (job {sent})", "attrs": {"tenant": tenant}}
            infos.append(c.publish(f"$ops/v1/svc/{n[0]}/{n[1]}/events", json.dumps(body), qos=1))
            sent += 1
        time.sleep(step)
    for i in infos[-100:]:
        i.wait_for_publish(10)
    c.loop_stop()
    print(sent, flush=True)
''')

BARE = textwrap.dedent('''
    import asyncio, sys
    import aiomqtt
    async def main():
        n = 0
        async with aiomqtt.Client("127.0.0.1", int(sys.argv[1]), identifier="bench-bare",
                                  max_queued_incoming_messages=100000) as c:
            await c.subscribe("$ops/v1/svc/+/+/events", qos=1)
            print("ready", flush=True)
            async for m in c.messages:
                n += 1
    asyncio.run(main())
''')


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pg_pids(datadir: Path) -> list[int]:
    """The postmaster of this cluster (postmaster.pid) and its children (backends, writers)."""
    master = int((datadir / "data" / "postmaster.pid").read_text().split()[0])
    out = [master]
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == master:
                out.append(int(p.name))
    return out


def pg_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_s(pid)
        except OSError:
            continue
    return total


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="opsdash-bench-ingest-"))
    broker = Mosquitto(work / "mqtt", extra_conf="max_queued_messages 1000000").start()
    pgdir = Path(tempfile.mkdtemp(prefix="opsdash-bench-ingest-pg-"))  # initdb runs as postgres
    pg = PrivatePostgres(pgdir).start()
    conn = await asyncpg.connect(pg.admin_dsn)
    await conn.execute("CREATE DATABASE opsdash")
    await conn.close()
    dsn = pg.dsn("opsdash")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSDASH_")}
    env.update({"OPSDASH_MQTT_URL": broker.url, "OPSDASH_HISTORY_URL": dsn})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(work / "recorder.log", "wb") as log:
            rec = subprocess.Popen([sys.executable, "-c", "import sys; from opsdash.cli import main; "
                                    "sys.exit(main())", "recorder"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        procs.append(rec)
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(broker.port)], stdout=subprocess.PIPE)
        procs.append(bare)
        assert bare.stdout is not None
        bare.stdout.readline()
        db = await asyncpg.connect(dsn)
        for _ in range(100):  # the recorder migrated the schema and subscribed
            if await db.fetchval("SELECT to_regclass('events') IS NOT NULL"):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(broker.port), str(args.rate),
                                str(args.seconds)], stdout=subprocess.PIPE)
        procs.append(pub)
        await asyncio.sleep(5)  # past the start
        pids = pg_pids(pgdir)
        t0, r0, b0, p0 = time.monotonic(), cpu_s(rec.pid), cpu_s(bare.pid), pg_cpu(pids)
        await asyncio.sleep(max(1.0, args.seconds - 8))
        t1, r1, b1, p1 = time.monotonic(), cpu_s(rec.pid), cpu_s(bare.pid), pg_cpu(pg_pids(pgdir))
        out, _ = await asyncio.to_thread(pub.communicate)
        sent = int(out.split()[-1])
        stored = 0
        for _ in range(300):
            stored = int(await db.fetchval("SELECT count(*) FROM events"))
            if stored >= sent:
                break
            await asyncio.sleep(0.2)
        await db.close()
        wall = t1 - t0
        rec_pct, bare_pct, pg_pct = ((r1 - r0) / wall * 100, (b1 - b0) / wall * 100, (p1 - p0) / wall * 100)
        print("| figure | value | aim | met |\n|---|---|---|---|")
        print(f"| recorder ingest of {args.rate:,} events/s ({wall:.0f} s measured, {sent:,} sent, "
              f"{stored:,} stored) | recorder CPU {rec_pct:.1f} % of one core "
              f"({rec_pct / bare_pct if bare_pct else float('nan'):.1f}x a bare aiomqtt subscriber of the "
              f"same stream: {bare_pct:.1f} %); PostgreSQL {pg_pct:.1f} % | <= 20 % of one core | "
              f"{'yes' if rec_pct <= 20 and stored == sent else 'NO'} |")
        return 0 if stored == sent else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        pg.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
