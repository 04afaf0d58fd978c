"""The bus end to end over a real private mosquitto: reporters -> broker -> aggregator -> view."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import time
from typing import Any

import aiomqtt
import pytest

from opsdash.wiring import build_aggregator
from telemetry_bus.contract import decode_patch, decode_snapshot, encode, topics
from telemetry_bus.histogram import REPORTER_MAX_BUCKETS
from telemetry_bus.reporter import Reporter, ReporterCore
from telemetry_bus.service import AggregatorService
from telemetry_bus.view_diff import apply_append, apply_errors, merge_patch
from tests.bus.conftest import instance_view
from tests.conftest import eventually
from tests.support.servers import ROOT as REPO
from tests.support.servers import Mosquitto, scaled


async def count_for(reps: list[Reporter], seconds: float, per_tick: int = 5) -> dict[str, int]:
    sent = {r.instance: 0 for r in reps}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for r in reps:
            r.inc("messages_received", per_tick)
            r.observe("influx_write_ms", 2.5)
            sent[r.instance] += per_tick
        await asyncio.sleep(0.05)
    return sent


def folded_totals(agg: AggregatorService, service: str = "ingest") -> dict[str, int]:
    return {n: i.totals.get("messages_received", 0) for n, i in agg.fold.services[service].instances.items()}


async def test_known_traffic_gives_exact_totals_rates_health_and_a_replayable_view(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    # A view client on the broker, exactly like a gateway: snapshot, then patches.
    client_state: dict[str, Any] = {}
    client_seq = [-1]

    async def view_client() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(f"{'$ops'}/v1/view/#", qos=1)
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                if msg.topic.value.endswith("snapshot"):
                    snap = decode_snapshot(msg.payload)
                    if snap.seq > client_seq[0]:
                        client_state.clear()
                        client_state.update(snap.state)
                        client_seq[0] = snap.seq
                else:
                    p = decode_patch(msg.payload)
                    if p.base == client_seq[0]:
                        new = merge_patch(client_state, p.patch)
                        apply_append(new.setdefault("series", {}), p.append, new["meta"]["series_len"])
                        new = apply_errors(new, p.errors, new["meta"]["errors_len"])
                        client_state.clear()
                        client_state.update(new)
                        client_seq[0] = p.seq

    watcher = asyncio.create_task(view_client())
    reps = [Reporter("ingest", f"ingest-{i}", mqtt_url=mosquitto.url, interval_s=0.5) for i in range(3)]
    for r in reps:
        await r.start()
        await r.wait_connected()
    sent = await count_for(reps, 6.0)
    await eventually(lambda: folded_totals(aggregator) == sent, 5, what="totals == sent")
    await eventually(lambda: all((instance_view(aggregator, "ingest", i) or {}).get("totals", {}).get(
        "messages_received") == n for i, n in sent.items()), 3, what="the view shows the totals")
    view = aggregator.last.view if aggregator.last else {}
    comp = view["health"]["components"]["ingest"]
    assert comp["status"] == "healthy" and comp["instances_healthy"] == 3
    for inst, n in sent.items():
        assert instance_view(aggregator, "ingest", inst)["totals"]["messages_received"] == n  # type: ignore[index]
    # Rate: compare with what was sent in the same whole seconds the aggregator averages over.
    rate = view["metrics"]["throughput"]["ingest_rate_per_sec"]
    expected = sum(sent.values()) / 6.0
    assert rate == pytest.approx(expected, rel=0.25)  # first seconds are partial; exact rate: pure tests
    for r in reps:
        await r.stop()
    await eventually(lambda: all(
        (instance_view(aggregator, "ingest", r.instance) or {}).get("reason") == "shutdown" for r in reps),
        5, what="shutdown")
    # the client that applied every patch holds exactly the aggregator's view
    await eventually(lambda: aggregator.last is not None and client_seq[0] == aggregator.last.seq, 5,
                     what="client caught up")
    assert aggregator.last is not None
    assert client_state == aggregator.last.view
    watcher.cancel()


def start_reporter_process(url: str, instance: str, interval: float = 0.5) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.reporter_proc", url, "ingest", instance,
                             "--interval", str(interval)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "connected", line
    return proc


async def test_kill_9_is_down_within_1_5_s(mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    proc = start_reporter_process(mosquitto.url, "victim")
    await eventually(lambda: (instance_view(aggregator, "ingest", "victim") or {}).get("status") == "healthy",
                     10, what="healthy")
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    await eventually(lambda: (instance_view(aggregator, "ingest", "victim") or {}).get("status") == "down",
                     scaled(1.5), interval=0.01, what="down within 1.5 s")
    took = time.monotonic() - killed
    assert instance_view(aggregator, "ingest", "victim")["reason"] == "lost (Last Will)"  # type: ignore[index]
    print(f"kill -9 -> down in {took * 1000:.0f} ms")


async def test_frozen_reporter_is_down_after_3_intervals_not_keepalive(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    proc = start_reporter_process(mosquitto.url, "frozen", interval=0.5)
    try:
        await eventually(lambda: (instance_view(aggregator, "ingest", "frozen") or {}).get("status")
                         == "healthy", 10, what="healthy")
        stopped = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        await eventually(lambda: (instance_view(aggregator, "ingest", "frozen") or {}).get("status") == "down",
                         scaled(4.5), interval=0.01, what="down")
        took = time.monotonic() - stopped
        # 3 x 0.5 s of silence, a tick of 0.25 s, scheduling: well before mosquitto's keepalive (7-12 s)
        assert took >= 1.0
        assert instance_view(aggregator, "ingest", "frozen")["reason"].startswith("silent since")  # type: ignore[index]
        print(f"SIGSTOP -> down in {took * 1000:.0f} ms")
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


async def test_broker_killed_and_restarted_totals_still_equal_sent(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    reps = [Reporter("ingest", f"ingest-{i}", mqtt_url=mosquitto.url, interval_s=0.5,
                     backoff_initial_s=0.05, backoff_max_s=0.5) for i in range(3)]
    for r in reps:
        await r.start()
        await r.wait_connected()
    sent = await count_for(reps, 2.0)
    mosquitto.kill()
    more = await count_for(reps, 1.5)  # counted while the broker is dead
    mosquitto.start()
    again = await count_for(reps, 3.0)
    for k in sent:
        sent[k] += more[k] + again[k]
    await eventually(lambda: folded_totals(aggregator) == sent, 15, what="totals == sent after recovery")
    for r in reps:
        await r.stop()


async def test_duplicates_and_drops_over_the_broker(mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    core = ReporterCore("b-1", 0.5, time.time())
    t = topics.metrics("$ops", "ingest", "raw-1")
    sent = 0
    dropped = 0
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        for k in range(40):
            core.inc("messages_received", 7)
            sent += 7
            msg = encode(core.take(time.time()))
            if k % 10 == 3:
                dropped += 1
                continue
            await c.publish(t, msg, qos=1)
            await c.publish(t, msg, qos=1)  # a second copy with a new packet id
            await asyncio.sleep(0.02)
    await eventually(lambda: folded_totals(aggregator).get("raw-1") == sent, 5, what="totals")
    inst = aggregator.fold.services["ingest"].instances["raw-1"]
    assert inst.missing_intervals == dropped == 4
    assert aggregator.fold.duplicates == 36


def mosquitto_pub(broker: Mosquitto, topic: str, payload: str | bytes, *extra: str) -> None:
    data = payload.encode() if isinstance(payload, str) else payload
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic,
                    "-s", *extra], input=data, check=True, timeout=10)


async def test_bad_input_from_mosquitto_pub_is_quarantined_and_counted(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    bad = [
        ("$ops/v1/svc/ingest/i-1/metrics", b"not json"),
        ("$ops/v1/svc/ingest/i-1/metrics", b'{"boot": "b", "seq": "x"}'),
        ("$ops/v1/svc/ingest/i-1/metrics", b'{"boot": "b", "seq": 1, "gauges": {"q": NaN}}'),
        ("$ops/v1/svc/ingest/i-1/metrics", b'{"boot": "b", "seq": 1, "counters": {"x": -1}}'),
        ("$ops/v1/svc/ingest/i-1/metrics", b"[" + b"1," * 200_000 + b"1]"),
        ("$ops/v1/svc/ingest/i-1/nonsense", b"{}"),
        ("$ops/v1/probe/Bad_Target", b"{}"),
    ]
    for topic, payload in bad:
        mosquitto_pub(mosquitto, topic, payload)
    await eventually(lambda: aggregator.fold.quarantined == len(bad), 5, what="all quarantined")
    await eventually(lambda: aggregator.last is not None and aggregator.last.view["meta"]["quarantined"] == 7,
                     3, what="counted in the view")
    assert aggregator.last is not None
    errors = aggregator.last.view["errors"]
    assert errors["counts"]["quarantined_1h"] == 7
    assert all(e["type"] == "quarantined" and e["topic"] for e in errors["errors"][:5])
    # the fold keeps going
    mosquitto_pub(mosquitto, "$ops/v1/svc/ingest/i-1/metrics", encode({"boot": "b", "seq": 1,
                                                                       "counters": {"x": 3}}))
    await eventually(lambda: folded_totals(aggregator).get("i-1") is not None, 3, what="good message folded")
    assert aggregator.fold.services["ingest"].instances["i-1"].totals["x"] == 3


async def test_mosquitto_sub_shows_the_stream_as_readable_json(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    # A retained marker comes first once mosquitto_sub is subscribed: the one-shot event below is
    # published only then (waiting for the condition, not a fixed time).
    marker = "$ops/v1/test/subscribed"
    mosquitto_pub(mosquitto, marker, b'{"ready": true}', "-r")
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-v", "-t", "$ops/#",
        "-C", "13", "-W", str(int(scaled(15))), stdout=asyncio.subprocess.PIPE)
    assert sub.stdout is not None
    async with asyncio.timeout(scaled(10)):
        first = (await sub.stdout.readline()).decode()
    assert first.startswith(marker), first
    rep = Reporter("ingest", "visible", mqtt_url=mosquitto.url, interval_s=0.3)
    await rep.start()
    rep.inc("messages_received", 3)
    rep.event("parse_error", "Invalid JSON from dev-042")
    out, _ = await sub.communicate()
    await rep.stop()
    subprocess.run(["mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", marker, "-r", "-n"],
                   check=True, timeout=10)  # clear the retained marker
    lines = out.decode().strip().splitlines()
    assert len(lines) == 12
    seen = set()
    for line in lines:
        topic, _, payload = line.partition(" ")
        assert topic.startswith("$ops/v1/")
        json.loads(payload)  # every payload is JSON
        seen.add(topic.rsplit("/", 1)[1])
    assert {"status", "metrics", "events"} <= seen


async def test_reporter_bounds_memory_during_a_long_outage() -> None:
    # nothing listens on this port: the reporter keeps folding into one pending interval
    from tests.support.servers import free_port
    rep = Reporter("ingest", "lonely", mqtt_url=f"mqtt://127.0.0.1:{free_port()}", interval_s=0.1,
                   backoff_initial_s=0.05, backoff_max_s=0.1)
    await rep.start()
    for k in range(100_000):
        rep.inc("messages_received")
        rep.observe("influx_write_ms", 1 + k % 5000)
    await asyncio.sleep(0.3)
    core = rep.core
    assert core.counters == {"messages_received": 100_000}
    assert len(core.hists) == 1 and core.hists["influx_write_ms"].count == 100_000
    # one histogram of bounded size: the reporter's bucket budget, however many values
    assert len(core.hists["influx_write_ms"].buckets) <= REPORTER_MAX_BUCKETS
    assert core.seq == 0  # nothing taken while disconnected
    await rep.stop()
    assert math.isfinite(core.t0)


def test_events_queue_is_bounded_and_drops_are_counted() -> None:
    core = ReporterCore("b", 1.0, 0.0)
    for k in range(1500):
        core.event("parse_error", f"m{k}", now=float(k))
    assert len(core.events) == 1000
    msg = core.take(1.0)
    assert msg.counters["events_dropped"] == 500


def test_reporter_rejects_bad_names_and_values_clearly() -> None:
    core = ReporterCore("b", 1.0, 0.0)
    with pytest.raises(ValueError, match="metric name"):
        core.inc("Bad Name")
    with pytest.raises(ValueError, match=">= 0"):
        core.inc("x", -1)
    with pytest.raises(ValueError, match="finite"):
        core.set_gauge("g", math.nan)
    with pytest.raises(ValueError, match="service"):
        Reporter("Ingest!", "x")




async def test_a_configured_topic_root_works_end_to_end(mosquitto: Mosquitto) -> None:
    """HiveMQ refuses `$` topics from clients: the whole bus runs under another root too."""
    from opsdash.config import load_config
    from telemetry_bus.aio import cancel_and_wait

    config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_TOPIC_ROOT": "ops",
                              "OPSDASH_AGGREGATOR__TICK_S": "0.25"})
    agg = build_aggregator(config)
    task = asyncio.create_task(agg.run())
    views: list[bytes] = []

    async def watch_views() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe("ops/v1/view/snapshot", qos=1)
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                views.append(msg.payload)

    watcher = asyncio.create_task(watch_views())
    try:
        await asyncio.wait_for(agg.connected.wait(), scaled(10))
        rep = Reporter("ingest", "rooted", mqtt_url=mosquitto.url, topic_root="ops", interval_s=0.3)
        await rep.start()
        rep.inc("messages_received", 42)
        await eventually(lambda: folded_totals(agg).get("rooted") == 42, 5, what="folded under root ops")
        await rep.stop()
        await eventually(lambda: bool(views), 15, what="a snapshot on ops/v1/view/snapshot")
        assert decode_snapshot(views[-1]).state["meta"]["aggregator"] == "agg-1"
    finally:
        watcher.cancel()
        await cancel_and_wait([task])
