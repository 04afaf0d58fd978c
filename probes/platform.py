"""Platform aggregates from the platform's PostgreSQL: tenants, devices, alerts, integrations.

The queries are configurable (``probes.platform.queries``); the defaults target the reference schema
``opsdash/platform-schema.sql``. Each query returns one row whose column names are metric keys. They run
in one read-only REPEATABLE READ transaction (one snapshot, so the figures add up) with a statement
timeout; a query that fails leaves its metrics null and makes the result "degraded", the others
still count. Placeholders ``:now``, ``:today_start`` and ``:online_since`` are bound as timestamptz;
"today" starts at midnight in ``probes.platform.timezone``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import asyncpg

from probes.config import PlatformProbeConfig
from probes.core import ProbeError, Reading, Unavailable, num
from probes.postgres import connect, pg_error

__all__ = ["DEFAULT_PLATFORM_QUERIES", "PlatformProbe", "PlatformWindow", "bind", "platform_reading",
           "today_start", "window"]

#: The default platform queries (they target the reference schema opsdash/platform-schema.sql). Each
#: returns one row whose column names are metric keys. Placeholders: ``:now``, ``:today_start``
#: (midnight in ``timezone``) and ``:online_since`` (now minus ``online_window_s``), all ``timestamptz``.
DEFAULT_PLATFORM_QUERIES: Final[dict[str, str]] = {
    "tenants": (
        "SELECT count(*) FILTER (WHERE status = 'active') AS tenants_active,"
        " count(*) FILTER (WHERE status = 'suspended') AS tenants_suspended,"
        " count(*) FILTER (WHERE status = 'deleted') AS tenants_deleted,"
        " count(*) AS tenants_total FROM tenants"
    ),
    "devices": (
        "SELECT r.n AS devices_registered, o.n AS devices_online, r.n - o.n AS devices_stale"
        " FROM (SELECT count(*) AS n FROM devices) r,"
        " (SELECT count(*) AS n FROM devices WHERE last_seen_at >= :online_since) o"
    ),
    "alerts": (
        "SELECT (SELECT count(*) FROM alerts WHERE closed_at IS NULL) AS alerts_open,"
        " (SELECT count(*) FROM alerts WHERE closed_at >= :today_start) AS alerts_closed_today,"
        " (SELECT count(*) FROM alerts WHERE triggered_at >= :today_start) AS alerts_triggered_today"
    ),
    "integrations": (
        "SELECT count(*) AS integrations_total,"
        " count(*) FILTER (WHERE enabled) AS integrations_active,"
        " count(*) FILTER (WHERE enabled AND type = 'webhook') AS integrations_webhook,"
        " count(*) FILTER (WHERE enabled AND type = 'email') AS integrations_email,"
        " count(*) FILTER (WHERE enabled AND type = 'sms') AS integrations_sms"
        " FROM integrations"
    ),
}


_PLACEHOLDER: Final = re.compile(r"(?<![:\w]):(now|today_start|online_since)\b")
_METRIC: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def today_start(now: datetime, zone: ZoneInfo) -> datetime:
    """Midnight of ``now``'s day in ``zone`` (aware; correct across DST changes)."""
    local = now.astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    # A zone whose clocks jump over midnight: fold=0 picks the first valid instant.
    return midnight.astimezone(UTC).astimezone(zone)


@dataclass(frozen=True, slots=True)
class PlatformWindow:
    now: datetime
    today_start: datetime
    online_since: datetime

    def params(self) -> dict[str, datetime]:
        return {"now": self.now, "today_start": self.today_start, "online_since": self.online_since}


def window(now_s: float, cfg: PlatformProbeConfig) -> PlatformWindow:
    now = datetime.fromtimestamp(now_s, UTC)
    return PlatformWindow(now=now, today_start=today_start(now, cfg.zone()),
                          online_since=now - timedelta(seconds=cfg.online_window_s))


def bind(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Turn ``:name`` placeholders into ``$n`` and the matching argument list (each name once)."""
    order: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PLACEHOLDER.sub(repl, sql), [params[n] for n in order]


def platform_reading(rows: Mapping[str, Mapping[str, Any] | str], latency_ms: float,
                     win: PlatformWindow) -> Reading:
    """Pure: per-query rows (or an error string) -> metrics; a failed query -> a warning."""
    metrics: dict[str, float | int | None] = {}
    warnings: list[str] = []
    for name, row in rows.items():
        if isinstance(row, str):
            warnings.append(f"query {name}: {row}")
            continue
        for column, value in row.items():
            if not _METRIC.match(column):
                warnings.append(f"query {name}: column {column!r} is not a metric name")
                continue
            metrics[column] = num(value)
    if rows and len(warnings) >= len(rows) and not metrics:
        raise ProbeError("; ".join(warnings))
    return Reading(latency_ms=latency_ms, metrics=metrics, warnings=tuple(warnings), details={
        "today_start": win.today_start.isoformat(),
        "online_since": win.online_since.isoformat(),
    })


class PlatformProbe:
    """The ``platform`` target (the view's ``aggregates`` section)."""

    target = "platform"

    def __init__(self, settings: PlatformProbeConfig, *, url: str | None = None,
                 clock: Any = time.time) -> None:
        self.settings = settings
        self.url = settings.url or url or ""
        self.clock = clock
        self._queries = dict(settings.queries or DEFAULT_PLATFORM_QUERIES)

    async def check(self) -> Reading:
        if not self.url:
            raise Unavailable("not configured (set OPSDASH_DATABASE_URL or probes.platform.url)")
        cfg = self.settings
        win = window(self.clock(), cfg)
        params = win.params()
        t0 = time.perf_counter()
        conn = await connect(self.url, cfg.timeout_s, cfg.statement_timeout_ms)
        rows: dict[str, Mapping[str, Any] | str] = {}
        try:
            try:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    for name, sql in self._queries.items():
                        text, args = bind(sql, params)
                        try:
                            async with conn.transaction():  # a savepoint: one failure spares the rest
                                row = await conn.fetchrow(text, *args)
                        except asyncpg.PostgresError as exc:
                            rows[name] = str(pg_error(exc, self.url))
                            continue
                        rows[name] = dict(row) if row is not None else "returned no row"
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise pg_error(exc, self.url) from exc
        except BaseException:
            conn.terminate()
            raise
        latency_ms = (time.perf_counter() - t0) * 1000
        try:
            await conn.close(timeout=1.0)
        except Exception:
            conn.terminate()
        return platform_reading(rows, latency_ms, win)
