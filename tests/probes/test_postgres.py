"""PostgreSQL probe against real servers: figures equal what the server says at that moment."""

from __future__ import annotations

import uuid

import asyncpg

from probes.config import PostgresProbeConfig
from probes.core import Reading
from probes.postgres import PgRaw, PostgresProbe, postgres_reading
from probes.runner import ProbeRunner
from tests.probes.conftest import pg_exec
from tests.support.servers import free_port

CLIENTS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"


def _probe(url: str, **kw: object) -> PostgresProbe:
    return PostgresProbe(PostgresProbeConfig(**kw), url=url)  # type: ignore[arg-type]


async def test_sizes_and_tables_equal_the_servers_figures(database_url: str) -> None:
    await pg_exec(
        database_url,
        "CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g",
        "CREATE INDEX ON big (id)",
        "CREATE TABLE small (id int)",
        "INSERT INTO small VALUES (1)",
        "CREATE SCHEMA other",
        "CREATE TABLE other.mid AS SELECT g FROM generate_series(1, 3000) g",
        "ANALYZE",
    )
    reading = await _probe(database_url).check()
    conn = await asyncpg.connect(database_url)
    try:
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = await conn.fetch(
            "SELECT schemaname || '.' || relname AS n, pg_total_relation_size(relid) AS b "
            "FROM pg_stat_user_tables ORDER BY b DESC"
        )
        settings = await conn.fetchrow(
            "SELECT current_setting('max_connections')::int AS m, "
            "current_setting('superuser_reserved_connections')::int AS r"
        )
    finally:
        await conn.close()
    assert reading.metrics["db_size_bytes"] == size
    assert reading.details["largest_tables"] == [{"name": r["n"], "bytes": r["b"]} for r in tables]
    assert [t["name"] for t in reading.details["largest_tables"]] == [
        "public.big",
        "other.mid",
        "public.small",
    ]
    assert reading.metrics["connections_max"] == settings["m"] - settings["r"]
    assert reading.latency_ms is not None and reading.latency_ms > 0


async def test_connections_of_this_database_equal_pg_stat_activity(database_url: str) -> None:
    held = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        truth = f"{CLIENTS} AND datname = current_database()"
        before = await held[0].fetchval(truth)
        reading = await _probe(database_url).check()
        after = await held[0].fetchval(truth)
    finally:
        for c in held:
            await c.close()
    assert before == after == 3
    assert reading.metrics["connections_db"] == before + 1  # + the probe's own connection


async def test_server_wide_connections_on_a_private_cluster(pgss_admin_dsn: str) -> None:
    """Nobody else connects to the private cluster: the server-wide count is exact."""
    held = [await asyncpg.connect(pgss_admin_dsn) for _ in range(4)]
    try:
        before = await held[0].fetchval(CLIENTS)
        reading = await _probe(pgss_admin_dsn).check()
        after = await held[0].fetchval(CLIENTS)
        max_conn = int(await held[0].fetchval("SHOW max_connections"))
        reserved = int(await held[0].fetchval("SHOW superuser_reserved_connections"))
    finally:
        for c in held:
            await c.close()
    assert before == after == 4
    assert reading.metrics["connections_used"] == before + 1
    assert reading.metrics["connections_max"] == max_conn - reserved


