"""Known traffic for the browser tests: reporters of the seed's services plus canned probe results.

    python -m tests.browser.fleet MQTT_URL ROLE

ROLE ``fleet``: ingest-1 (50 msg/s), ingest-2 (30 msg/s), evaluator-1, delivery-1 (pending_jobs 7, a
webhook_timeout event every 5 s) and retained results for the probe targets (postgres, influxdb, mqtt,
keycloak, disk, platform, docker) every 2 s. ROLE ``dispatcher``: dispatcher-1 alone, so that a test
can ``kill -9`` it and watch its tile go down.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiomqtt

from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import ProbeResult, encode, topics
from telemetry_bus.reporter import Reporter

ROOT = "$ops"

PROBES: dict[str, dict[str, object]] = {
    "postgres": {"status": "healthy", "latency_ms": 2.5,
                 "metrics": {"connections_used": 15, "connections_max": 100, "db_size_bytes": 1250 * 2**20}},
    "influxdb": {"status": "healthy", "latency_ms": 5.0,
                 "metrics": {"file_count": 432, "file_limit": 1000, "data_bytes": 45 * 2**30}},
    "mqtt": {"status": "healthy", "latency_ms": 1.0, "metrics": {"connected_clients": 25}},
    "keycloak": {"status": "degraded", "latency_ms": 180.0, "metrics": {"active_sessions": 7},
                 "error": "slow: /health took 180 ms"},
    "disk": {"status": "healthy", "metrics": {
        "postgres_data_bytes": 25 * 2**29, "influxdb_data_bytes": 45 * 2**30,
        "total_volume_bytes": 100 * 2**30, "used_volume_bytes": 78 * 2**30, "used_pct": 78.0}},
    "platform": {"status": "healthy", "metrics": {
        "tenants_active": 12, "tenants_suspended": 2, "tenants_deleted": 1, "tenants_total": 15,
        "devices_registered": 4500, "devices_online": 3800, "devices_stale": 700,
        "alerts_open": 23, "alerts_closed_today": 156, "alerts_triggered_today": 179,
        "integrations_total": 35, "integrations_active": 28, "integrations_webhook": 20,
        "integrations_email": 10, "integrations_sms": 5}},
    "docker": {"status": "healthy", "metrics": {"containers_running": 3, "containers_total": 3},
               "details": {"containers": [
                   {"name": "ingest-1", "service": "ingest", "state": "running", "cpu_pct": 12.5,
                    "mem_bytes": 100 * 2**20, "mem_limit_bytes": 512 * 2**20},
                   {"name": "delivery-1", "service": "delivery", "state": "running", "cpu_pct": 3.0,
                    "mem_bytes": 420 * 2**20, "mem_limit_bytes": 512 * 2**20},
                   {"name": "postgres", "service": "postgres", "state": "running", "cpu_pct": 8.0,
                    "mem_bytes": 900 * 2**20, "mem_limit_bytes": 2048 * 2**20}]}},
}


async def probes_loop(url: str) -> None:
    ep = MqttConfig(url=url).endpoint()
    async with aiomqtt.Client(ep.host, ep.port) as client:
        while True:
            now = time.time()
            for target, fields in PROBES.items():
                res = ProbeResult(ts=now, period_s=2.0, **fields)  # type: ignore[arg-type]
                await client.publish(topics.probe(ROOT, target), encode(res), qos=1, retain=True)
            await asyncio.sleep(2.0)


async def traffic(rep: Reporter, per_tick: dict[str, int], gauges: dict[str, float],
                  latency: bool = False, event_every: int = 0) -> None:
    await rep.start()
    tick = 0
    while True:
        for name, n in per_tick.items():
            rep.inc(name, n)
        for name, v in gauges.items():
            rep.set_gauge(name, v)
        if latency:
            for ms in (2.0, 3.0, 4.0, 5.0, 8.0, 12.0, 20.0, 45.0):
                rep.observe("influx_write_ms", ms)
        if event_every and tick % event_every == 0:
            rep.event("webhook_timeout", f"POST https://example.com/hook timed out ({tick})",
                      severity="error")
        tick += 1
        await asyncio.sleep(0.25)


async def main(url: str, role: str) -> None:
    def rep(service: str, instance: str) -> Reporter:
        return Reporter(service=service, instance=instance, mqtt_url=url, topic_root=ROOT, interval_s=1.0)

    async with asyncio.TaskGroup() as tg:
        if role == "fleet":
            tg.create_task(probes_loop(url))
            tg.create_task(traffic(rep("ingest", "ingest-1"),
                                   {"messages_received": 12, "messages_written": 12},
                                   {"queue_depth": 3}, latency=True))
            tg.create_task(traffic(rep("ingest", "ingest-2"), {"messages_received": 8, "messages_written": 8},
                                   {"queue_depth": 4}, latency=True))
            tg.create_task(traffic(rep("evaluator", "evaluator-1"),
                                   {"rules_evaluated": 10, "alerts_created": 1}, {}))
            tg.create_task(traffic(rep("delivery", "delivery-1"), {"webhooks_sent": 1}, {"pending_jobs": 7},
                                   event_every=20))
        else:
            tg.create_task(traffic(rep("dispatcher", "dispatcher-1"), {"alerts_routed": 1}, {}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
