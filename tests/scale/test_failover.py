"""Failover between brokers (design.md section 12): each failure moves a part to the next broker of
OPSDASH_MQTT_URL; a real reporter and aggregator on two private mosquittos follow when one dies."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiomqtt
import pytest

from telemetry_bus.config import MqttConfig
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever
from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.support.servers import Mosquitto, scaled


def test_brokers_rotate_in_order_and_count_failovers() -> None:
    b = Brokers(MqttConfig(url="mqtt://a:1,b:2,c:3").endpoints())
    seen = []
    for _ in range(4):
        seen.append(str(b))
        b.advance()
    assert seen == ["a:1", "b:2", "c:3", "a:1"] and b.failovers == 4
    single = Brokers(MqttConfig(url="mqtt://a:1").endpoints())
    single.advance()
    assert str(single) == "a:1" and single.failovers == 0


async def test_each_failure_moves_to_the_next_broker_before_the_delay(caplog: pytest.LogCaptureFixture) -> None:
    brokers = Brokers(MqttConfig(url="mqtt://a:1,b:2").endpoints())
    tried: list[str] = []
    delays: list[float] = []

    async def session() -> None:
        tried.append(str(brokers))
        if len(tried) < 4:
            raise aiomqtt.MqttError("gone")

    async def sleep(d: float) -> None:
        delays.append(d)

    with caplog.at_level(logging.INFO, "t"):
        await reconnect_forever(session, Backoff(0.2, 1.0, rand=lambda: 1.0), what="part",
                                logger=logging.getLogger("t"), sleep=sleep, brokers=brokers)
    assert tried == ["a:1", "b:2", "a:1", "b:2"]
    assert delays == [0.2, 0.4, 0.8]
    assert "part: broker a:1 failed (gone); trying b:2 in 0.2 s" in caplog.text


async def test_a_reporter_moves_to_the_second_broker_when_the_first_dies(tmp_path: Path) -> None:
    first, second = Mosquitto(tmp_path / "m1"), Mosquitto(tmp_path / "m2")
    first.start()
    second.start()
    try:
        rep = Reporter("ingest", "failover-1", mqtt_url=f"{first.url},{second.url}", interval_s=0.2,
                       backoff_initial_s=0.05, backoff_max_s=0.2)
        got: list[bytes] = []
        ep = MqttConfig(url=second.url).endpoint()
        async with aiomqtt.Client(ep.host, ep.port) as sub:
            await sub.subscribe("$ops/v1/svc/ingest/failover-1/status", qos=1)
            await rep.start()
            await asyncio.wait_for(rep.connected.wait(), scaled(10))
            assert rep.endpoint.port == first.port
            first.kill()
            async with asyncio.timeout(scaled(10)):
                async for m in sub.messages:  # the online status, published on the second broker
                    assert isinstance(m.payload, bytes)
                    got.append(m.payload)
                    break
            await eventually(rep.connected.is_set, 10, what="reporter connected again")
            assert rep.endpoint.port == second.port and rep.brokers.failovers >= 1
            assert rep.connects == 2
            await rep.stop()
        assert b'"state":"online"' in got[0]
    finally:
        first.stop()
        second.stop()
