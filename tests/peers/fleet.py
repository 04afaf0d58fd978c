"""Known traffic for the Prometheus tests: tests/browser/fleet.py's reporters and probe results, with
the disk probe's ``used_pct`` read from a file each round (so a test can craft a full disk).

    python -m tests.peers.fleet MQTT_URL DISK_PCT_FILE
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiomqtt

from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import ProbeResult, encode, topics
from telemetry_bus.reporter import Reporter
from tests.browser.fleet import PROBES, ROOT, traffic


async def probes_loop(url: str, disk_file: Path) -> None:
    ep = MqttConfig(url=url).endpoint()
    async with aiomqtt.Client(ep.host, ep.port) as client:
        while True:
            now = time.time()
            for target, canned in PROBES.items():
                fields = dict(canned)
                if target == "disk":
                    pct = float(disk_file.read_text().strip() or 78)
                    fields["metrics"] = {**fields["metrics"], "used_pct": pct,  # type: ignore[dict-item]
                                         "used_volume_bytes": round(pct / 100 * 100 * 2**30)}
                res = ProbeResult(ts=now, period_s=1.0, **fields)  # type: ignore[arg-type]
                await client.publish(topics.probe(ROOT, target), encode(res), qos=1, retain=True)
            await asyncio.sleep(1.0)


async def main(url: str, disk_file: Path) -> None:
    def rep(service: str, instance: str) -> Reporter:
        return Reporter(service=service, instance=instance, mqtt_url=url, topic_root=ROOT, interval_s=1.0)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(probes_loop(url, disk_file))
        tg.create_task(traffic(rep("ingest", "ingest-1"), {"messages_received": 12, "messages_written": 12},
                               {"queue_depth": 3}, latency=True))
        tg.create_task(traffic(rep("ingest", "ingest-2"), {"messages_received": 8, "messages_written": 8},
                               {"queue_depth": 4}, latency=True))
        tg.create_task(traffic(rep("evaluator", "evaluator-1"), {"rules_evaluated": 10, "alerts_created": 1}, {}))
        tg.create_task(traffic(rep("dispatcher", "dispatcher-1"), {"alerts_routed": 1}, {}))
        tg.create_task(traffic(rep("delivery", "delivery-1"), {"webhooks_sent": 1, "webhooks_failed": 0},
                               {"pending_jobs": 7},
                               event_every=20))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
