"""opsdash on a 3-node NATS cluster (design.md section 12): parts spread over the nodes, the
aggregator's node killed with kill -9 and restarted, totals exact, the view back within seconds, and
the NATS-aware MQTT probe telling a missing node from a healthy cluster.

Each part lists all three nodes in OPSDASH_MQTT_URL, starting with a different one, so the reporters,
the aggregator and the view watcher sit on different nodes; the kill takes the aggregator's node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from probes.config import MqttProbeConfig
from probes.mqtt import MqttProbe
from probes.runner import ProbeRunner
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import MqttConfig
from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.faults.helpers import count_load, instance_totals
from tests.scale.nats import NatsCluster
from tests.support.servers import scaled

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path / "nats", n=3)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def rotated(c: NatsCluster, first: int) -> str:
    urls = [c.mqtt_url(i) for i in range(c.n)]
    return ",".join(urls[first:] + urls[:first])


async def test_a_node_killed_under_load_loses_nothing_and_the_view_comes_back(cluster: NatsCluster) -> None:
    config = load_config(env={"OPSDASH_MQTT_URL": rotated(cluster, 0), "OPSDASH_TOPIC_ROOT": "ops",
                              "OPSDASH_AGGREGATOR__TICK_S": "0.25", "OPSDASH_AGGREGATOR__ID": "nats-agg"})
    agg = build_aggregator(config)
    agg_task = asyncio.create_task(agg.run())
    await asyncio.wait_for(agg.connected.wait(), scaled(20))
    reps = [Reporter(svc, f"{svc}-{i}", mqtt_url=rotated(cluster, 1 + i % 2), topic_root="ops", interval_s=0.5,
                     backoff_initial_s=0.05, backoff_max_s=0.5)
            for svc in ("ingest", "delivery") for i in range(2)]
    patches: list[float] = []
    watcher_ep = MqttConfig(url=cluster.mqtt_url(2)).endpoint()

    async def watch() -> None:
        async with aiomqtt.Client(watcher_ep.host, watcher_ep.port, identifier="view-watcher") as w:
            await w.subscribe("ops/v1/view/patch", qos=0)
            async for _ in w.messages:
                patches.append(time.monotonic())

    watch_task = asyncio.create_task(watch())
    try:
        for r in reps:
            await r.start()
            await asyncio.wait_for(r.connected.wait(), scaled(20))
        sent: dict[str, int] = {}
        await count_load(reps, 4.0, sent=sent)
        await eventually(lambda: len(patches) > 5, 10, what="view patches on node 2")
        killed_at = time.monotonic()
        cluster.kill(0)  # the aggregator's node
        await count_load(reps, 6.0, sent=sent)
        await eventually(lambda: any(t > killed_at + 0.5 for t in patches) and agg.connected.is_set(),
                         30, what="the view published again after the node's loss")
        back = min(t for t in patches if t > killed_at + 0.5) - killed_at
        assert agg.brokers.failovers >= 1 and agg.brokers.current.port != cluster.ports[0]["mqtt"]
        cluster.start(0)
        await count_load(reps, 2.0, sent=sent)
        for r in reps:
            await r.stop()

        def folded() -> dict[str, int]:
            return {**instance_totals(agg.fold, "ingest"), **instance_totals(agg.fold, "delivery")}

        await eventually(lambda: folded() == sent, 30, what="aggregated totals == sent totals")
        print(f"\nNATS 3 nodes: aggregator's node killed under load; view patches again after {back:.1f} s "
              f"(aim <= 5 s); totals exact: {sum(sent.values()):,} counted, "
              f"reporter reconnects {sum(r.connects - 1 for r in reps)}")
        assert back <= scaled(15)
    finally:
        for r in reps:
            await r.stop()
        await cancel_and_wait([watch_task, agg_task])


async def test_the_probe_names_a_missing_node_and_is_healthy_on_a_whole_cluster(cluster: NatsCluster) -> None:
    monitors = ",".join(cluster.monitor_url(i) for i in range(3))
    settings = MqttProbeConfig(nats_monitor_url=monitors, nats_cluster_size=3)
    probe = MqttProbe(settings, bus=MqttConfig(url=rotated(cluster, 0), topic_root="ops"))
    runner = ProbeRunner([probe])
    whole = (await runner.run_once())["mqtt"]
    assert whole.status == "healthy", whole.error
    assert whole.metrics["cluster_size"] == 3
    cluster.kill(0)
    try:
        # Right after a node's loss NATS may serve no MQTT for seconds (JetStream elects new stream
        # leaders; docs/scale.md): the probe says down (timeout) then, and degraded once it settles.
        results = []

        async def settled() -> bool:
            results.append((await ProbeRunner([MqttProbe(settings, bus=probe.bus)]).run_once())["mqtt"])
            return results[-1].status == "degraded"

        await eventually(settled, 40, interval=1.0, what="probe degraded on a 2-node cluster")
        broken = results[-1]
        assert {r.status for r in results} <= {"degraded", "down"}
        assert broken.error is not None
        assert f"cluster node unreachable (127.0.0.1:{cluster.ports[0]['mqtt']}" in broken.error
        assert "NATS cluster has 2 of 3 nodes" in broken.error
    finally:
        cluster.start(0)
