"""Fixtures of the fault tests: in-process aggregators (killable, restartable) on the test's mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.service import AggregatorService
from tests.support.servers import Mosquitto, scaled

StartAggregator = Callable[..., Awaitable[tuple[AggregatorService, "asyncio.Task[None]"]]]


@pytest.fixture
async def start_aggregator(mosquitto: Mosquitto) -> AsyncIterator[StartAggregator]:
    """Start an AggregatorService (tick 0.25 s) with a given id; stopped at the end of the test."""
    tasks: list[asyncio.Task[None]] = []

    async def start(agg_id: str = "fault-agg", **env: str) -> tuple[AggregatorService, asyncio.Task[None]]:
        config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_AGGREGATOR__TICK_S": "0.25",
                                  "OPSDASH_AGGREGATOR__ID": agg_id, **env})
        service = build_aggregator(config)
        task = asyncio.create_task(service.run())
        tasks.append(task)
        await asyncio.wait_for(service.connected.wait(), scaled(10))
        return service, task

    yield start
    await cancel_and_wait([t for t in tasks if not t.done()])
