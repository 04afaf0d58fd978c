"""PostgreSQL dies for real: a private server the test stops, a real postgres probe, real reporters of
dispatcher and delivery, the real aggregator (graph + alerts sections) and notifier, and a webhook.

While PostgreSQL is down, dispatcher and delivery are impacted by it in the view; their own alerts
fire but carry ``inhibited_by: ["postgres"]`` and never reach the webhook, which gets PostgreSQL's
alert only. When PostgreSQL is back, the alerts that still hold notify normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alerts.notifier import Notifier
from alerts.receiver import WebhookReceiver
from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from probes.config import PostgresProbeConfig
from probes.postgres import PostgresProbe
from probes.runner import ProbeRunner
from telemetry_bus.contract import ProbeResult, encode, topics
from telemetry_bus.reporter import Reporter
from telemetry_bus.service import AggregatorService
from tests.conftest import eventually
from tests.support.servers import Mosquitto, PrivatePostgres, scaled


@contextlib.asynccontextmanager
async def running(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def publish_probes(runner: ProbeRunner, broker: Mosquitto) -> None:
    """The probes process in miniature: every result retained on <root>/v1/probe/<target>."""
    queue: asyncio.Queue[tuple[str, ProbeResult]] = asyncio.Queue()
    async with aiomqtt.Client("127.0.0.1", broker.port) as client, asyncio.TaskGroup() as tg:
        tg.create_task(runner.run(lambda t, r: queue.put_nowait((t, r))))
        while True:
            target, res = await queue.get()
            await client.publish(topics.probe("$ops", target), encode(res), qos=1, retain=True)


def view(agg: AggregatorService) -> dict[str, Any]:
    return agg.last.view if agg.last else {}


def node(agg: AggregatorService, name: str) -> dict[str, Any]:
    return ((view(agg).get("graph") or {}).get("nodes") or {}).get(name) or {}


def alerts_on(agg: AggregatorService, component: str) -> list[dict[str, Any]]:
    firing = (view(agg).get("alerts") or {}).get("firing") or []
    return [a for a in firing if a["labels"].get("component") == component]


def sent(hook: WebhookReceiver) -> list[tuple[str, str, str | None]]:
    return [(a["status"], a["labels"]["alertname"], a["labels"].get("component"))
            for r in hook.received for a in r.body["alerts"]]


@pytest.mark.slow
async def test_postgres_down_impacts_dispatcher_and_delivery_and_inhibits_their_alerts(
        mosquitto: Mosquitto) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="opsdash-pg-graph-"))
    pg = await asyncio.to_thread(PrivatePostgres(workdir).start)
    try:
        async with WebhookReceiver(quiet=True) as hook:
            config = load_config(None, env={
                "OPSDASH_MQTT_URL": mosquitto.url,
                "OPSDASH_AGGREGATOR__TICK_S": "0.25",
                "OPSDASH_AGGREGATOR__EXPECTED_SERVICES": '["dispatcher", "delivery"]',
                "OPSDASH_AGGREGATOR__EXPECTED_PROBES": '["postgres"]',
                "OPSDASH_ALERTS__WEBHOOK_URLS": json.dumps([hook.url]),
                "OPSDASH_ALERTS__RULES": '[{name = "component_down", for_s = 1, keep_firing_s = 1}, '
                                         '{name = "component_degraded", for_s = 1, keep_firing_s = 1}]',
            })
            probe = PostgresProbe(PostgresProbeConfig(period_s=1.0, timeout_s=1.0, latency_budget_ms=1000,
                                                      retry_s=0.25), url=pg.dsn())
            reps = {s: Reporter(s, f"{s}-1", mqtt_url=mosquitto.url, interval_s=0.5, depends_on=["postgres"])
                    for s in ("dispatcher", "delivery")}
            agg = build_aggregator(config)
            async with running(Notifier(config, client_id="n-graph").run()), running(agg.run()), \
                    running(publish_probes(ProbeRunner([probe]), mosquitto)):
                for r in reps.values():
                    await r.start()
                await eventually(lambda: all(node(agg, c).get("status") == "healthy"
                                             for c in ("postgres", "dispatcher", "delivery")), 20,
                                 what="all healthy")
                g = view(agg)["graph"]
                assert ["dispatcher", "postgres"] in g["edges"] and ["delivery", "postgres"] in g["edges"]

                # PostgreSQL stops; the services notice a moment later and say so
                await asyncio.to_thread(pg.stop)
                await eventually(lambda: node(agg, "postgres").get("status") == "down", 15, what="postgres down")
                for r in reps.values():
                    r.set_health("degraded", "postgres unreachable")
                await eventually(lambda: all(alerts_on(agg, c) for c in ("dispatcher", "delivery")), 15,
                                 what="dispatcher and delivery alerts firing")
                assert node(agg, "postgres")["root_cause"] is True
                for c in ("dispatcher", "delivery"):
                    assert node(agg, c) == {"status": "degraded", "impacted_by": ["postgres"]}
                    [a] = alerts_on(agg, c)
                    assert a["labels"]["alertname"] == "component_degraded"
                    assert a["inhibited_by"] == ["postgres"], a
                assert view(agg)["graph"]["summary"] == "postgres down — 2 components impacted"
                [pa] = alerts_on(agg, "postgres")
                assert not pa["inhibited_by"]
                await hook.wait_for(lambda got: ("firing", "component_down", "postgres") in sent(hook),
                                    scaled(10))
                await asyncio.sleep(scaled(2))  # the notifier had every chance to send the inhibited ones
                assert sent(hook) == [("firing", "component_down", "postgres")]

                # PostgreSQL is back; the services are still catching up: their alerts now notify
                await asyncio.to_thread(pg.start)
                await hook.wait_for(lambda got: {("firing", "component_degraded", "dispatcher"),
                                                 ("firing", "component_degraded", "delivery"),
                                                 ("resolved", "component_down", "postgres")} <= set(sent(hook)),
                                    scaled(20))
                for c in ("dispatcher", "delivery"):
                    assert node(agg, c)["impacted_by"] == [] and node(agg, c)["root_cause"] is True
                    [a] = alerts_on(agg, c)
                    assert not a["inhibited_by"]
                # and they resolve when the services recover
                for r in reps.values():
                    r.set_health("ok")
                await hook.wait_for(lambda got: {("resolved", "component_degraded", "dispatcher"),
                                                 ("resolved", "component_degraded", "delivery")} <= set(sent(hook)),
                                    scaled(20))
                assert sorted(sent(hook)).count(("firing", "component_degraded", "dispatcher")) == 1
                for r in reps.values():
                    await r.stop()
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(workdir, ignore_errors=True)
