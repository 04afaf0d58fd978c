"""The history database: versioned migrations (applied at start) and daily partitions.

    await migrate(conn)                      # brings any older database to SCHEMA_VERSION
    await ensure_partitions(conn, now)       # today's and the next days' partitions exist
    await drop_expired(conn, now, cfg)       # retention: whole partitions, never row deletes

Layout (design.md section 8; every table is range-partitioned by day on ``ts``, partitions named
``<table>_pYYYYMMDD``):

- ``series``: the catalogue. ``id`` is dense from 1 and is the series' **position** in a frame.
- ``frames``: one row per second, ``vals[id]`` the value of series ``id`` at that second (NULL where
  nothing was recorded; ``real[]`` from schema version 5: 7 significant digits, read back rounded to
  them). One row for all series instead of one row per point: ~4 bytes per point plus ~60 per
  second, against ~70 per point for (series, ts, value) rows with their index
  (bench/bench_history.py measures both). Kept ``history.raw_hours`` (48 h).
- ``rollup_1m`` (and ``rollup_15m`` from schema version 2): one row per series and step, ``n`` points
  present, ``sum``/``min``/``max`` (the mean is ``sum / n``: over the data present). Whole retention.
- ``hist_1s``, ``hist_1m`` (``hist_15m`` from version 2): merged histograms (the bus's base-2
  exponential form: scale, zero_count, offset, counts) per series and step; quantiles over any range
  are computed from these merged, never from stored quantiles.
- ``states``: one row per component state change (status, reason).
- ``probe_results``: every probe result as published.
- ``alerts``: every alert message that arrived on ``<root>/v1/alerts/#``.
- ``view_stream`` (version 4), ``view_blocks`` (version 6): the view stream of time travel
  (history/viewstream.py).
- ``events``: every event (section 11) and the aggregator's own feed entries. ``id`` bigserial (stable
  order), a ``search`` tsvector (generated, ``simple`` configuration: names and ids are kept as
  written) with a GIN index. A duplicate (same service, instance, boot, seq) is stored once: the
  unique key is ``(service, instance, boot, seq, ts)`` because PostgreSQL requires the partition key in
  every unique constraint of a partitioned table; a resent event keeps its sender ``ts``, so the key
  still catches every duplicate of one message.

A migration is (version, description, SQL). ``migrate`` takes an advisory lock, so parts starting
together do not race, and records each version in ``schema_version``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Final

from history.events import SEARCH_MIGRATION_SQL
from history.viewstream import BLOCKS_SQL as VIEW_BLOCKS_SQL
from history.viewstream import MIGRATION_SQL as VIEW_STREAM_SQL

if TYPE_CHECKING:
    import asyncpg

__all__ = ["MIGRATIONS", "PARTITIONED", "RAW_TABLES", "SCHEMA_VERSION", "Migration", "drop_expired",
           "ensure_partitions", "migrate", "partition_name", "partitions", "schema_version"]

log = logging.getLogger("opsdash.history.schema")

#: pg_advisory_lock key of migrations ("opsd" in ASCII).
_LOCK: Final = 0x6F707364


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


_V1: Final = """
CREATE TABLE schema_version (
    version int PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE series (
    id int PRIMARY KEY,
    name text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN ('rate', 'gauge', 'capacity', 'hist')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE frames (
    ts timestamptz NOT NULL,
    vals float8[] NOT NULL,
    PRIMARY KEY (ts)
) PARTITION BY RANGE (ts);
CREATE TABLE rollup_1m (
    series_id int NOT NULL,
    ts timestamptz NOT NULL,
    n int NOT NULL,
    sum float8 NOT NULL,
    min float8 NOT NULL,
    max float8 NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE hist_1s (
    series_id int NOT NULL,
    ts timestamptz NOT NULL,
    scale smallint NOT NULL,
    zero_count bigint NOT NULL,
    "offset" int NOT NULL,
    counts bigint[] NOT NULL,
    count bigint NOT NULL,
    sum float8 NOT NULL,
    min float8,
    max float8,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE hist_1m (LIKE hist_1s INCLUDING ALL) PARTITION BY RANGE (ts);
CREATE TABLE states (
    ts timestamptz NOT NULL,
    component text NOT NULL,
    status text NOT NULL,
    reason text,
    PRIMARY KEY (component, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE probe_results (
    ts timestamptz NOT NULL,
    target text NOT NULL,
    status text NOT NULL,
    latency_ms float8,
    error text,
    metrics jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (target, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE alerts (
    ts timestamptz NOT NULL,
    fingerprint text NOT NULL,
    status text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (fingerprint, ts, status)
) PARTITION BY RANGE (ts);
CREATE TABLE events (
    id bigserial NOT NULL,
    ts timestamptz NOT NULL,
    service text NOT NULL,
    instance text NOT NULL,
    boot text NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    severity text NOT NULL,
    message text NOT NULL DEFAULT '',
    attrs jsonb NOT NULL DEFAULT '{}',
    search tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', type || ' ' || service || ' ' || instance || ' ' || message)) STORED,
    UNIQUE (service, instance, boot, seq, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX events_ts ON events (ts DESC, id DESC);
CREATE INDEX events_id ON events (id);
CREATE INDEX events_search ON events USING gin (search);
CREATE INDEX events_service_ts ON events (service, ts DESC);
"""

_V2: Final = """
CREATE TABLE rollup_15m (LIKE rollup_1m INCLUDING ALL) PARTITION BY RANGE (ts);
CREATE TABLE hist_15m (LIKE hist_1s INCLUDING ALL) PARTITION BY RANGE (ts);
"""

_V5: Final = """
ALTER TABLE frames ALTER COLUMN vals TYPE real[];
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "series catalogue, 1 s frames, 1 min rollups, histograms, states, probes, alerts, events",
              _V1),
    Migration(2, "15 min rollups of values and histograms (long ranges answer from ~100x fewer rows)", _V2),
    # owned by history/events.py (h12): search splits at punctuation and includes attribute values
    Migration(3, "events: search text split at punctuation, with attribute values; severity index",
              SEARCH_MIGRATION_SQL),
    # owned by history/viewstream.py (h19): the view's snapshots and patches, for view?at= and replay
    Migration(4, "view_stream: every published view snapshot and patch (default stream, zstd)",
              VIEW_STREAM_SQL),
    Migration(5, "1 s frames as float4: ~4 instead of ~8 bytes per point (7 significant digits, read back "
                 "rounded to them)", _V5),
    # owned by history/viewstream.py (h19): closed minutes of the view stream packed in one row each
    Migration(6, "view_blocks: each closed minute of the view stream in one row (patches by column, zstd)",
              VIEW_BLOCKS_SQL),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

#: Partitioned tables by the schema version that created them.
PARTITIONED: Final[dict[str, int]] = {
    "frames": 1, "rollup_1m": 1, "hist_1s": 1, "hist_1m": 1, "states": 1, "probe_results": 1,
    "alerts": 1, "events": 1, "rollup_15m": 2, "hist_15m": 2, "view_stream": 4,
    "view_blocks": 6,
}
#: The 1 s tables, kept ``raw_hours`` instead of ``retention_days``.
RAW_TABLES: Final = frozenset({"frames", "hist_1s"})


async def schema_version(conn: asyncpg.Connection) -> int:
    """The version of the schema in this database (0: empty)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection, target: int = SCHEMA_VERSION,
                  now: datetime | None = None) -> list[int]:
    """Apply the missing migrations up to ``target``, each in its own transaction; return the versions
    applied. A database newer than this code is refused (it would write what it does not understand)."""
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        current = await schema_version(conn)
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"history database has schema version {current}, newer than this opsdash "
                               f"({SCHEMA_VERSION}): upgrade opsdash")
        for m in MIGRATIONS:
            if current < m.version <= target:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute("INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                                       m.version, m.description)
                log.info("history: schema migrated to version %d (%s)", m.version, m.description)
                applied.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    await ensure_partitions(conn, now or datetime.now(UTC))
    return applied


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


async def partitions(conn: asyncpg.Connection, table: str) -> list[tuple[str, date]]:
    """(name, day) of the daily partitions of ``table``, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1", table)
    out: list[tuple[str, date]] = []
    for r in rows:
        name = str(r["relname"])
        try:
            out.append((name, datetime.strptime(name.rsplit("_p", 1)[1], "%Y%m%d").date()))
        except (IndexError, ValueError):
            continue  # not one of ours
    return sorted(out, key=lambda p: p[1])


async def ensure_partitions(conn: asyncpg.Connection, now: datetime, ahead_days: int = 2,
                            days: list[date] | None = None) -> int:
    """Create the daily partitions of every table for ``days`` (default: today and ``ahead_days`` more).
    Returns how many were created."""
    want = days if days is not None else [now.date() + timedelta(days=d) for d in range(ahead_days + 1)]
    created = 0
    # Under the migrations' advisory lock (re-entrant in one session): CREATE TABLE IF NOT EXISTS
    # is not safe against a concurrent create of the same name (a gateway and a recorder starting
    # together got "relation ... already exists").
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        version = await schema_version(conn)
        for table, since in PARTITIONED.items():
            if since > version:
                continue
            have = {d for _, d in await partitions(conn, table)}
            for day in want:
                if day in have:
                    continue
                lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
                hi = lo + timedelta(days=1)
                await conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{partition_name(table, day)}" PARTITION OF {table} '
                    f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
                created += 1
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    return created


async def drop_expired(conn: asyncpg.Connection, now: datetime, retention_days: int,
                       raw_hours: int) -> list[str]:
    """Drop the partitions whose whole day is older than the retention (the 1 s tables: older than
    ``raw_hours``). Returns the names dropped. Never deletes rows."""
    dropped: list[str] = []
    version = await schema_version(conn)
    for table, since in PARTITIONED.items():
        if since > version:
            continue
        keep = timedelta(hours=raw_hours) if table in RAW_TABLES else timedelta(days=retention_days)
        for name, day in await partitions(conn, table):
            end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
            if end <= now - keep:
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
                dropped.append(name)
    if dropped:
        log.info("history: retention dropped %d partitions (%s .. %s)", len(dropped), dropped[0], dropped[-1])
    return dropped
