"""End-to-end benchmark: reporter → mosquitto → aggregator → mosquitto → gateway → WebSocket client.

    .venv/bin/python bench/bench_e2e.py [--fresh-samples 60] [--kills 12] [--stalls 3]
                                        [--scale-instances 2000] [--scale-series 20] [--scale-procs 4]
                                        [--scale-seconds 30] [--profile] [--shards 1] [--json out.json]

Everything real and in separate processes: a private mosquitto with deploy/mosquitto.conf's settings,
``opsdash aggregator`` and ``opsdash gateway`` as subprocesses (default configuration), each reporter
in its own process (the real ``telemetry_bus.Reporter``), and this process as the WebSocket client
(applying snapshots and merge patches like the frontend) plus an MQTT observer of the intermediate hops.
All times are ``time.time()`` on the same machine.

1. Baseline: the bare MQTT round trip of one QoS 1 message (publish → subscriber), p50/p99.
2. Freshness: reporter processes increment ``bench_counter`` at random moments and print when; the
   latency is until the new total is visible in ``services.<svc>.instances.<i>.totals`` at the
   WebSocket client. Split into hops: increment → metrics message on the bus (the reporter's interval),
   metrics → the aggregator tick that carries it (tick wait), tick → patch on the bus (tick work and
   publish), patch → WebSocket client (gateway). Aim: p99 ≤ interval + 150 ms.
3. Crash detection: ``kill -9`` of healthy reporter processes → instance ``down`` at the client
   (aim p99 ≤ 1.5 s). Stall detection: SIGSTOP → ``down`` (aim ≤ 3 × interval + 1 s).
4. Scale: N instances × S series at 1 s from a few publisher processes, each running N/P
   ``ReporterCore``s (the reporter's pure core: same payloads, same seq/totals) over ONE MQTT connection
   per process. Why not N real ``Reporter`` objects: 2,000 asyncio MQTT clients would cost the two
   shared cores far more CPU than the aggregator under test, and the aggregator sees the very same
   stream either way (one subscription; per-instance topics, status and metrics). What this leaves out:
   2,000 broker connections and their Last Wills (broker load, not aggregator load). The aggregator's
   CPU % and RSS are read from /proc; tick duration from its own ``tick_ms`` report and from the patch's
   lag behind its tick time; freshness measured again under the load. ``--profile`` records the
   aggregator with py-spy during the scale run and prints where its time goes.

The machine is shared (2 cores): medians are what to compare; p99s of 10-60 samples are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import random
import shutil
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
import msgspec  # noqa: E402

from opsdash.servers import Mosquitto, free_port, wait_port  # noqa: E402
from telemetry_bus.contract import encode, topics  # noqa: E402
from telemetry_bus.view_diff import apply_append, merge_patch  # noqa: E402

INTERVAL = 1.0
COUNTER = "bench_counter"


# -- /proc --------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem_mb(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "max": max(values) if values else None}


# -- child roles ---------------------------------------------------------------------------------------

async def role_reporter(a: argparse.Namespace) -> None:
    """One real Reporter; with --bumps, increments bench_counter at random moments and prints when."""
    from telemetry_bus.reporter import Reporter

    rng = random.Random(os.getpid())
    if a.bumps:  # a random phase of the second, so the freshness reporters sample the tick wait evenly
        await asyncio.sleep(rng.uniform(0, a.interval))
    rep = Reporter(a.service, a.instance, mqtt_url=a.url, interval_s=a.interval)
    await rep.start()
    await rep.wait_connected()
    rep.inc(COUNTER, 0)
    print("connected", flush=True)
    total = 0
    while True:
        await asyncio.sleep(rng.uniform(0.7, 1.7) if a.bumps else 3600)
        rep.inc(COUNTER)
        total += 1
        print(f"inc {total} {time.time():.6f}", flush=True)


def role_publisher(a: argparse.Namespace) -> None:
    """Many instances' traffic over one MQTT connection: one ReporterCore per instance, real payloads.

    paho-mqtt with its network loop in a thread and fire-and-forget QoS 1 publishes: aiomqtt awaiting
    each PUBACK could not push 500 messages/s per process on this machine (measured: half that).
    """
    import paho.mqtt.client as mqtt

    from telemetry_bus.reporter import ReporterCore, new_boot_id

    n_hist = 2 if a.series >= 10 else 0
    n_gauge = (a.series - n_hist) // 3
    n_ctr = a.series - n_hist - n_gauge
    ctr_names = [f"c_{k:02d}_total" for k in range(n_ctr)]
    gauge_names = [f"g_{k:02d}" for k in range(n_gauge)]
    hist_names = [f"h_{k:02d}_ms" for k in range(n_hist)]
    rng = random.Random(a.first)
    lat = [rng.lognormvariate(1.0, 0.8) for _ in range(3)]
    now = time.time()
    insts = []
    for k in range(a.first, a.first + a.count):
        svc, name = f"scale-{k % a.services}", f"inst-{k:05d}"
        core = ReporterCore(new_boot_id() + f"{k}", a.interval, now)
        insts.append((core, topics.metrics("$ops", svc, name), topics.status("$ops", svc, name)))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{a.first}")
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", a.port, keepalive=30)
    c.loop_start()
    for core, _, st_topic in insts:
        c.publish(st_topic, encode(core.status("online", time.time())), qos=1, retain=True)
    print("ready", flush=True)
    start = time.monotonic()
    slots = 50  # publish in 50 slots per interval, each instance at its own phase
    sent = 0
    cycle = 0
    busy = 0.0
    while True:
        for s in range(slots):
            due = start + (cycle + s / slots) * a.interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.monotonic()
            t = time.time()
            r = rng.random()
            for core, m_topic, _ in insts[s::slots]:
                # cheap values (the publisher shares the 2 cores with what it measures); every series
                # changes every interval, as on a busy platform
                for j, name in enumerate(ctr_names):
                    core.inc(name, cycle + j)
                for j, name in enumerate(gauge_names):
                    core.set_gauge(name, r * 100 + j)
                for name in hist_names:
                    for v in lat:
                        core.observe(name, v * (1 + r))
                c.publish(m_topic, encode(core.take(t)), qos=1)
                sent += 1
            busy += time.monotonic() - t0
        cycle += 1
        if cycle % 5 == 0:
            lag = time.monotonic() - (start + cycle * a.interval)
            print(f"sent {sent} lag {lag:.3f} s busy {busy / (time.monotonic() - start):.2f}", flush=True)


# -- the WebSocket client --------------------------------------------------------------------------

class Watcher:
    """The client's copy of the view (snapshot + merge patches, resync on a gap) and callbacks per frame."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.state: dict[str, Any] | None = None
        self.seq: int | None = None
        self.frames = collections.Counter[str]()
        self.gaps = 0
        self.bytes = 0
        self.callbacks: list[Any] = []
        self.apply_ms: list[float] = []  # decode + merge + callbacks per frame
        self._dec = msgspec.json.Decoder()

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, max_size=None, compression=None, ping_interval=None) as ws:
            async for raw in ws:
                t = time.time()
                self.bytes += len(raw)
                msg = self._dec.decode(raw)
                kind = msg.get("type")
                self.frames[kind] += 1
                if kind == "snapshot":
                    self.state, self.seq = msg["state"], msg["seq"]
                elif kind == "patch":
                    if self.state is None or msg["base"] != self.seq:
                        self.gaps += 1
                        await ws.send('{"type":"resync"}')
                        continue
                    self.state = merge_patch(self.state, msg["patch"])
                    if msg.get("append"):
                        apply_append(self.state.setdefault("series", {}), msg["append"],
                                     self.state["meta"].get("series_len", 900))
                    self.seq = msg["seq"]
                else:
                    continue
                for cb in list(self.callbacks):
                    cb(self.state, t)
                self.apply_ms.append((time.time() - t) * 1000)

    def instance(self, svc: str, inst: str) -> dict[str, Any] | None:
        if self.state is None:
            return None
        return self.state.get("services", {}).get(svc, {}).get("instances", {}).get(inst)


