"""Platform aggregates on seeded data with known exact counts, including the day boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from probes.config import PlatformProbeConfig
from probes.platform import PlatformProbe, bind, today_start
from probes.runner import ProbeRunner

SCHEMA = (Path(__file__).resolve().parents[2] / "opsdash" / "platform-schema.sql").read_text()
# 2026-11-27 03:00 UTC is 2026-11-26 22:00 in New York: "today" there began at 2026-11-26 05:00 UTC.
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
NY_MIDNIGHT = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
UTC_MIDNIGHT = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


async def _seed(url: str) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """Known rows; returns the alerts as (triggered_at, closed_at) for the independent count."""
    s = timedelta(seconds=1)
    alerts = [
        (NY_MIDNIGHT - s, None),  # before both midnights: yesterday everywhere
        (NY_MIDNIGHT, None),  # first instant of today in NY
        (NY_MIDNIGHT + timedelta(hours=2), NY_MIDNIGHT + timedelta(hours=3)),
        (UTC_MIDNIGHT - s, UTC_MIDNIGHT + s),  # closed just after UTC midnight
        (UTC_MIDNIGHT + s, None),
        (NY_MIDNIGHT - timedelta(days=2), NY_MIDNIGHT - s),  # closed just before NY midnight
        (NY_MIDNIGHT - timedelta(days=3), NY_MIDNIGHT - timedelta(days=2)),
    ]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA)
        await conn.executemany(
            "INSERT INTO tenants (name, status) VALUES ($1, $2)",
            [
                ("a", "active"),
                ("b", "active"),
                ("c", "active"),
                ("d", "suspended"),
                ("e", "deleted"),
                ("f", "deleted"),
            ],
        )
        seen = [
            NOW - timedelta(seconds=10),
            NOW - timedelta(seconds=299),
            NOW - timedelta(seconds=300),
            NOW - timedelta(seconds=301),
            NOW - timedelta(days=3),
            None,
            None,
        ]
        await conn.executemany(
            "INSERT INTO devices (tenant_id, name, last_seen_at) VALUES (1, $1, $2)",
            [(f"d{i}", t) for i, t in enumerate(seen)],
        )
        await conn.executemany(
            "INSERT INTO alerts (tenant_id, triggered_at, closed_at) VALUES (1, $1, $2)", alerts
        )
        await conn.executemany(
            "INSERT INTO integrations (tenant_id, type, enabled) VALUES (1, $1, $2)",
            [
                ("webhook", True),
                ("webhook", True),
                ("webhook", False),
                ("email", True),
                ("sms", True),
                ("sms", False),
            ],
        )
    finally:
        await conn.close()
    return {"alerts": alerts}


def _expected_alerts(alerts: list[tuple[datetime, datetime | None]], start: datetime) -> dict[str, int]:
    return {
        "alerts_open": sum(1 for _, c in alerts if c is None),
        "alerts_closed_today": sum(1 for _, c in alerts if c is not None and c >= start),
        "alerts_triggered_today": sum(1 for t, _ in alerts if t >= start),
    }


@pytest.mark.parametrize("zone", ["America/New_York", "UTC"])
async def test_exact_counts_with_today_in_a_configured_zone(database_url: str, zone: str) -> None:
    seeded = await _seed(database_url)
    probe = PlatformProbe(PlatformProbeConfig(timezone=zone), url=database_url, clock=NOW.timestamp)
    reading = await probe.check()
    start = NY_MIDNIGHT if zone == "America/New_York" else UTC_MIDNIGHT
    assert reading.details["today_start"] == start.astimezone(ZoneInfo(zone)).isoformat()
    assert reading.warnings == ()
    assert reading.metrics == {
        "tenants_active": 3,
        "tenants_suspended": 1,
        "tenants_deleted": 2,
        "tenants_total": 6,
        "devices_registered": 7,
        "devices_online": 3,
        "devices_stale": 4,
        **_expected_alerts(seeded["alerts"], start),
        "integrations_total": 6,
        "integrations_active": 4,
        "integrations_webhook": 2,
        "integrations_email": 1,
        "integrations_sms": 1,
    }
    # the zone matters for this data: the two zones give different "today" counts
    ny = _expected_alerts(seeded["alerts"], NY_MIDNIGHT)
    utc = _expected_alerts(seeded["alerts"], UTC_MIDNIGHT)
    assert ny != utc and (ny["alerts_triggered_today"], utc["alerts_triggered_today"]) == (4, 1)


async def test_a_failing_query_spares_the_others_then_all_failing_is_down(database_url: str) -> None:
    await _seed(database_url)
    queries = {
        "tenants": "SELECT count(*) AS tenants_total FROM tenants WHERE created_at <= :now",
        "broken": "SELECT count(*) AS x FROM no_such_table",
        "slow": "SELECT pg_sleep(1) IS NULL AS slept",
    }
    cfg = PlatformProbeConfig(queries=queries, statement_timeout_ms=200, timeout_s=5.0)
    reading = await PlatformProbe(cfg, url=database_url).check()
    assert reading.metrics == {"tenants_total": 6}
    assert any(w.startswith("query broken:") and "no_such_table" in w for w in reading.warnings)
    assert any(w.startswith("query slow: statement timeout") for w in reading.warnings)

    bad = PlatformProbeConfig(queries={"broken": "SELECT count(*) AS x FROM no_such_table"})
    runner = ProbeRunner([PlatformProbe(bad, url=database_url)])
    await runner.run_once()
    result = (await runner.run_once())["platform"]
    assert result.status == "down" and result.error is not None and "no_such_table" in result.error


def test_today_start_across_dst_and_binding() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29 is the spring-forward day in Berlin: midnight is still +01:00
    assert today_start(datetime(2026, 3, 29, 12, tzinfo=UTC), berlin) == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert today_start(datetime(2026, 10, 25, 23, 30, tzinfo=UTC), berlin) == datetime(
        2026, 10, 25, 23, tzinfo=UTC
    )
    sql, args = bind("SELECT :now, :today_start, :now, '1'::int, x::text", {"now": 1, "today_start": 2})
    assert sql == "SELECT $1, $2, $1, '1'::int, x::text" and args == [1, 2]
