"""Benchmark: one platform-probe cycle on 1,000,000 devices and 100,000 alerts (target: < 200 ms).

    .venv/bin/python bench/bench_platform_counts.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
                                                    [--devices 1000000] [--alerts 100000] [--cycles 20]

Creates a scratch database with opsdash/platform-schema.sql, seeds it (10,000 tenants; devices seen over
the last 15 minutes so about 1/3 are online, 2 % never; alerts over 29 days, 10 % open),
VACUUM ANALYZE, then times
whole probe cycles (connect + read-only transaction + the four default queries + close) and prints
median, p95 and max. The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes.config import PlatformProbeConfig  # noqa: E402
from probes.platform import PlatformProbe  # noqa: E402

SEED = """
INSERT INTO tenants (name, status)
SELECT 't' || g, (ARRAY['active','active','active','suspended','deleted'])[1 + g % 5]
FROM generate_series(1, 10000) g;
INSERT INTO devices (tenant_id, name, last_seen_at)
SELECT 1 + g % 10000, 'd' || g,
       CASE WHEN g % 50 = 0 THEN NULL ELSE now() - (g % 900) * interval '1 second' END
FROM generate_series(1, {devices}) g;
INSERT INTO alerts (tenant_id, triggered_at, closed_at)
SELECT 1 + g % 10000, now() - (g * 25) * interval '1 second' - interval '10 minutes',
       CASE WHEN g % 10 = 0 THEN NULL
            ELSE now() - (g * 25) * interval '1 second' - interval '5 minutes' END
FROM generate_series(1, {alerts}) g;
INSERT INTO integrations (tenant_id, type, enabled)
SELECT 1 + g % 10000, (ARRAY['webhook','email','sms'])[1 + g % 3], g % 4 <> 0
FROM generate_series(1, 30000) g;
"""


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args()
    name = f"opsdash_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        t0 = time.perf_counter()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute((ROOT / "opsdash" / "platform-schema.sql").read_text())
            await conn.execute(SEED.format(devices=args.devices, alerts=args.alerts))
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        print(f"seeded {args.devices:,} devices, {args.alerts:,} alerts in {time.perf_counter() - t0:.1f} s")
        probe = PlatformProbe(PlatformProbeConfig(timezone="Europe/Berlin"), url=url)
        await probe.check()  # warm-up (plans, buffers)
        times: list[float] = []
        reading = None
        for _ in range(args.cycles):
            t = time.perf_counter()
            reading = await probe.check()
            times.append((time.perf_counter() - t) * 1000)
        assert reading is not None and not reading.warnings, reading
        times.sort()
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(
            f"cycle over {args.cycles} runs: median {statistics.median(times):.1f} ms, "
            f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms (budget 200 ms)"
        )
        print("figures:", dict(reading.metrics))
        return 0 if p95 < 200 else 1
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
