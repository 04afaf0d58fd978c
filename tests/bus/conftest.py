"""An in-process aggregator on the test's private broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.service import AggregatorService
from tests.support.servers import Mosquitto, scaled


@pytest.fixture
async def aggregator(mosquitto: Mosquitto) -> AsyncIterator[AggregatorService]:
    config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_AGGREGATOR__TICK_S": "0.25",
                              "OPSDASH_AGGREGATOR__ID": "test-agg"})
    service = build_aggregator(config)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.connected.wait(), scaled(10))
    yield service
    await cancel_and_wait([task])


def instance_view(service: AggregatorService, svc: str, inst: str) -> dict[str, Any] | None:
    if service.last is None:
        return None
    view: dict[str, Any] | None = service.last.view["services"].get(svc, {}).get("instances", {}).get(inst)
    return view
