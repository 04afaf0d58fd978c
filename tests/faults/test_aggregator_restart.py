"""Aggregator restarted mid-stream, with a real gateway watching the view on the same broker.

The first AggregatorService is stopped (its task cancelled: its persistent MQTT session stays at the
broker, which queues the reporters' QoS 1 metrics for it); the reporters keep counting; a new
AggregatorService with the same id (same client id, clean_session=False) starts later. Its fold is
new, so its totals count from what it receives: the queued messages and what follows. Nothing double
counted and nothing lost means: first's totals + second's totals == sent, per instance.
Meanwhile the gateway sees no view updates: /healthz says degraded with the reason, live clients get a
``meta`` frame with ``stale: true``; it recovers by itself when the new aggregator publishes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from gateway.config import GatewayConfig
from gateway.server import LIVE_PATH, Gateway
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import MqttConfig
from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.faults.conftest import StartAggregator
from tests.faults.helpers import count_load, instance_totals, strict_loads
from tests.support.servers import Mosquitto


async def test_aggregator_restart_resumes_without_double_counting_and_gateway_marks_stale(
        mosquitto: Mosquitto, start_aggregator: StartAggregator, tmp_path: Path) -> None:
    gw = Gateway(GatewayConfig(listen="127.0.0.1:0", id="gw-fault", static_dir=str(tmp_path),
                               stale_after_s=1.5, meta_every_s=1.0, backoff_max_s=0.5),
                 MqttConfig(url=mosquitto.url))
    await gw.start()
    frames: list[dict[str, object]] = []

    async def watch() -> None:
        async with connect(f"ws://127.0.0.1:{gw.port}{LIVE_PATH}", max_size=None) as ws:
            async for raw in ws:
                frames.append(strict_loads(raw))

    watcher = asyncio.create_task(watch())
    reps: list[Reporter] = []
    try:
        first, first_task = await start_aggregator("restart-me")
        reps = [Reporter("ingest", f"ingest-{i}", mqtt_url=mosquitto.url, interval_s=0.25) for i in range(3)]
        for r in reps:
            await r.start()
            await r.wait_connected()
        sent = await count_load(reps, 3.0)
        async with httpx.AsyncClient(base_url=gw.url) as http:
            await eventually(lambda: not gw.stale and (gw.store.seq or 0) > 0, 10, what="gateway fresh")
            assert (await http.get("/healthz")).json()["status"] == "ok"
            await cancel_and_wait([first_task])  # the aggregator is gone; its session stays at the broker
            stopped_at = asyncio.get_running_loop().time()
            away: dict[str, int] = {}
            load = asyncio.create_task(count_load(reps, 3.0, sent=away))  # counted while no aggregator runs
            await eventually(lambda: gw.stale, 5, what="gateway marks the view stale")
            stale_after = asyncio.get_running_loop().time() - stopped_at
            await load
            health = (await http.get("/healthz")).json()
            assert health["status"] == "degraded", health
            assert any("aggregator silent" in why for why in health["reasons"]), health
            assert health["view"]["stale"] is True
            assert any(f.get("type") == "meta" and f.get("stale") is True for f in frames), frames[-3:]
            away_for = asyncio.get_running_loop().time() - stopped_at
            second, _ = await start_aggregator("restart-me")
            more: dict[str, int] = {}
            await count_load(reps, 2.0, sent=more)
            for r in reps:
                await r.stop()
            total = {k: sent[k] + away[k] + more[k] for k in sent}

            def both() -> dict[str, int]:
                a, b = instance_totals(first.fold, "ingest"), instance_totals(second.fold, "ingest")
                return {k: a.get(k, 0) + b.get(k, 0) for k in total}

            await eventually(lambda: both() == total, 10, what="first + second == sent")
            b_totals = instance_totals(second.fold, "ingest")
            assert all(b_totals[k] >= away[k] + more[k] for k in total), (b_totals, away, more)
            assert second.fold.duplicates == 0
            await eventually(lambda: not gw.stale, 10, what="gateway fresh again by itself")
            health = (await http.get("/healthz")).json()
            assert health["status"] == "ok" and health["reasons"] == [], health
            assert any(f.get("type") == "meta" and f.get("stale") is False for f in frames[-50:])
            # the gateway follows the new aggregator's view, whose seq started again from 1
            await eventually(lambda: gw.store.state is not None
                             and gw.store.state["meta"]["started_at"] == round(second.fold.started_at, 3),
                             10, what="gateway holds the new view")
            snap = (await http.get("/operator/system/metrics")).json()
            assert snap["throughput"]["ingest_rate_per_sec"] is not None
    finally:
        watcher.cancel()
        for r in reps:
            await r.stop()
        await gw.stop()
    print(f"\naggregator restart: sent {sum(total.values()):,}; first folded "
          f"{sum(instance_totals(first.fold, 'ingest').values()):,}, second folded "
          f"{sum(b_totals.values()):,} (incl. {sum(away.values()):,} counted while it was away); "
          f"double counted 0, lost 0; gateway stale {stale_after:.1f} s after the aggregator stopped "
          f"(stale_after_s 1.5), fresh again by itself after {away_for:.1f} s away")