class BusObserver:
    """Observes hops on the bus: metrics of the freshness reporters, view patches (seq, ts, arrival)."""

    class Head(msgspec.Struct):
        seq: int
        ts: float

    def __init__(self, port: int) -> None:
        self.port = port
        self.metrics: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)  # inst → (total, t)
        self.patches: list[tuple[int, float, float]] = []  # (seq, tick ts, arrival)
        self.agg_ticks: list[tuple[float, float, int]] = []  # aggregator self-report: (sum ms, max ms, count)
        self.ready = asyncio.Event()

    async def run(self) -> None:
        head = msgspec.json.Decoder(self.Head)
        dec = msgspec.json.Decoder()
        async with aiomqtt.Client("127.0.0.1", self.port, max_queued_incoming_messages=None) as c:
            await c.subscribe("$ops/v1/svc/fresh/+/metrics", qos=0)
            await c.subscribe("$ops/v1/svc/opsdash-aggregator/+/metrics", qos=0)
            await c.subscribe("$ops/v1/view/patch", qos=0)
            self.ready.set()
            async for m in c.messages:
                t = time.time()
                topic = m.topic.value
                payload = m.payload
                assert isinstance(payload, bytes)
                if topic.endswith("/view/patch"):
                    h = head.decode(payload)
                    self.patches.append((h.seq, h.ts, t))
                elif "/opsdash-aggregator/" in topic:
                    hist = dec.decode(payload).get("hist", {}).get("tick_ms")
                    if hist:
                        self.agg_ticks.append((hist["sum"], hist["max"], hist["count"]))
                else:
                    inst = topic.split("/")[4]
                    total = dec.decode(payload).get("totals", {}).get(COUNTER)
                    if total is not None:
                        self.metrics[inst].append((total, t))


