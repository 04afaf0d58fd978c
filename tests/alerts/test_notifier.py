"""The notifier: the pure ledger, then end to end with a real broker, webhook receiver and Alertmanager."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alerts.bus import alert_topics, changes_out
from alerts.engine import Engine, compile_rules
from alerts.notifier import Ledger, Notifier, Receiver
from alerts.payloads import GO_ZERO_TIME, alertmanager_alert, generator_url, webhook_message
from alerts.receiver import WebhookReceiver
from opsdash.config import Config, load_config
from tests.alerts.support import Alertmanager
from tests.support.servers import Mosquitto, scaled

T0 = 1_764_236_400.0
HOOK = Receiver("webhook", "http://hook.example/h")
AM = Receiver("alertmanager", "http://am.example:9093")


def alert(fp: str = "f1", status: str = "firing", starts: float = T0, **kw: Any) -> dict[str, Any]:
    a = {"fingerprint": fp, "status": status, "labels": {"alertname": "component_down", "component": "postgres",
                                                        "severity": "critical"},
         "annotations": {"summary": "postgres is down"}, "value": "down", "starts_at": starts,
         "fired_at": starts + 30, "ends_at": None, "acked_by": None, "silenced_until": None,
         "inhibited_by": None}
    a.update(kw)
    return a


def ready_ledger(*receivers: Receiver) -> Ledger:
    led = Ledger(receivers or (HOOK,))
    assert led.reconcile(T0) == []
    return led


# -- the ledger (pure) ---------------------------------------------------------------------------


def test_one_firing_and_one_resolve_per_alert() -> None:
    led = ready_ledger(HOOK, AM)
    jobs = led.alert("f1", alert(), T0 + 30)
    assert sorted((j.rid, j.phase) for j in jobs) == sorted([(HOOK.id, "firing"), (AM.id, "firing")])
    assert led.alert("f1", alert(value="down again"), T0 + 31) == []  # republish: nothing new
    for j in jobs:
        assert led.done(j, T0 + 31) == []
    assert led.alert("f1", alert(), T0 + 45) == []
    res = led.alert("f1", alert(status="resolved", ends_at=T0 + 90), T0 + 90)
    assert sorted((j.rid, j.phase) for j in res) == sorted([(HOOK.id, "resolved"), (AM.id, "resolved")])
    assert all(j.payload["ends_at"] == T0 + 90 for j in res)
    assert led.alert("f1", None, T0 + 90) == []  # the clear after the resolved message
    for j in res:
        led.done(j, T0 + 91)
    assert "f1" not in led.marks and ("f1", None) in led.take_dirty()


def test_restart_mid_alert_sends_nothing_again() -> None:
    led = ready_ledger()
    [j] = led.alert("f1", alert(), T0 + 30)
    led.done(j, T0 + 31)
    [(fp, marker)] = led.take_dirty()
    # a new notifier: retained alert and marker come back, then the sync echo
    led2 = Ledger([HOOK])
    led2.load_mark(fp, json.loads(json.dumps(marker)))
    assert led2.alert("f1", alert(), T0 + 60) == []
    assert led2.reconcile(T0 + 61) == []


def test_resolve_missed_while_away_is_sent_at_start() -> None:
    led = ready_ledger()
    [j] = led.alert("f1", alert(), T0 + 30)
    led.done(j, T0 + 31)
    [(_, marker)] = led.take_dirty()
    led2 = Ledger([HOOK])
    led2.load_mark("f1", marker)  # no retained alert any more: it was resolved and cleared meanwhile
    [res] = led2.reconcile(T0 + 500)
    assert res.phase == "resolved" and res.payload["ends_at"] == T0 + 500


def test_never_sent_firing_resolves_silently() -> None:
    led = ready_ledger()
    assert led.alert("f1", alert(status="pending"), T0) == []
    assert led.alert("f1", None, T0 + 5) == []
    assert not led.marks


def test_inhibited_and_silenced_are_held_then_sent() -> None:
    led = ready_ledger()
    assert led.alert("f1", alert(inhibited_by=["postgres"]), T0 + 30) == []
    assert led.alert("f1", alert(silenced_until=T0 + 100), T0 + 31) == []
    assert led.recheck(T0 + 99) == []
    [j] = led.recheck(T0 + 100)
    assert j.phase == "firing"
    # inhibited then resolved without ever being sent: no resolve either
    led.alert("f2", alert("f2", inhibited_by=["mqtt"]), T0)
    assert led.alert("f2", alert("f2", status="resolved", ends_at=T0 + 9), T0 + 9) == []


def test_inhibited_alert_is_sent_when_its_root_recovers_and_it_still_fires() -> None:
    led = ready_ledger()
    assert led.alert("f1", alert(inhibited_by=["postgres"]), T0 + 30) == []
    assert led.alert("f1", alert(inhibited_by=["postgres"], value="down"), T0 + 45) == []
    [j] = led.alert("f1", alert(inhibited_by=None), T0 + 60)  # the root recovered; f1 still fires
    assert j.phase == "firing" and j.payload["inhibited_by"] is None
    led.done(j, T0 + 61)
    [r] = led.alert("f1", alert(status="resolved", ends_at=T0 + 90), T0 + 90)
    assert r.phase == "resolved"


def test_firing_still_in_flight_when_resolved_gets_its_resolve_after() -> None:
    led = ready_ledger()
    [j] = led.alert("f1", alert(), T0 + 30)
    assert led.alert("f1", alert(status="resolved", ends_at=T0 + 40), T0 + 40) == []
    [res] = led.done(j, T0 + 41)
    assert res.phase == "resolved"


def test_refused_receiver_is_not_retried_and_the_marker_ends() -> None:
    led = ready_ledger()
    [j] = led.alert("f1", alert(), T0 + 30)
    assert led.done(j, T0 + 31, error="HTTP 400: bad") == []
    assert led.marks["f1"].failed == {HOOK.id: "HTTP 400: bad"}
    assert led.alert("f1", alert(), T0 + 40) == []
    assert led.alert("f1", alert(status="resolved", ends_at=T0 + 50), T0 + 50) == []
    assert "f1" not in led.marks


def test_webhook_payload_shape() -> None:
    msg = webhook_message([alert()], "opsdash", "http://dash:8787")
    assert set(msg) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                        "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    assert msg["version"] == "4" and msg["status"] == "firing" and msg["groupLabels"] == {
        "alertname": "component_down"}
    [a] = msg["alerts"]
    assert set(a) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a["startsAt"] == "2025-11-27T09:40:30.000Z" and a["endsAt"] == GO_ZERO_TIME
    # the alerts page on this alert, the whole dashboard as it was when it fired (time travel)
    assert a["generatorURL"] == "http://dash:8787/alerts?fingerprint=f1&at=2025-11-27T09:40:30.000Z"
    assert alertmanager_alert(alert(), T0 + 60, 60.0, "http://dash:8787")["generatorURL"] == a["generatorURL"]


def test_generator_url_opens_the_moment_it_fired() -> None:
    # rounded up to the millisecond: the firing tick's view has generated_at to the millisecond, and
    # view?at= shows the last tick at or before the time (a truncated one would be the tick before)
    assert generator_url("http://dash:8787/", "f/1", 1764236430.0004) == (
        "http://dash:8787/alerts?fingerprint=f/1&at=2025-11-27T09:40:30.001Z")
    assert generator_url("http://dash:8787", "f1", 1764236430.25) == (
        "http://dash:8787/alerts?fingerprint=f1&at=2025-11-27T09:40:30.250Z")
    assert generator_url("http://dash:8787", "f1") == "http://dash:8787/alerts?fingerprint=f1"
    assert generator_url("http://dash:8787", "f1", math.nan) == "http://dash:8787/alerts?fingerprint=f1"


# -- end to end ------------------------------------------------------------------------------------


class Bus:
    """Publishes alerts as the aggregator does (retained, then resolved + clear), from a real engine."""

    def __init__(self, client: aiomqtt.Client, root: str = "$ops") -> None:
        self.client = client
        self.root = root
        self.engine = Engine({k: v for k, v in compile_rules(load_config(None, env={}).alerts).items()
                              if k == "component_down"})

    async def step(self, comps: dict[str, str], now: float) -> None:
        view = {"health": {"components": {c: {"status": s} for c, s in comps.items()}}}
        ev = self.engine.evaluate(view, now)
        for ch in ev.changes:
            for o in changes_out(self.root, ch):
                await self.client.publish(o.topic, o.payload, qos=1, retain=o.retain)


def config(broker: Mosquitto, hooks: list[str], ams: list[str] = ()) -> Config:  # type: ignore[assignment]
    return load_config(None, env={
        "OPSDASH_MQTT_URL": broker.url,
        "OPSDASH_ALERTS__WEBHOOK_URLS": json.dumps(hooks),
        "OPSDASH_ALERTS__ALERTMANAGER_URLS": json.dumps(list(ams)),
        "OPSDASH_ALERTS__RETRY_MIN_S": "0.1", "OPSDASH_ALERTS__RETRY_MAX_S": "0.5",
        "OPSDASH_ALERTS__ALERTMANAGER_RESEND_S": "2",
    })


class Running:
    def __init__(self, cfg: Config, client_id: str = "t1") -> None:
        self.notifier = Notifier(cfg, client_id=client_id)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Notifier:
        self.task = asyncio.create_task(self.notifier.run())
        async with asyncio.timeout(scaled(10)):
            await self.notifier.synced.wait()
        return self.notifier

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(quiet=True) as h:
        yield h


def phases(hook: WebhookReceiver, fp: str | None = None) -> list[str]:
    return [a["status"] for r in hook.received for a in r.body["alerts"]
            if fp is None or a["fingerprint"] == fp]


async def test_end_to_end_with_real_alertmanager_and_restart(mosquitto: Mosquitto, hook: WebhookReceiver,
                                                             tmp_path: Path) -> None:
    async with WebhookReceiver(quiet=True) as am_hook:
        am = Alertmanager(tmp_path / "am", am_hook.url).start()
        try:
            cfg = config(mosquitto, [hook.url], [am.url])
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
                bus = Bus(pub)
                async with Running(cfg):
                    await bus.step({"postgres": "down"}, T0)
                    await bus.step({"postgres": "down"}, T0 + 30)  # firing
                    await hook.wait_for(lambda got: len(got) >= 1, scaled(10))
                    [fp] = list(bus.engine.states)
                    body = hook.received[0].body
                    assert body["version"] == "4" and body["status"] == "firing"
                    assert body["alerts"][0]["labels"]["component"] == "postgres"
                    # Alertmanager has it, and routes it to its own webhook
                    await am_hook.wait_for(lambda got: len(got) >= 1, scaled(15))
                    [in_am] = [a for a in am.alerts() if a["labels"].get("alertname") == "component_down"]
                    assert in_am["labels"]["component"] == "postgres" and in_am["status"]["state"] == "active"
                # opsdash restarts mid-alert: no second firing
                async with Running(cfg, client_id="t2"):
                    await bus.step({"postgres": "down"}, T0 + 40)
                    await asyncio.sleep(scaled(1.5))
                    assert phases(hook, fp) == ["firing"]
                    # resolve: once
                    await bus.step({"postgres": "healthy"}, T0 + 50)
                    await bus.step({"postgres": "healthy"}, T0 + 80)
                    await hook.wait_for(lambda got: len(got) >= 2, scaled(10))
                    await asyncio.sleep(scaled(1))
                    assert phases(hook, fp) == ["firing", "resolved"]
                    res = hook.received[1].body["alerts"][0]
                    assert res["endsAt"] == "2025-11-27T09:41:20.000Z"
                    await am_hook.wait_for(lambda got: any(r.body["status"] == "resolved" for r in got),
                                           scaled(15))
                    assert not [a for a in am.alerts() if a["labels"].get("alertname") == "component_down"]
                    # the notified marker is cleared
                    await asyncio.sleep(scaled(0.5))
                async with Running(cfg, client_id="t3") as n3:
                    await asyncio.sleep(scaled(1))
                    assert n3.ledger.marks == {}
                assert phases(hook, fp) == ["firing", "resolved"]
        finally:
            am.stop()


async def test_down_receiver_gets_it_when_back_and_others_are_not_delayed(mosquitto: Mosquitto,
                                                                           hook: WebhookReceiver) -> None:
    down = WebhookReceiver(quiet=True)
    await down.start()
    port = down.port
    await down.stop()
    cfg = config(mosquitto, [f"http://127.0.0.1:{port}/hook", hook.url])
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
        bus = Bus(pub)
        async with Running(cfg) as n:
            await bus.step({"mqtt": "down"}, T0)
            await bus.step({"mqtt": "down"}, T0 + 30)
            await hook.wait_for(lambda got: len(got) == 1, scaled(5))
            await asyncio.sleep(scaled(1))
            st = next(s for r, s in zip(n.receivers, n.stats.values(), strict=True) if r.url.endswith(str(port)) or str(port) in r.url)
            assert st.retries >= 2 and st.sent == 0
            back = WebhookReceiver(port=port, quiet=True)
            await back.start()
            try:
                await back.wait_for(lambda got: len(got) == 1, scaled(5))
                assert phases(back) == ["firing"]
            finally:
                await back.stop()


async def test_refusing_receiver_is_reported_not_retried(mosquitto: Mosquitto, hook: WebhookReceiver) -> None:
    hook.status = 400
    cfg = config(mosquitto, [hook.url])
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
        bus = Bus(pub)
        async with Running(cfg) as n:
            await bus.step({"mqtt": "down"}, T0)
            await bus.step({"mqtt": "down"}, T0 + 30)
            [st] = n.stats.values()
            async with asyncio.timeout(scaled(5)):
                while st.refused == 0:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(scaled(1))
            assert st.refused == 1 and st.retries == 0 and "HTTP 400" in (st.last_error or "")


async def test_view_stale_is_raised_by_the_notifier(mosquitto: Mosquitto, hook: WebhookReceiver) -> None:
    cfg = load_config(None, env={"OPSDASH_MQTT_URL": mosquitto.url,
                                 "OPSDASH_ALERTS__WEBHOOK_URLS": json.dumps([hook.url]),
                                 "OPSDASH_ALERTS__RULES": '[{name = "view_stale", value = 1}]'})
    async with Running(cfg) as n, aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(alert_topics.alert("$ops", "+"), qos=1)
        await hook.wait_for(lambda got: len(got) >= 1, scaled(10))
        body = hook.received[0].body["alerts"][0]
        assert body["labels"]["alertname"] == "view_stale" and body["status"] == "firing"
        # views again: resolved after keep_firing_s
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as pub:
            for _ in range(int(scaled(40) / 0.5)):
                await pub.publish("$ops/v1/view/patch", b"{}", qos=0)
                await asyncio.sleep(0.5)
                if phases(hook) == ["firing", "resolved"]:
                    break
        assert phases(hook) == ["firing", "resolved"]
        assert n.stale.states == {}
