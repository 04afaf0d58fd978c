"""Fixtures of the gateway tests: an in-process gateway on port 0 beside a private mosquitto."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiomqtt
import pytest

from gateway.config import GatewayConfig
from gateway.server import Gateway
from telemetry_bus.config import MqttConfig
from tests.conftest import eventually
from tests.gateway.sim import Publisher, ViewSim
from tests.support.servers import Mosquitto

GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(mosquitto: Mosquitto, tmp_path: Any) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def factory(*, wall_clock: Callable[[], float] | None = None, **overrides: Any) -> Gateway:
        cfg = GatewayConfig(**{"listen": "127.0.0.1:0", "id": f"gw-{len(started)}",
                               "static_dir": str(tmp_path / "dist"), "backoff_max_s": 0.5,
                               **overrides})
        gw = Gateway(cfg, MqttConfig(url=mosquitto.url),
                     **({"wall_clock": wall_clock} if wall_clock is not None else {}))
        await gw.start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.stop()


@pytest.fixture
async def publisher(mosquitto: Mosquitto) -> AsyncIterator[Publisher]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        yield Publisher(client)


async def wait_view(gw: Gateway, seq: int) -> None:
    await eventually(lambda: gw.store.seq == seq, what=f"gateway at seq {seq}")


async def published(gw: Gateway, pub: Publisher, sim: ViewSim) -> None:
    """Publish the sim's snapshot and wait until the gateway holds it."""
    await pub.snapshot(sim)
    await wait_view(gw, sim.seq)