# -- the stack -------------------------------------------------------------------------------------

class Child:
    """A child process (a role of this script) with its stdout lines parsed by a task."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self.incs: list[tuple[int, float]] = []
        self.connected = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().strip()
            if line in ("connected", "ready"):
                self.connected.set()
            elif line.startswith("inc "):
                _, total, t = line.split()
                self.incs.append((int(total), float(t)))
            else:
                self.lines.append(line)

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.proc.wait()
        self.task.cancel()


async def spawn_role(port: int, *args: str) -> Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, "--port", str(port), stdout=asyncio.subprocess.PIPE,
        stdin=subprocess.DEVNULL)
    return Child(proc, " ".join(args))


async def spawn_reporter(port: int, svc: str, inst: str, bumps: bool) -> Child:
    return await spawn_role(port, "reporter", svc, inst, *(["--bumps"] if bumps else []))


def start_opsdash(part: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "opsdash.cli", "--log-level", "WARNING", part],
                            env={**os.environ, **env}, start_new_session=True, cwd=ROOT)


def stop_proc(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


async def until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


# -- measurements ------------------------------------------------------------------------------------

async def mqtt_round_trip(port: int, n: int) -> list[float]:
    """Bare MQTT: one ~400 B QoS 1 message published → received by another client, ms."""
    out: list[float] = []
    payload = b"x" * 400
    async with aiomqtt.Client("127.0.0.1", port) as sub, aiomqtt.Client("127.0.0.1", port) as pub:
        await sub.subscribe("bench/rtt", qos=1)
        it = sub.messages.__aiter__()
        for _ in range(n):
            t0 = time.time()
            await pub.publish("bench/rtt", payload, qos=1)
            await it.__anext__()
            out.append((time.time() - t0) * 1000)
            await asyncio.sleep(random.uniform(0.01, 0.05))
    return out


def watch_totals(watcher: Watcher, insts: list[str], seen: dict[str, list[tuple[int, float]]]) -> Any:
    """A callback recording when each new total of bench_counter first shows at the client."""
    def cb(state: dict[str, Any], t: float) -> None:
        svc = state.get("services", {}).get("fresh", {}).get("instances", {})
        for inst in insts:
            total = svc.get(inst, {}).get("totals", {}).get(COUNTER)
            if total is not None and (not seen[inst] or total > seen[inst][-1][0]):
                seen[inst].append((total, t))
    return cb


async def freshness(watcher: Watcher, obs: BusObserver, reporters: dict[str, Child], samples: int,
                    timeout: float) -> dict[str, Any]:
    """Collect ≥ samples increments and their visibility at the client; split into hops."""
    seen: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    cb = watch_totals(watcher, list(reporters), seen)
    watcher.callbacks.append(cb)
    start = time.time()
    base = {inst: len(ch.incs) for inst, ch in reporters.items()}
    await until(lambda: sum(len(ch.incs) - base[i] for i, ch in reporters.items()) >= samples, timeout,
                f"{samples} increments")
    await asyncio.sleep(3.5)  # the last increments reach the client
    watcher.callbacks.remove(cb)
    e2e, hop_rep, hop_tick, hop_agg, hop_gw = [], [], [], [], []
    patches = [p for p in obs.patches if p[2] >= start]
    for inst, ch in reporters.items():
        for total, t_inc in ch.incs[base[inst]:]:
            t_ws = next((t for tot, t in seen[inst] if tot >= total and t >= t_inc), None)
            if t_ws is None:
                continue
            e2e.append((t_ws - t_inc) * 1000)
            t_m = next((t for tot, t in obs.metrics[inst] if tot >= total and t >= t_inc), None)
            if t_m is None:
                continue
            # the first tick after the metrics arrived carries it (the aggregator folds on arrival)
            p = next((p for p in patches if p[1] >= t_m - 0.002), None)
            if p is None:
                continue
            hop_rep.append((t_m - t_inc) * 1000)
            hop_tick.append(max(0.0, p[1] - t_m) * 1000)
            hop_agg.append((p[2] - p[1]) * 1000)
            hop_gw.append(max(0.0, t_ws - p[2]) * 1000)
    return {"e2e_ms": summary(e2e), "hops_p50_ms": {
        "increment->metrics on bus (reporter interval)": pct(hop_rep, 50),
        "metrics->tick (tick wait)": pct(hop_tick, 50),
        "tick->patch on bus (tick work + publish)": pct(hop_agg, 50),
        "patch->WebSocket client (gateway)": pct(hop_gw, 50)},
        "hops_p99_ms": {"reporter": pct(hop_rep, 99), "tick_wait": pct(hop_tick, 99),
                        "tick_work": pct(hop_agg, 99), "gateway": pct(hop_gw, 99)}}


async def detection(watcher: Watcher, port: int, svc: str, n: int, sig: int, gap: tuple[float, float],
                    timeout: float) -> list[float]:
    """Start n reporters, wait until healthy at the client, send sig to each at random moments;
    return ms from the signal to the instance showing down at the client."""
    names = [f"{svc}-{k}" for k in range(n)]
    children = {name: await spawn_reporter(port, svc, name, False) for name in names}
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in children.values())), 60)
        await until(lambda: all((watcher.instance(svc, i) or {}).get("status") == "healthy" for i in names),
                    30, f"{svc} instances healthy")
        sent: dict[str, float] = {}
        down: dict[str, float] = {}

        def cb(state: dict[str, Any], t: float) -> None:
            insts = state.get("services", {}).get(svc, {}).get("instances", {})
            for i in sent:
                if i not in down and insts.get(i, {}).get("status") == "down":
                    down[i] = t
        watcher.callbacks.append(cb)
        for name in names:
            await asyncio.sleep(random.uniform(*gap))
            sent[name] = time.time()
            children[name].signal(sig)
        await until(lambda: len(down) == len(sent), timeout, f"{svc}: all down")
        watcher.callbacks.remove(cb)
        return [(down[i] - sent[i]) * 1000 for i in names]
    finally:
        for c in children.values():
            await c.kill()


class ProcSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = cpu_seconds(pid)
        self.t0 = time.monotonic()
        self.rss: list[float] = []

    def sample(self) -> None:
        self.rss.append(proc_mem_mb(self.pid)["VmRSS"])

    def result(self) -> dict[str, float]:
        cpu = (cpu_seconds(self.pid) - self.cpu0) / (time.monotonic() - self.t0) * 100
        mem = proc_mem_mb(self.pid)
        return {"cpu_pct": cpu, "rss_mb_median": statistics.median(self.rss or [mem["VmRSS"]]),
                "rss_mb_last": mem["VmRSS"], "rss_mb_peak": mem["VmHWM"]}


def tick_figures(obs: BusObserver, since: float) -> dict[str, Any]:
    lag = [(arr - ts) * 1000 for _, ts, arr in obs.patches if arr >= since]
    self_rep = obs.agg_ticks[-30:]
    count = sum(c for _, _, c in self_rep)
    seqs = [s for s, _, arr in obs.patches if arr >= since]
    missing = (seqs[-1] - seqs[0] + 1 - len(seqs)) if seqs else 0
    return {"patch_lag_ms": summary(lag), "patches_missed": missing,
            "self_tick_ms_mean": sum(s for s, _, _ in self_rep) / count if count else None,
            "self_tick_ms_max": max((m for _, m, _ in self_rep), default=None)}


def profile(pid: int, seconds: int, workdir: Path) -> list[str]:
    """py-spy record of the aggregator; returns the top functions by own and inclusive samples."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return ["py-spy not installed (.venv/bin/pip install py-spy)"]
    out = workdir / "agg.collapsed"
    r = subprocess.run([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw",
                        "-o", str(out), "--nonblocking"], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0 or not out.exists():
        return [f"py-spy failed: {r.stderr.strip()[-300:]}"]
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        k = int(n)
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    wall = seconds * 50  # samples of a thread busy all the time
    lines = [f"py-spy of the aggregator, {seconds} s at 50 Hz: {total} busy samples = "
             f"{100 * total / wall:.0f} % of one core; figures below in % of one core"]
    lines.append("  own time:")
    lines += [f"    {100 * v / wall:5.1f} %  {f}" for f, v in own.most_common(12)]
    lines.append("  inclusive:")
    lines += [f"    {100 * v / wall:5.1f} %  {f}" for f, v in incl.most_common(30)
              if not f.startswith(("<module>", "run (", "_run_once", "run_forever", "run_until",
                                          "main (", "Runner.run", "_run_code", "_run_module"))][:18]
    return lines


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                           "interval_s": INTERVAL}
    workdir = Path(tempfile.mkdtemp(prefix="opsdash-bench-e2e-"))
    broker = Mosquitto(workdir / "mqtt").start()
    port = broker.port
    gw_port = free_port()
    env = {"OPSDASH_MQTT_URL": broker.url, "OPSDASH_AGGREGATOR__ID": "bench",
           "OPSDASH_LISTEN": f"127.0.0.1:{gw_port}", "OPSDASH_GATEWAY__ID": "bench-gw"}
    # --shards N: N aggregator processes (aggregator.shard k/N); figures of the aggregator are shard 0's,
    # the one that merges and publishes the view
    aggs = [start_opsdash("aggregator", {**env, "OPSDASH_AGGREGATOR__ID": f"bench-{k}",
                                         "OPSDASH_AGGREGATOR__SHARD": f"{k}/{a.shards}"})
            for k in range(a.shards)]
    agg = aggs[0]
    res["shards"] = a.shards
    gw = start_opsdash("gateway", env)
    tasks: list[asyncio.Task[Any]] = []
    children: list[Child] = []
    try:
        wait_port("127.0.0.1", gw_port, 20)
        res["mqtt_rtt_ms"] = summary(await mqtt_round_trip(port, 50))
        print(f"bare MQTT round trip: {res['mqtt_rtt_ms']}", flush=True)
        obs = BusObserver(port)
        tasks.append(asyncio.create_task(obs.run()))
        await asyncio.wait_for(obs.ready.wait(), 10)
        watcher = Watcher(f"ws://127.0.0.1:{gw_port}/operator/system/live")
        tasks.append(asyncio.create_task(watcher.run()))
        await until(lambda: watcher.state is not None, 30, "first snapshot at the client")

        # Each reporter sends at a fixed phase of the second and the aggregator ticks on whole seconds, so
        # the tick wait is fixed per reporter: several reporters sample several phases.
        fresh = {f"fresh-{k}": await spawn_reporter(port, "fresh", f"fresh-{k}", True)
                 for k in range(a.fresh_reporters)}
        children += fresh.values()
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in fresh.values())), 60)
        await asyncio.sleep(2.5)
        idle = ProcSampler(agg.pid)
        res["freshness"] = await freshness(watcher, obs, fresh, a.fresh_samples, 240)
        res["freshness_phases"] = sorted(round(min(ts) % 1, 3) for ts in
                                         (list(t for _, t in obs.metrics[i]) for i in fresh) if ts)
        idle.sample()
        res["agg_idle"] = idle.result()
        print(f"freshness: {json.dumps(res['freshness'])}", flush=True)

        res["crash_ms"] = summary(await detection(watcher, port, "crash", a.kills, signal.SIGKILL,
                                                  (0.2, 0.6), 30))
        print(f"crash: {res['crash_ms']}", flush=True)
        res["stall_ms"] = summary(await detection(watcher, port, "stall", a.stalls, signal.SIGSTOP,
                                                  (0.3, 1.3), 30))
        print(f"stall: {res['stall_ms']}", flush=True)

        if a.scale_instances:
            res["scale"] = await scale(a, port, agg, gw, watcher, obs, fresh, children, workdir)
        res["client"] = {"frames": dict(watcher.frames), "gaps": watcher.gaps, "bytes": watcher.bytes}
    finally:
        for t in tasks:
            t.cancel()
        for c in children:
            await c.kill()
        stop_proc(gw)
        for p in aggs:
            stop_proc(p)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return res


