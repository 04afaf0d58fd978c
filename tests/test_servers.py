"""The shared fixtures start real servers."""

import asyncpg

from tests.support.servers import Mosquitto, wait_port


def test_private_mosquitto_restarts(mosquitto: Mosquitto) -> None:
    wait_port(mosquitto.host, mosquitto.port)
    mosquitto.kill()
    mosquitto.start()
    wait_port(mosquitto.host, mosquitto.port)


async def test_database_is_fresh(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
    finally:
        await conn.close()
