"""PostgreSQL probe (asyncpg): connect + ``SELECT 1`` latency, connections, size, largest tables.

Works with a ``pg_monitor`` role. Connections are client backends of the whole server against
``max_connections - superuser_reserved_connections - reserved_connections`` (what normal roles can
use). A full server ("too many connections", which ``pg_isready`` reports as fine), a refused or
unreachable one, a failed login and a missing database are failures with that reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg

from probes.config import PostgresProbeConfig
from probes.core import ProbeError, Reading, Unavailable, num

__all__ = ["PgRaw", "PostgresProbe", "connect", "pg_error", "postgres_reading"]

_STATS_SQL: Final = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND datname = current_database()) AS used_db,
       current_setting('max_connections')::int AS max_conn,
       current_setting('superuser_reserved_connections')::int AS su_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
       current_database() AS db,
       pg_database_size(current_database()) AS db_size,
       current_setting('server_version') AS version,
       pg_is_in_recovery() AS in_recovery
"""

_TABLES_SQL: Final = """
SELECT schemaname || '.' || relname AS name, pg_total_relation_size(relid) AS bytes
FROM pg_stat_user_tables ORDER BY bytes DESC, name LIMIT $1
"""

_PGSS_SCHEMA_SQL: Final = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""

_PGSS_SQL: Final = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 300) AS query, {mean} AS mean_ms, calls
FROM {schema}.pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls > 0
ORDER BY {mean} DESC LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class PgRaw:
    """The raw answers of one check."""

    latency_ms: float
    stats: Mapping[str, Any]
    tables: Sequence[tuple[str, int]]
    #: None: pg_stat_statements not installed (or not loaded); else its rows.
    slow: Sequence[tuple[str, float, int]] | None
    slow_note: str | None = None


def postgres_reading(raw: PgRaw, cfg: PostgresProbeConfig) -> Reading:
    """Pure: raw answers -> metrics, details and near-limit warnings."""
    s = raw.stats
    usable = int(s["max_conn"]) - int(s["su_reserved"]) - int(s["reserved"])
    used = int(s["used"])
    warnings: list[str] = []
    if usable > 0 and used > cfg.connections_warn_ratio * usable:
        warnings.append(f"connections {used} of {usable} (> {cfg.connections_warn_ratio:.0%})")
    if s.get("in_recovery"):
        warnings.append("in recovery (read-only standby)")
    details: dict[str, Any] = {
        "database": s["db"],
        "version": s["version"],
        "in_recovery": bool(s.get("in_recovery")),
        "largest_tables": [{"name": name, "bytes": int(size)} for name, size in raw.tables],
    }
    if raw.slow is not None:
        details["slow_statements"] = [{"query": q, "mean_ms": round(float(m), 3), "calls": int(c)}
                                      for q, m, c in raw.slow]
    elif raw.slow_note:
        details["slow_statements_note"] = raw.slow_note
    return Reading(
        latency_ms=raw.latency_ms,
        metrics={
            "connections_used": used,
            "connections_max": usable,
            "db_size_bytes": num(s["db_size"]),
            "connections_db": num(s["used_db"]),
            "max_connections": num(s["max_conn"]),
        },
        details=details,
        warnings=tuple(warnings),
    )


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    return f"{host}:{parts.port or 5432}"


def pg_error(exc: BaseException, url: str) -> ProbeError:
    """Translate an asyncpg/OS error into an operator-facing reason."""
    where = _where(url)
    match exc:
        case asyncpg.TooManyConnectionsError():
            return ProbeError(f"too many connections (server full; pg_isready would still say "
                              f"'accepting connections'): {exc}")
        case asyncpg.CannotConnectNowError():
            return ProbeError(f"rejecting connections (starting up, shutting down or in recovery): {exc}")
        case asyncpg.InvalidPasswordError() | asyncpg.InvalidAuthorizationSpecificationError():
            return ProbeError(f"authentication failed: {exc}")
        case asyncpg.InvalidCatalogNameError():
            return ProbeError(f"database does not exist: {exc}")
        case asyncpg.InsufficientPrivilegeError():
            return ProbeError(f"permission denied (grant pg_monitor to the probe's role): {exc}")
        case asyncpg.QueryCanceledError():
            return ProbeError(f"statement timeout: {exc}")
        case asyncpg.PostgresError():
            return ProbeError(f"{getattr(exc, 'sqlstate', '?')}: {exc}")
        case ConnectionRefusedError():
            return ProbeError(f"connection refused: nothing listens on {where}")
        case ConnectionResetError() | asyncpg.ConnectionDoesNotExistError():
            return ProbeError(f"connection lost: {where} closed the connection")
        case OSError():
            return ProbeError(f"unreachable: {where}: {exc.strerror or exc}")
        case asyncpg.InterfaceError():
            return ProbeError(f"protocol error: {exc}")
    return ProbeError(f"{type(exc).__name__}: {exc}")


async def connect(url: str, timeout_s: float, statement_timeout_ms: int) -> Any:
    try:
        return await asyncpg.connect(
            url, timeout=timeout_s, command_timeout=timeout_s,
            server_settings={"application_name": "opsdash-probe",
                             "statement_timeout": str(statement_timeout_ms)})
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise pg_error(exc, url) from exc


async def _slow_statements(conn: Any, limit: int) -> tuple[list[tuple[str, float, int]] | None, str | None]:
    schema = await conn.fetchval(_PGSS_SCHEMA_SQL)
    if schema is None:
        return None, None
    quoted = '"' + str(schema).replace('"', '""') + '"'
    for mean in ("mean_exec_time", "mean_time"):  # PG 13+ / older
        try:
            async with conn.transaction():
                rows = await conn.fetch(_PGSS_SQL.format(schema=quoted, mean=mean), limit)
        except asyncpg.UndefinedColumnError:
            continue
        except asyncpg.PostgresError as exc:  # e.g. not in shared_preload_libraries, no privilege
            return None, f"pg_stat_statements unusable: {exc}"
        return [(r["query"] or "", float(r["mean_ms"]), int(r["calls"])) for r in rows], None
    return None, "pg_stat_statements: unknown version"


class PostgresProbe:
    """The ``postgres`` target."""

    target = "postgres"

    def __init__(self, settings: PostgresProbeConfig, *, url: str | None = None) -> None:
        self.settings = settings
        self.url = settings.url or url or ""

    async def check(self) -> Reading:
        if not self.url:
            raise Unavailable("not configured (set OPSDASH_DATABASE_URL or probes.postgres.url)")
        cfg = self.settings
        t0 = time.perf_counter()
        conn = await connect(self.url, cfg.timeout_s, int(cfg.timeout_s * 1000))
        try:
            try:
                await conn.fetchval("SELECT 1")
                latency_ms = (time.perf_counter() - t0) * 1000
                stats = await conn.fetchrow(_STATS_SQL)
                rows = await conn.fetch(_TABLES_SQL, cfg.largest_tables) if cfg.largest_tables else []
                tables = [(r["name"], int(r["bytes"])) for r in rows]
                slow, note = (await _slow_statements(conn, cfg.slow_statements)
                              if cfg.slow_statements else (None, None))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise pg_error(exc, self.url) from exc
        except BaseException:
            conn.terminate()  # also on cancellation (timeout): never wait on a hung server
            raise
        await _close(conn)
        return postgres_reading(PgRaw(latency_ms, dict(stats), tables, slow, note), cfg)


async def _close(conn: Any) -> None:
    try:
        await conn.close(timeout=1.0)
    except Exception:
        conn.terminate()
