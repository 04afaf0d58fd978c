"""A private PostgreSQL the test can stop, an aggregator with history on and a recorder, all real."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from history.recorder import RecorderService
from opsdash.config import Config, load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.service import AggregatorService
from tests.support.servers import Mosquitto, PrivatePostgres, scaled


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test alone (so the test may stop and restart it)."""
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="opsdash-hist-pg-"))).start()
    yield server
    server.stop()


@dataclass
class Stack:
    config: Config
    aggregator: AggregatorService
    recorder: RecorderService
    tasks: list[asyncio.Task[None]]
    dsn: str


async def start_stack(mqtt_url: str, dsn: str, **env: str) -> Stack:
    config = load_config(env={"OPSDASH_MQTT_URL": mqtt_url, "OPSDASH_HISTORY_URL": dsn,
                              "OPSDASH_AGGREGATOR__ID": "test-agg", **env})
    agg = build_aggregator(config)
    rec = RecorderService(config)
    tasks = [asyncio.create_task(agg.run()), asyncio.create_task(rec.run())]
    await asyncio.wait_for(agg.connected.wait(), scaled(10))
    await asyncio.wait_for(rec.connected.wait(), scaled(10))
    return Stack(config, agg, rec, tasks, dsn)


@pytest.fixture
async def stack(mosquitto: Mosquitto, database_url: str) -> AsyncIterator[Stack]:
    s = await start_stack(mosquitto.url, database_url)
    yield s
    await cancel_and_wait(s.tasks)


@pytest.fixture
async def private_dsn(private_pg: PrivatePostgres) -> str:
    conn = await asyncpg.connect(private_pg.admin_dsn)
    try:
        await conn.execute("CREATE DATABASE opsdash")
    finally:
        await conn.close()
    return private_pg.dsn("opsdash")
