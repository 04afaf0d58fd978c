"""The history schema against a real PostgreSQL: migrations from empty and from the previous version,
daily partitions, retention by whole partitions, the events table's duplicate rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from history.schema import (
    PARTITIONED,
    SCHEMA_VERSION,
    drop_expired,
    ensure_partitions,
    migrate,
    partitions,
    schema_version,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def test_migrate_from_empty_then_idempotent(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await schema_version(conn) == 0
        applied = await migrate(conn, now=NOW)
        assert applied == list(range(1, SCHEMA_VERSION + 1))
        assert await schema_version(conn) == SCHEMA_VERSION
        assert await migrate(conn, now=NOW) == []  # a second start changes nothing
        for table in PARTITIONED:
            days = [d for _, d in await partitions(conn, table)]
            assert days == [NOW.date() + timedelta(days=i) for i in range(3)], table
    finally:
        await conn.close()


@pytest.mark.parametrize("start", range(1, SCHEMA_VERSION))
async def test_upgrade_from_an_older_version_keeps_data(database_url: str, start: int) -> None:
    """A database left by an older version (with data in it) is upgraded at start, data kept."""
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn, target=start, now=NOW) == list(range(1, start + 1))
        await conn.execute("INSERT INTO series (id, name, kind) VALUES (1, 'ingest_rate', 'rate')")
        await conn.execute("INSERT INTO frames (ts, vals) VALUES ($1, $2)", NOW, [125.5])
        await conn.execute("INSERT INTO events (ts, service, instance, boot, seq, type, severity, message) "
                           "VALUES ($1, 'ingest', 'i-1', 'b', 1, 'parse_error', 'error', 'bad payload')", NOW)
        if start < 2:
            assert await conn.fetchval("SELECT to_regclass('rollup_15m')") is None
        assert await migrate(conn, now=NOW) == list(range(start + 1, SCHEMA_VERSION + 1))
        assert await schema_version(conn) == SCHEMA_VERSION
        assert await conn.fetchval("SELECT vals[1] FROM frames WHERE ts = $1", NOW) == 125.5
        assert await conn.fetchval("SELECT count(*) FROM events WHERE search @@ plainto_tsquery('simple', "
                                   "'payload')") == 1
        assert next(d for _, d in await partitions(conn, "rollup_15m")) == NOW.date()
        await conn.execute("INSERT INTO rollup_15m VALUES (1, $1, 900, 9.0, 0.0, 1.0)", NOW)
    finally:
        await conn.close()


async def test_newer_database_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, now=NOW)
        await conn.execute("INSERT INTO schema_version VALUES ($1, 'from the future')", SCHEMA_VERSION + 1)
        try:
            await migrate(conn, now=NOW)
        except RuntimeError as exc:
            assert "newer than this opsdash" in str(exc)
        else:
            raise AssertionError("a newer schema must be refused")
    finally:
        await conn.close()


async def test_retention_drops_whole_partitions(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, now=NOW)
        old_days = [NOW.date() - timedelta(days=d) for d in range(1, 10)]
        await ensure_partitions(conn, NOW, days=old_days)
        for d in (1, 3, 8, 9):
            ts = NOW - timedelta(days=d)
            await conn.execute("INSERT INTO rollup_1m VALUES (1, $1, 60, 60.0, 1.0, 1.0)", ts)
            await conn.execute("INSERT INTO frames VALUES ($1, $2)", ts, [1.0])
        dropped = await drop_expired(conn, NOW, retention_days=7, raw_hours=48)
        left = sorted(d for _, d in await partitions(conn, "rollup_1m"))
        # whole days older than 7 days are gone (day -8 ends 7 days + 12 h ago; day -7 ends 6.5 days ago)
        assert left[0] == NOW.date() - timedelta(days=7)
        assert f"rollup_1m_p{(NOW - timedelta(days=8)):%Y%m%d}" in dropped
        assert await conn.fetchval("SELECT count(*) FROM rollup_1m") == 2  # days -1 and -3
        # the 1 s frames are kept 48 h: day -1 stays (ends 12 h ago), day -3 goes
        assert await conn.fetchval("SELECT count(*) FROM frames") == 1
        frames_left = [d for _, d in await partitions(conn, "frames")]
        assert frames_left[0] == NOW.date() - timedelta(days=2)
    finally:
        await conn.close()


async def test_events_duplicate_stored_once_and_searchable(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, now=NOW)
        sql = ("INSERT INTO events (ts, service, instance, boot, seq, type, severity, message, attrs) "
               "VALUES ($1, 'delivery', 'delivery-2', 'b1', $2, 'webhook_timeout', 'error', $3, '{}') "
               "ON CONFLICT DO NOTHING")
        await conn.execute(sql, NOW, 7, "POST https://example.com/hook timed out")
        await conn.execute(sql, NOW, 7, "POST https://example.com/hook timed out")
        await conn.execute(sql, NOW, 8, "other thing")
        assert await conn.fetchval("SELECT count(*) FROM events") == 2
        hits = await conn.fetch("SELECT seq FROM events WHERE search @@ plainto_tsquery('simple', $1)",
                                "timed out")
        assert [r["seq"] for r in hits] == [7]
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM events ORDER BY id")]
        assert ids == sorted(ids) and len(set(ids)) == 2
    finally:
        await conn.close()
