"""The demo's platform database: created from opsdash/platform-schema.sql, seeded, and kept changing.

Seeded like a real platform: tens of tenants (a few suspended or deleted), thousands of devices spread
unevenly over them with a spread of last-seen times (most online, some stale, some never seen), a week
of alert history and a few open alerts, and integrations (webhook, email, SMS; some disabled).

While the demo runs, :meth:`PlatformDb.run` keeps it moving every ``period_s``: online devices report
in (stay online), a few drop off or come back, alerts open and close, now and then a device is
registered, an integration is toggled or a tenant suspended/reactivated. The platform probe's figures
(tenants, devices online/stale, alerts open/closed today/triggered today, integrations) change with it.

A database that already holds tenants is never seeded or changed, unless it carries our marker table
``opsdash_demo`` (it was seeded by an earlier demo): a configured real platform database stays untouched.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import asyncpg

from opsdash.simdata import TENANTS, poisson

log = logging.getLogger("opsdash.platform_db")

SCHEMA: Final = Path(__file__).resolve().parent / "platform-schema.sql"
ONLINE_WINDOW_S: Final = 300.0


async def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_dsn`` if it is missing; return its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


class PlatformDb:
    """Seeds the reference platform schema and keeps it changing (see the module docstring)."""

    def __init__(self, dsn: str, *, seed: int = 0, tenants: int = 40, devices: int = 3000,
                 period_s: float = 2.0, schema: Path = SCHEMA) -> None:
        self.dsn = dsn
        self.rng = random.Random(f"{seed}/platform")
        self.n_tenants = max(1, min(tenants, 10_000))
        self.n_devices = max(1, devices)
        self.period_s = period_s
        self.schema = schema
        self.owned = False
        self.online: list[int] = []  # ids of devices that report in (rotated: least recent first)
        self.offline: list[int] = []
        self.tenant_ids: list[int] = []

    async def prepare(self) -> bool:
        """Create the schema (idempotent) and seed it when empty. True if the demo may change it."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(self.schema.read_text())
            marked = await conn.fetchval("SELECT to_regclass('opsdash_demo') IS NOT NULL")
            has_data = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants)")
            if has_data and not marked:
                log.warning("platform database already holds tenants: not seeding it, not changing it")
                return False
            if not has_data:
                await self._seed(conn)
            await self._load_ids(conn)
            self.owned = True
            return True
        finally:
            await conn.close()

    async def _seed(self, conn: asyncpg.Connection) -> None:
        rng = self.rng
        now = datetime.now(UTC)
        names = [TENANTS[i % len(TENANTS)] + ("" if i < len(TENANTS) else f"-{i // len(TENANTS) + 1}")
                 for i in range(self.n_tenants)]
        statuses = ["active"] * self.n_tenants
        for i in rng.sample(range(self.n_tenants), min(self.n_tenants - 1, max(0, self.n_tenants // 12))):
            statuses[i] = "suspended"
        for i in rng.sample(range(self.n_tenants), min(self.n_tenants - 1, max(0, self.n_tenants // 20))):
            statuses[i] = "deleted"
        async with conn.transaction():
            await conn.execute("CREATE TABLE IF NOT EXISTS opsdash_demo (seeded_at timestamptz NOT NULL)")
            await conn.execute("INSERT INTO opsdash_demo VALUES (now())")
            await conn.copy_records_to_table(
                "tenants", columns=["name", "status", "created_at"],
                records=[(n, st, now - timedelta(days=rng.uniform(30, 900))) for n, st in zip(names, statuses,
                                                                                             strict=True)])
            tenant_ids = [r["id"] for r in await conn.fetch("SELECT id FROM tenants ORDER BY id")]
            # device counts per tenant follow a power law: a few big customers, a long tail
            weights = [1 / (k + 1) ** 0.9 for k in range(len(tenant_ids))]
            owners = rng.choices(tenant_ids, weights=weights, k=self.n_devices)
            devices = []
            for k, tid in enumerate(owners):
                r = rng.random()
                if r < 0.78:    # online: seen within the last minutes
                    seen: datetime | None = now - timedelta(seconds=rng.uniform(0, 200))
                elif r < 0.93:  # stale: hours to weeks ago
                    seen = now - timedelta(hours=rng.lognormvariate(math.log(20), 1.3))
                else:           # registered, never seen
                    seen = None
                devices.append((tid, f"dev-{k:05d}", now - timedelta(days=rng.uniform(1, 400)), seen))
            await conn.copy_records_to_table("devices", columns=["tenant_id", "name", "created_at",
                                                                 "last_seen_at"], records=devices)
            device_rows = await conn.fetch("SELECT id, tenant_id FROM devices")
            alerts = []
            for _ in range(self.n_devices // 4):  # a week of history, most of it closed
                d = rng.choice(device_rows)
                trig = now - timedelta(seconds=rng.uniform(60, 7 * 86400))
                closed = trig + timedelta(seconds=rng.lognormvariate(math.log(1800), 1.2))
                alerts.append((d["tenant_id"], d["id"], self._severity(), self._alert_text(),
                               trig, closed if closed < now else None))
            await conn.copy_records_to_table(
                "alerts", columns=["tenant_id", "device_id", "severity", "message", "triggered_at",
                                   "closed_at"], records=alerts)
            integrations = []
            for tid in tenant_ids:
                for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4])):
                    kind = rng.choices(["webhook", "email", "sms"], weights=[6, 3, 1])[0]
                    integrations.append((tid, kind, f"{kind} #{rng.randrange(1, 99)}", rng.random() < 0.85))
            await conn.copy_records_to_table("integrations", columns=["tenant_id", "type", "name",
                                                                      "enabled"], records=integrations)
        log.info("platform database seeded: %d tenants, %d devices, %d alerts, %d integrations",
                 len(tenant_ids), len(devices), len(alerts), len(integrations))

    def _severity(self) -> str:
        return self.rng.choices(["info", "warning", "critical"], weights=[3, 6, 1])[0]

    def _alert_text(self) -> str:
        what = self.rng.choice(["temperature above 80 °C", "battery below 10 %", "no data for 15 min",
                                "humidity above 90 %", "pressure drop", "door open for 10 min",
                                "vibration over threshold"])
        return what

    async def _load_ids(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT id, last_seen_at >= now() - make_interval(secs => $1) AS on FROM devices "
            "ORDER BY last_seen_at NULLS FIRST", ONLINE_WINDOW_S)
        self.online = [r["id"] for r in rows if r["on"]]
        self.offline = [r["id"] for r in rows if not r["on"]]
        self.tenant_ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM tenants WHERE status = 'active' ORDER BY id")]

    async def tick(self, conn: asyncpg.Connection) -> None:
        """One step of platform life (see the module docstring)."""
        rng, p = self.rng, self.period_s
        # online devices report in: each within ~half the online window, least recent first
        k = min(len(self.online), math.ceil(len(self.online) * p / (ONLINE_WINDOW_S * 0.5)))
        batch, self.online = self.online[:k], self.online[k:] + self.online[:k]
        # a few devices drop off, a few come back (the online count drifts)
        if self.online and rng.random() < 0.5:
            gone = self.online.pop(rng.randrange(len(self.online)))
            self.offline.append(gone)
        if self.offline and rng.random() < 0.45:
            back = self.offline.pop(rng.randrange(len(self.offline)))
            self.online.append(back)
            batch.append(back)
        async with conn.transaction():
            if batch:
                await conn.execute("UPDATE devices SET last_seen_at = now() - random() * interval '2 s' "
                                   "WHERE id = ANY($1::bigint[])", batch)
            # alerts open and close (open ones close with a mean life of ~3 minutes)
            opened = poisson(rng, 0.6 * p)
            for _ in range(opened):
                if self.online:
                    dev = rng.choice(self.online)
                    await conn.execute(
                        "INSERT INTO alerts (tenant_id, device_id, severity, message) "
                        "SELECT tenant_id, id, $2, $3 FROM devices WHERE id = $1",
                        dev, self._severity(), self._alert_text())
            open_now = await conn.fetchval("SELECT count(*) FROM alerts WHERE closed_at IS NULL")
            close = poisson(rng, open_now * p / 180)
            if close:
                await conn.execute(
                    "UPDATE alerts SET closed_at = now() WHERE id IN (SELECT id FROM alerts "
                    "WHERE closed_at IS NULL ORDER BY random() LIMIT $1)", close)
            # rarer changes
            if rng.random() < p / 30 and self.tenant_ids:
                tid = rng.choice(self.tenant_ids)
                new_id = await conn.fetchval(
                    "INSERT INTO devices (tenant_id, name, last_seen_at) VALUES ($1, $2, now()) RETURNING id",
                    tid, f"dev-{rng.randrange(100000, 999999)}")
                self.online.append(new_id)
            if rng.random() < p / 120:
                await conn.execute("UPDATE integrations SET enabled = NOT enabled WHERE id = "
                                   "(SELECT id FROM integrations ORDER BY random() LIMIT 1)")
            if rng.random() < p / 400 and self.tenant_ids:
                await conn.execute("UPDATE tenants SET status = CASE status WHEN 'active' THEN 'suspended' "
                                   "ELSE 'active' END WHERE id = $1 AND status <> 'deleted'",
                                   rng.choice(self.tenant_ids))

    async def run(self) -> None:
        """Prepare, then tick every ``period_s`` until cancelled; survives database restarts."""
        while True:
            try:
                if not self.owned and not await self.prepare():
                    return
                conn = await asyncpg.connect(self.dsn)
                try:
                    while True:
                        await self.tick(conn)
                        await asyncio.sleep(self.period_s)
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("platform database: %s; retrying in 5 s", exc)
                await asyncio.sleep(5)
