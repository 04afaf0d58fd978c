"""REST alerts end to end: aggregator + gateway + notifier + webhook over a real broker.

Ack and silence from an operator token work, show on the alert, survive a restart of the aggregator and
the gateway, and a silence keeps a firing alert from being sent until it ends; a display token gets 403."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from alerts.notifier import Notifier
from alerts.receiver import WebhookReceiver
from gateway.server import Gateway
from opsdash.config import Config, load_config
from opsdash.wiring import build_aggregator
from tests.alerts.test_aggregator_alerts import publish_disk, running, wait_until
from tests.support.servers import Mosquitto, scaled

OP = {"Authorization": "Bearer op-secret"}
WALL = {"Authorization": "Bearer wall-secret"}


def cfg(broker: Mosquitto, hook: str) -> Config:
    return load_config(None, env={
        "OPSDASH_MQTT_URL": broker.url, "OPSDASH_LISTEN": "127.0.0.1:0", "OPSDASH_AUTH": "token",
        "OPSDASH_TOKENS": "op-secret", "OPSDASH_GATEWAY__DISPLAY_TOKENS": '["wall-secret"]',
        "OPSDASH_ALERTS__WEBHOOK_URLS": json.dumps([hook]),
        "OPSDASH_ALERTS__RULES": '[{name = "disk_usage_high", for_s = 1, keep_firing_s = 2},'
                                 ' {name = "pg_connections_high", for_s = 1, keep_firing_s = 2}]',
    })


@contextlib.asynccontextmanager
async def gateway(config: Config) -> AsyncIterator[Gateway]:
    gw = Gateway(config.gateway, config.mqtt)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def get_alerts(http: httpx.AsyncClient, gw: Gateway) -> dict[str, Any]:
    r = await http.get(f"{gw.url}/operator/system/alerts", headers=OP)
    return r.json() if r.status_code == 200 else {"alerts": [], "recent": [], "silences": []}


async def until_alerts(http: httpx.AsyncClient, gw: Gateway, cond: Any, timeout: float = 10) -> dict[str, Any]:
    body: dict[str, Any] = {}
    async with asyncio.timeout(scaled(timeout)):
        while True:
            body = await get_alerts(http, gw)
            if cond(body):
                return body
            await asyncio.sleep(0.1)


async def publish_pg(broker: Mosquitto, used: int) -> None:
    import time

    import aiomqtt
    async with aiomqtt.Client("127.0.0.1", broker.port) as c:
        body = {"ts": time.time(), "status": "healthy", "latency_ms": 1.0, "period_s": 60,
                "metrics": {"connections_used": used, "connections_max": 100}}
        await c.publish("$ops/v1/probe/postgres", json.dumps(body).encode(), qos=1, retain=True)


def alert_named(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((a for a in body["alerts"] if a["labels"]["alertname"] == name), None)


@pytest.mark.slow
async def test_ack_and_silence_work_survive_restarts_and_display_tokens_cannot(mosquitto: Mosquitto) -> None:
    async with WebhookReceiver(quiet=True) as hook, httpx.AsyncClient(timeout=10) as http:
        config = cfg(mosquitto, hook.url)
        async with running(Notifier(config, client_id="n1")):
            async with running(build_aggregator(config)), gateway(config) as gw:
                await publish_disk(mosquitto, 93.0)
                body = await until_alerts(http, gw, lambda b: bool(alert_named(b, "disk_usage_high")) and
                                          alert_named(b, "disk_usage_high")["status"] == "firing")
                disk = alert_named(body, "disk_usage_high")
                assert disk is not None and set(disk) >= {"fingerprint", "status", "labels", "annotations",
                                                          "value", "starts_at", "ends_at", "acked_by",
                                                          "silenced_until", "inhibited_by"}
                fp = disk["fingerprint"]
                # reading is fine for a wall screen; writing is not
                r = await http.get(f"{gw.url}/operator/system/alerts", headers=WALL)
                assert r.status_code == 200 and r.json()["alerts"][0]["fingerprint"] == fp
                r = await http.post(f"{gw.url}/operator/system/alerts/{fp}/ack", headers=WALL)
                assert r.status_code == 403
                r = await http.post(f"{gw.url}/operator/system/silences", headers=WALL,
                                    json={"matchers": {"component": "postgres"}, "duration_s": 600})
                assert r.status_code == 403
                r = await http.post(f"{gw.url}/operator/system/alerts/{'0' * 16}/ack", headers=OP)
                assert r.status_code == 404
                r = await http.post(f"{gw.url}/operator/system/silences", headers=OP,
                                    json={"matchers": {}, "duration_s": 600})
                assert r.status_code == 400
                # an operator acks
                r = await http.post(f"{gw.url}/operator/system/alerts/{fp}/ack", headers=OP)
                assert r.status_code == 200 and r.json()["acked_by"] == "token"
                await until_alerts(http, gw, lambda b: alert_named(b, "disk_usage_high")["acked_by"] == "token")
                # a silence on postgres, before its alert fires: not sent, but listed
                r = await http.post(f"{gw.url}/operator/system/silences", headers=OP,
                                    json={"matchers": {"component": "postgres"}, "duration_s": 600,
                                          "comment": "db maintenance"})
                assert r.status_code == 201
                sid = r.json()["id"]
                await until_alerts(http, gw, lambda b: [s["id"] for s in b["silences"]] == [sid])
                await publish_pg(mosquitto, 95)
                body = await until_alerts(http, gw, lambda b: (alert_named(b, "pg_connections_high") or {})
                                          .get("status") == "firing")
                pg = alert_named(body, "pg_connections_high")
                assert pg is not None and pg["silenced_until"] == pytest.approx(r.json()["ends_at"])
            # the aggregator and the gateway restart: ack and silence are still there
            async with running(build_aggregator(config)), gateway(config) as gw2:
                body = await until_alerts(http, gw2, lambda b: len(b["alerts"]) == 2)
                assert alert_named(body, "disk_usage_high")["acked_by"] == "token"
                assert alert_named(body, "pg_connections_high")["silenced_until"] is not None
                assert [s["comment"] for s in body["silences"]] == ["db maintenance"]
                await asyncio.sleep(scaled(1))
                names = [a["labels"]["alertname"] for r in hook.received for a in r.body["alerts"]]
                assert names == ["disk_usage_high"]  # the silenced one was never sent
                # the silence ends: the still-firing alert is sent now
                r = await http.delete(f"{gw2.url}/operator/system/silences/{sid}", headers=OP)
                assert r.status_code == 200
                await hook.wait_for(lambda got: len(got) == 2, scaled(8))
                assert hook.received[1].body["alerts"][0]["labels"]["alertname"] == "pg_connections_high"
                # resolve: the ack goes with the alert
                await publish_disk(mosquitto, 20.0)
                body = await until_alerts(http, gw2, lambda b: not alert_named(b, "disk_usage_high"))
                assert body["recent"][0]["fingerprint"] == fp and body["recent"][0]["status"] == "resolved"
                await wait_until(lambda: len(hook.received) == 3, 8)