async def scale(a: argparse.Namespace, port: int, agg: subprocess.Popen[bytes],
                gw: subprocess.Popen[bytes], watcher: Watcher, obs: BusObserver, fresh: dict[str, Child],
                children: list[Child], workdir: Path) -> dict[str, Any]:
    n, procs = a.scale_instances, a.scale_procs
    out: dict[str, Any] = {"instances": n, "series": a.scale_series, "publisher_procs": procs}
    per = math.ceil(n / procs)
    pubs = []
    for p in range(procs):
        count = min(per, n - p * per)
        pubs.append(await spawn_role(port, "publisher", "--first", str(p * per), "--count", str(count),
                                     "--series", str(a.scale_series), "--services", str(a.scale_services)))
    children += pubs
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in pubs)), 120)
    t_ready = time.time()

    def scale_seen() -> tuple[int, int]:
        svcs = (watcher.state or {}).get("services", {})
        insts = [i for s, v in svcs.items() if s.startswith("scale-")
                 for i in v.get("instances", {}).values()]
        return len(insts), sum(1 for i in insts if i.get("status") == "healthy")

    try:
        await until(lambda: scale_seen()[1] >= n, 90, f"{n} scale instances healthy at the client")
        out["all_healthy_after_s"] = time.time() - t_ready
    except TimeoutError:
        out["all_healthy_after_s"] = None
    print(f"scale: instances seen/healthy {scale_seen()} at the client", flush=True)
    await asyncio.sleep(5)  # warm-up
    since = time.time()
    s_agg, s_gw, s_me = ProcSampler(agg.pid), ProcSampler(gw.pid), ProcSampler(os.getpid())
    n_apply = len(watcher.apply_ms)
    folded0 = ((watcher.state or {}).get("meta") or {}).get("folded", 0)
    fresh_task = asyncio.create_task(freshness(watcher, obs, fresh, a.scale_fresh_samples, 240))
    prof_task = None
    if a.profile:
        prof_task = asyncio.create_task(
            asyncio.to_thread(profile, agg.pid, min(20, a.scale_seconds), workdir))
    t_end = time.monotonic() + a.scale_seconds
    while time.monotonic() < t_end or not fresh_task.done():
        s_agg.sample()
        s_gw.sample()
        await asyncio.sleep(1)
    out["freshness"] = await fresh_task
    meta = (watcher.state or {}).get("meta") or {}
    out["measured_s"] = time.time() - since
    out["folded_per_s"] = (meta.get("folded", 0) - folded0) / out["measured_s"]
    out["completeness"] = meta.get("completeness")
    out["aggregator"] = s_agg.result()
    out["gateway"] = s_gw.result()
    out["client"] = {**s_me.result(), "apply_ms": summary(watcher.apply_ms[n_apply:])}
    out["tick"] = tick_figures(obs, since)
    out["seen_healthy"] = scale_seen()
    out["publisher_lines"] = [c.lines[-1] for c in pubs if c.lines]
    if prof_task is not None:
        out["profile"] = await prof_task
    return out


