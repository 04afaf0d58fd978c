"""Fixtures shared by the whole suite: real servers, never mocks of them."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.servers import Mosquitto, PrivatePostgres, local_postgres_up, scaled


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private mosquitto for this test, with deploy/mosquitto.conf settings; killable, restartable."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL superuser: the machine's server, or a private one started for the session."""
    if os.environ.get("OPSDASH_TEST_PG_DSN"):
        yield os.environ["OPSDASH_TEST_PG_DSN"]
        return
    if local_postgres_up():
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    workdir = Path(tempfile.mkdtemp(prefix="opsdash-pg-"))
    server = PrivatePostgres(workdir).start()
    try:
        yield server.admin_dsn
    finally:
        server.stop()


@pytest.fixture
async def database_url(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test (dropped afterwards)."""
    name = f"opsdash_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = pg_admin_dsn.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def eventually(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (sync or async) until truthy; fail with ``what`` after a scaled timeout."""
    deadline = asyncio.get_running_loop().time() + scaled(timeout)
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
