"""The MQTT probe on NATS: figures from the monitoring endpoint (no $SYS there), healthy, not degraded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from probes.config import MqttProbeConfig
from probes.mqtt import MqttProbe, NatsSample, nats_metrics
from probes.runner import ProbeRunner
from telemetry_bus.config import MqttConfig
from tests.scale.nats import NatsCluster


def _sample(at: float, **kw: int) -> NatsSample:
    base = {"connections": 3, "in_msgs": 100, "out_msgs": 200, "slow_consumers": 0, "routes": 2}
    base.update(kw)
    return NatsSample.from_varz({"server_name": "n0", "version": "2.9.10", **base}, at)


def test_rates_are_the_difference_of_two_samples() -> None:
    m, warnings = nats_metrics(_sample(12.0, in_msgs=160, out_msgs=230), _sample(10.0))
    assert m == {"connected_clients": 3, "messages_received_per_s": 30.0, "messages_sent_per_s": 15.0,
                 "slow_consumers": 0, "cluster_size": 3}
    assert warnings == []


def test_first_sample_and_a_server_restart_give_no_rate() -> None:
    m, _ = nats_metrics(_sample(10.0), None)
    assert m["messages_received_per_s"] is None and m["connected_clients"] == 3
    m, _ = nats_metrics(_sample(12.0, in_msgs=5, out_msgs=7), _sample(10.0))  # totals went back: restart
    assert m["messages_received_per_s"] is None and m["messages_sent_per_s"] is None


def test_new_slow_consumers_warn() -> None:
    _, warnings = nats_metrics(_sample(12.0, slow_consumers=3), _sample(10.0, slow_consumers=1))
    assert warnings == ["NATS n0: 2 new slow consumer(s) since the last check"]


def test_a_varz_without_counts_is_a_clear_error() -> None:
    from probes.core import ProbeError
    with pytest.raises(ProbeError, match="'connections' is not a count"):
        NatsSample.from_varz({"connections": "many"}, 0.0)


def test_config_rejects_a_bad_monitor_url() -> None:
    with pytest.raises(ValueError, match="nats_monitor_url must be http"):
        MqttProbeConfig(nats_monitor_url="nats://x:4222")


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", n=1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_probe_on_a_real_nats_server_is_healthy_with_its_figures(nats: NatsCluster) -> None:
    bus = MqttConfig(url=nats.mqtt_url(0), topic_root="ops")
    probe = MqttProbe(MqttProbeConfig(nats_monitor_url=nats.monitor_url(0)), bus=bus)
    runner = ProbeRunner([probe])
    first = (await runner.run_once())["mqtt"]
    assert first.status == "healthy", first.error
    assert first.metrics["cluster_size"] == 1
    assert first.metrics["messages_received_per_s"] is None  # one sample: no rate yet
    ep = bus.endpoint()
    async with aiomqtt.Client(ep.host, ep.port, identifier="extra-client") as extra:
        for _ in range(50):
            await extra.publish("ops/v1/test", b"x", qos=0)
        second = (await runner.run_once())["mqtt"]
    assert second.status == "healthy", second.error
    m = second.metrics
    # the extra client (the probe reads /varz after closing its own connection, which may linger)
    assert isinstance(m["connected_clients"], int) and m["connected_clients"] in (1, 2)
    # 50 publishes + the canary arrived between the two samples; NATS counts its own traffic too
    assert m["messages_received_per_s"] is not None and m["messages_received_per_s"] > 0
    assert second.details["broker"] == "nats" and second.details["version"] == "2.9.10"
    assert m["canary_rtt_ms"] is not None and m["canary_rtt_ms"] > 0


async def test_a_cluster_smaller_than_configured_is_degraded_with_the_reason(nats: NatsCluster) -> None:
    bus = MqttConfig(url=nats.mqtt_url(0), topic_root="ops")
    probe = MqttProbe(MqttProbeConfig(nats_monitor_url=nats.monitor_url(0), nats_cluster_size=3), bus=bus)
    result = (await ProbeRunner([probe]).run_once())["mqtt"]
    assert result.status == "degraded"
    assert result.error == "NATS cluster has 1 of 3 nodes (seen from n0)"


async def test_unreachable_monitor_is_a_failure_naming_it(nats: NatsCluster) -> None:
    bus = MqttConfig(url=nats.mqtt_url(0), topic_root="ops")
    probe = MqttProbe(MqttProbeConfig(nats_monitor_url="http://127.0.0.1:9"), bus=bus)
    result = (await ProbeRunner([probe]).run_once())["mqtt"]
    assert result.status in ("degraded", "down")
    assert result.error is not None and "NATS monitoring endpoint unreachable: http://127.0.0.1:9" in result.error


async def test_dotted_names_are_mapped_on_nats_instead_of_a_reconnect_loop(nats: NatsCluster) -> None:
    from telemetry_bus.reporter import Reporter
    ep = MqttConfig(url=nats.mqtt_url(0)).endpoint()
    async with aiomqtt.Client(ep.host, ep.port, identifier="dot-watcher") as sub:
        await sub.subscribe("ops/v1/svc/#", qos=1)
        rep = Reporter("ingest", "web-1.eu.example", mqtt_url=nats.mqtt_url(0), topic_root="ops", nats=True,
                       interval_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.2)
        assert rep.instance == "web-1_eu_example"
        await rep.start()
        rep.inc("messages_received", 7)
        topics: set[str] = set()
        async with asyncio.timeout(10):
            async for m in sub.messages:
                topics.add(m.topic.value)
                if "ops/v1/svc/ingest/web-1_eu_example/metrics" in topics:
                    break
        await rep.stop()
    assert "ops/v1/svc/ingest/web-1_eu_example/status" in topics
    assert rep.connects == 1  # one connection: never disconnected for a '.' in a topic


def test_nats_refuses_a_dotted_topic_root() -> None:
    with pytest.raises(ValueError, match=r"topic_root must have no '\.' on NATS"):
        MqttConfig(url="mqtt://n:1883", topic_root="ops.v", nats=True)


async def test_without_the_flag_a_dotted_name_gets_a_clear_hint(nats: NatsCluster,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from telemetry_bus.reporter import Reporter
    rep = Reporter("ingest", "web-1.eu", mqtt_url=nats.mqtt_url(0), topic_root="ops", nats=False,
                   interval_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.2)
    await rep.start()
    try:
        # NATS closes the connection without a CONNACK (its Last Will topic has the '.'): aiomqtt gives
        # up after its 10 s connect timeout, then the hint comes
        async with asyncio.timeout(20):
            while "set OPSDASH_MQTT__NATS=true" not in caplog.text:
                await asyncio.sleep(0.05)
    finally:
        await rep.stop()
    assert caplog.text.count("OPSDASH_MQTT__NATS") == 1  # said once, not on every retry
    assert rep.connects == 0
