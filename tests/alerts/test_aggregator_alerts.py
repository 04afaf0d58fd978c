"""Alerts through the real aggregator: a probe result in, the alert on the bus, in the view, at the
webhook; an aggregator restart mid-alert keeps it (same starts_at, no second page); resolve clears it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from alerts.notifier import Notifier
from alerts.receiver import WebhookReceiver
from opsdash.config import Config, load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.service import AggregatorService
from tests.support.servers import Mosquitto, scaled


def cfg(broker: Mosquitto, hook: str) -> Config:
    return load_config(None, env={
        "OPSDASH_MQTT_URL": broker.url,
        "OPSDASH_ALERTS__WEBHOOK_URLS": json.dumps([hook]),
        "OPSDASH_ALERTS__RULES": '[{name = "disk_usage_high", for_s = 2, keep_firing_s = 2}]',
    })


@contextlib.asynccontextmanager
async def running(part: Any) -> AsyncIterator[Any]:
    task = asyncio.create_task(part.run())
    try:
        yield part
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish_disk(broker: Mosquitto, pct: float) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        body = {"ts": time.time(), "status": "healthy", "latency_ms": 1.0, "period_s": 60,
                "metrics": {"used_pct": pct, "total_volume_bytes": 100 * 2**30}}
        await c.publish("$ops/v1/probe/disk", json.dumps(body).encode(), qos=1, retain=True)


async def retained_alerts(broker: Mosquitto) -> dict[str, dict[str, Any]]:
    """What a fresh `mosquitto_sub -t '$ops/v1/alerts/#'` sees at once."""
    out: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        await c.subscribe("$ops/v1/alerts/#", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(scaled(0.7)):
                async for m in c.messages:
                    if m.retain and m.payload:
                        out[m.topic.value.rsplit("/", 1)[1]] = json.loads(m.payload)  # type: ignore[arg-type]
    return out


async def wait_until(cond: Any, timeout: float) -> None:
    async with asyncio.timeout(scaled(timeout)):
        while not cond():
            await asyncio.sleep(0.05)


def firing(agg: AggregatorService) -> list[dict[str, Any]]:
    return ((agg.last.view if agg.last else {}).get("alerts") or {}).get("firing") or []


@pytest.mark.slow
async def test_probe_to_webhook_through_the_aggregator_and_a_restart(mosquitto: Mosquitto) -> None:
    async with WebhookReceiver(quiet=True) as hook:
        config = cfg(mosquitto, hook.url)
        async with running(Notifier(config, client_id="n1")):
            async with running(build_aggregator(config)) as agg:
                await publish_disk(mosquitto, 91.5)
                await wait_until(lambda: bool(firing(agg)), 10)
                await hook.wait_for(lambda got: len(got) == 1, scaled(5))
                [a] = firing(agg)
                assert a["labels"] == {"alertname": "disk_usage_high", "component": "disk", "severity": "warning"}
                assert a["value"] == 91.5 and a["fired_at"] - a["starts_at"] >= 2
                retained = await retained_alerts(mosquitto)
                assert list(retained) == [a["fingerprint"]] and retained[a["fingerprint"]]["status"] == "firing"
                sent = hook.received[0].body["alerts"][0]
                assert sent["status"] == "firing" and sent["annotations"]["summary"] == \
                    "disk 91.5 % used (threshold 80 %)"
            # the aggregator restarts mid-alert: it takes the alert back from the bus
            async with running(build_aggregator(config)) as agg2:
                await wait_until(lambda: bool(firing(agg2)), 10)
                [b] = firing(agg2)
                assert (b["fingerprint"], b["starts_at"], b["fired_at"]) == \
                    (a["fingerprint"], a["starts_at"], a["fired_at"])
                await asyncio.sleep(scaled(1.5))
                assert len(hook.received) == 1
                # recovery: resolved once, retained message gone, in recent
                await publish_disk(mosquitto, 40.0)
                await hook.wait_for(lambda got: len(got) == 2, scaled(8))
                res = hook.received[1].body["alerts"][0]
                assert res["status"] == "resolved" and res["fingerprint"] == a["fingerprint"]
                await wait_until(lambda: not firing(agg2), 5)
                recent = agg2.last.view["alerts"]["recent"]  # type: ignore[union-attr]
                assert recent[0]["fingerprint"] == a["fingerprint"] and recent[0]["status"] == "resolved"
                assert await retained_alerts(mosquitto) == {}
                await asyncio.sleep(scaled(1))
                assert len(hook.received) == 2