async def test_slow_statements_from_pg_stat_statements(pgss_admin_dsn: str) -> None:
    name = f"pgss_{uuid.uuid4().hex[:8]}"
    await pg_exec(pgss_admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = pgss_admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        await pg_exec(dsn, "CREATE EXTENSION pg_stat_statements", "SELECT pg_stat_statements_reset()")
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(3):
                await conn.execute("SELECT pg_sleep(0.05)")
            reading = await _probe(dsn).check()
            truth = await conn.fetchrow(
                "SELECT calls, mean_exec_time FROM pg_stat_statements WHERE query LIKE 'SELECT pg_sleep%' "
                "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        finally:
            await conn.close()
        slow = reading.details["slow_statements"]
        top = slow[0]
        assert top["query"].startswith("SELECT pg_sleep") and top["calls"] == truth["calls"] == 3
        assert top["mean_ms"] == round(truth["mean_exec_time"], 3) and top["mean_ms"] >= 50
        assert [s["mean_ms"] for s in slow] == sorted((s["mean_ms"] for s in slow), reverse=True)
    finally:
        await pg_exec(pgss_admin_dsn, f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_extension_installed_but_not_preloaded_is_a_note_not_a_failure(database_url: str) -> None:
    await pg_exec(database_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    reading = await _probe(database_url).check()
    assert "slow_statements" not in reading.details
    assert "shared_preload_libraries" in reading.details["slow_statements_note"]


async def test_works_with_a_pg_monitor_role(database_url: str, pg_admin_dsn: str) -> None:
    role = f"mon_{uuid.uuid4().hex[:8]}"
    await pg_exec(database_url, "CREATE TABLE secret AS SELECT g FROM generate_series(1, 5000) g")
    await pg_exec(pg_admin_dsn, f'CREATE ROLE "{role}" LOGIN', f'GRANT pg_monitor TO "{role}"')
    try:
        url = database_url.replace("postgres@", f"{role}@", 1)
        reading = await _probe(url).check()
        conn = await asyncpg.connect(database_url)
        try:
            size = await conn.fetchval("SELECT pg_total_relation_size('public.secret')")
        finally:
            await conn.close()
        assert reading.details["largest_tables"] == [{"name": "public.secret", "bytes": size}]
        assert isinstance(reading.metrics["db_size_bytes"], int) and reading.metrics["connections_used"]
    finally:
        await pg_exec(pg_admin_dsn, f'DROP ROLE "{role}"')


async def test_too_many_connections_is_down_with_that_reason(database_url: str, pg_admin_dsn: str) -> None:
    """A full server answers 53300 (pg_isready would still say 'accepting connections')."""
    role = f"full_{uuid.uuid4().hex[:8]}"
    await pg_exec(pg_admin_dsn, f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        runner = ProbeRunner([_probe(database_url.replace("postgres@", f"{role}@", 1))])
        first = (await runner.run_once())["postgres"]
        second = (await runner.run_once())["postgres"]
    finally:
        await pg_exec(pg_admin_dsn, f'DROP ROLE "{role}"')
    assert first.status == "degraded"
    assert second.status == "down" and second.error is not None
    assert second.error.startswith("too many connections") and "pg_isready" in second.error


async def test_refused_missing_database_and_unknown_role_give_their_reason(database_url: str) -> None:
    port = free_port()
    cases = {
        f"postgresql://postgres@127.0.0.1:{port}/x": (
            f"connection refused: nothing listens on 127.0.0.1:{port}"
        ),
        database_url + "_nope": "database does not exist",
        database_url.replace("postgres@", "nobody_here@", 1): "authentication failed",
    }
    for url, reason in cases.items():
        runner = ProbeRunner([_probe(url)])
        await runner.run_once()
        result = (await runner.run_once())["postgres"]
        assert result.status == "down" and result.error is not None and result.error.startswith(reason), url


def test_near_the_connection_limit_is_degraded() -> None:
    stats = {
        "used": 77,
        "used_db": 10,
        "max_conn": 100,
        "su_reserved": 3,
        "reserved": 0,
        "db": "iot",
        "db_size": 1,
        "version": "15",
        "in_recovery": False,
    }
    cfg = PostgresProbeConfig()
    ok = postgres_reading(PgRaw(1.0, stats, [], None), cfg)
    assert ok.warnings == () and ok.metrics["connections_max"] == 97
    full = postgres_reading(PgRaw(1.0, {**stats, "used": 78}, [], None), cfg)
    assert full.warnings == ("connections 78 of 97 (> 80%)",)
    assert isinstance(full, Reading)