# -- report -------------------------------------------------------------------------------------------

def fmt(v: float | None, unit: str = "ms") -> str:
    return "n/a" if v is None else f"{v:,.0f} {unit}"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else "yes" if ok else "NO"


def report(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, aim, met) rows."""
    rtt = res["mqtt_rtt_ms"]
    aim_fresh = INTERVAL * 1000 + 150
    aim_stall = 3 * INTERVAL * 1000 + 1000
    rows: list[tuple[str, str, str, str]] = []

    def add(figure: str, value: str, aim: str = "-", ok: bool | None = None) -> None:
        rows.append((figure, value, aim, "-" if aim == "-" else met(ok)))

    def fresh_rows(prefix: str, fr: dict[str, Any]) -> None:
        e = fr["e2e_ms"]
        ratio = f" (p50 = {e['p50'] / rtt['p50']:,.0f}x MQTT RTT)" if e["p50"] else ""
        add(f"{prefix}freshness increment -> WebSocket ({e['n']} samples)",
            f"p50 {fmt(e['p50'])}, p99 {fmt(e['p99'])}{ratio}", f"p99 <= {aim_fresh:.0f} ms",
            None if e["p99"] is None else e["p99"] <= aim_fresh)
        for hop, v in fr["hops_p50_ms"].items():
            add(f"  {prefix}hop p50: {hop}", fmt(v))

    add("bare MQTT round trip, 1 msg QoS 1 (baseline)", f"p50 {rtt['p50']:.2f} ms, p99 {rtt['p99']:.2f} ms")
    fresh_rows("", res["freshness"])
    c, s = res["crash_ms"], res["stall_ms"]
    add(f"crash (kill -9) -> down at client ({c['n']} kills)", f"p50 {fmt(c['p50'])}, p99 {fmt(c['p99'])}",
        "p99 <= 1500 ms", c["p99"] <= 1500)
    add(f"stall (SIGSTOP) -> down at client ({s['n']} stalls)", f"p50 {fmt(s['p50'])}, max {fmt(s['max'])}",
        f"max <= {aim_stall:.0f} ms", s["max"] <= aim_stall)
    idle = res["agg_idle"]
    add(f"aggregator idle ({len(res['freshness_phases'])} reporters + itself)",
        f"CPU {idle['cpu_pct']:.1f} %, RSS {idle['rss_mb_last']:.0f} MB")
    sc = res.get("scale")
    if not sc:
        return rows
    ag, t, g = sc["aggregator"], sc["tick"], sc["gateway"]
    tag = f"scale {sc['instances']}x{sc['series']} @1 s: "
    add(f"{tag}aggregator CPU", f"{ag['cpu_pct']:.0f} % of one core "
        f"({ag['cpu_pct'] / max(idle['cpu_pct'], 0.1):.0f}x idle)", "< 100 % (keeps up)", ag["cpu_pct"] < 100)
    add(f"{tag}aggregator RSS", f"median {ag['rss_mb_median']:.0f} MB, peak {ag['rss_mb_peak']:.0f} MB",
        "<= 150 MB", ag["rss_mb_peak"] <= 150)
    mx = t["self_tick_ms_max"]
    add(f"{tag}tick duration (self-reported tick_ms)", f"mean {fmt(t['self_tick_ms_mean'])}, max {fmt(mx)}",
        "< 1000 ms", None if mx is None else mx < 1000)
    lag = t["patch_lag_ms"]
    add(f"{tag}patch lag behind its tick time",
        f"p50 {fmt(lag['p50'])}, p99 {fmt(lag['p99'])}, {t['patches_missed']} ticks missed", "< 1000 ms",
        lag["p99"] is not None and lag["p99"] < 1000 and not t["patches_missed"])
    ratio = (sc.get("completeness") or {}).get("ratio")
    add(f"{tag}folded", f"{sc['folded_per_s']:,.0f} msg/s (sent {sc['instances'] / INTERVAL:,.0f}/s + "
        f"the small reporters), completeness {ratio}", "completeness 1.0", ratio == 1.0)
    fresh_rows(tag, sc["freshness"])
    add(f"{tag}gateway", f"CPU {g['cpu_pct']:.0f} %, RSS peak {g['rss_mb_peak']:.0f} MB")
    cl = sc["client"]
    add(f"{tag}this WebSocket client + bus observer",
        f"CPU {cl['cpu_pct']:.0f} %, decode+merge per frame p50 {fmt(cl['apply_ms']['p50'])}, "
        f"max {fmt(cl['apply_ms']['max'])}")
    pub = "; ".join(sc.get("publisher_lines", []))
    add(f"{tag}publishers ({sc['publisher_procs']} processes)", pub)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role")
    r = sub.add_parser("reporter", help=argparse.SUPPRESS)
    r.add_argument("service")
    r.add_argument("instance")
    r.add_argument("--bumps", action="store_true")
    p = sub.add_parser("publisher", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--series", type=int, default=20)
    p.add_argument("--services", type=int, default=10)
    for s in (r, p):
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--interval", type=float, default=INTERVAL)
    ap.add_argument("--fresh-samples", type=int, default=60)
    ap.add_argument("--fresh-reporters", type=int, default=10)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--stalls", type=int, default=3)
    ap.add_argument("--scale-instances", type=int, default=2000, help="0 skips the scale run")
    ap.add_argument("--scale-series", type=int, default=20)
    ap.add_argument("--scale-services", type=int, default=10,
                    help="services the instances spread over (max_instances_per_service is 256)")
    ap.add_argument("--scale-procs", type=int, default=4)
    ap.add_argument("--scale-seconds", type=int, default=30)
    ap.add_argument("--scale-fresh-samples", type=int, default=30)
    ap.add_argument("--profile", action="store_true", help="py-spy the aggregator during the scale run")
    ap.add_argument("--shards", type=int, default=1, help="aggregator processes (aggregator.shard k/N)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if a.role == "reporter":
        a.url = f"mqtt://127.0.0.1:{a.port}"
        asyncio.run(role_reporter(a))
        return
    if a.role == "publisher":
        role_publisher(a)
        return
    res = asyncio.run(main_async(a))
    rows = report(res)
    res["rows"] = rows
    print()
    print(f"# end-to-end benchmark, {res['date']}, {res['cores']} cores (shared, noisy), reporter interval "
          f"{INTERVAL:g} s, aggregator tick 1 s, {res['shards']} aggregator shard(s)")
    print("| figure | value | aim | met |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if res.get("scale", {}).get("profile"):
        print()
        print("\n".join(res["scale"]["profile"]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
