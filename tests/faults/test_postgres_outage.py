"""PostgreSQL stopped and started: the postgres probe goes down with the reason and back up by itself;
the other probes (MQTT broker, disk) run on undisturbed.

The PostgreSQL server is a private one started for this test only (stopping the session's shared
server would disturb every other test). The probes run in a real :class:`ProbeRunner` on short periods.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path

from probes.config import DiskProbeConfig, MqttProbeConfig, PostgresProbeConfig
from probes.disk import DiskProbe
from probes.mqtt import MqttProbe
from probes.postgres import PostgresProbe
from probes.runner import Probe, ProbeRunner
from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import ProbeResult
from tests.conftest import eventually
from tests.support.servers import Mosquitto, PrivatePostgres


async def test_postgres_stopped_and_started(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # its own directory under /tmp: as root, the server runs as "postgres", which cannot enter tmp_path
    workdir = Path(tempfile.mkdtemp(prefix="opsdash-pg-outage-"))
    pg = await asyncio.to_thread(PrivatePostgres(workdir).start)
    results: dict[str, list[ProbeResult]] = {}
    try:
        probes: list[Probe] = [
            PostgresProbe(PostgresProbeConfig(period_s=0.5, timeout_s=0.5, latency_budget_ms=400,
                                              retry_s=0.25), url=pg.dsn()),
            MqttProbe(MqttProbeConfig(period_s=0.5, timeout_s=0.5, latency_budget_ms=400, sys_wait_s=0.1),
                      bus=MqttConfig(url=mosquitto.url)),
            DiskProbe(DiskProbeConfig(period_s=0.5, timeout_s=0.5, latency_budget_ms=400,
                                      walk_budget_s=0.2, postgres_data_dir=str(tmp_path))),
        ]
        runner = ProbeRunner(probes)
        task = asyncio.create_task(runner.run(lambda t, r: results.setdefault(t, []).append(r)))

        def last(target: str) -> ProbeResult | None:
            got = results.get(target)
            return got[-1] if got else None

        def status(target: str) -> str | None:
            r = last(target)
            return r.status if r else None

        await eventually(lambda: status("postgres") == "healthy", 10, what="postgres healthy")
        await eventually(lambda: status("mqtt") == "healthy" and status("disk") == "healthy", 10,
                         what="the other probes healthy")
        mark = {t: len(v) for t, v in results.items()}
        await asyncio.to_thread(pg.stop)
        await eventually(lambda: status("postgres") == "down", 10, what="postgres down")
        down = last("postgres")
        assert down is not None and down.error is not None
        assert "connection refused" in down.error or "rejecting connections" in down.error, down.error
        down_error = down.error
        await asyncio.to_thread(pg.start)
        await eventually(lambda: status("postgres") == "healthy", 15, what="postgres back up by itself")
        await eventually(lambda: len(results["mqtt"]) > mark["mqtt"] + 2, 5, what="mqtt probe ran on")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        seen_pg = [r.status for r in results["postgres"][mark["postgres"]:]]
        # not disturbed: every result of the other probes during the outage was healthy
        for target in ("mqtt", "disk"):
            during = [r.status for r in results[target][mark[target]:]]
            assert during and set(during) == {"healthy"}, (target, during, results[target][-1].error)
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\npostgres stopped and started: probe {' -> '.join(dict.fromkeys(seen_pg))} "
          f"(reason while down: {down_error!r}); mqtt {len(results['mqtt']) - mark['mqtt']} and disk "
          f"{len(results['disk']) - mark['disk']} results meanwhile, all healthy")
