"""The compose mosquitto's credentials and ACL, against a real private mosquitto started with them.

The broker runs with deploy/mosquitto/mosquitto.conf (paths rewritten to a temporary directory), the
ACL file deploy/mosquitto/acl and a password file written by deploy/mosquitto/make-passwd.sh, exactly
as the compose container does. On MQTT 3.1.1 a denied publish is PUBACKed and dropped, so "delivers
nothing" is checked with a sentinel: every publish is awaited (QoS 1, PUBACKed, so the broker has routed
it) before the next one, and a watcher that receives the final, allowed sentinel message has also
received everything routed to it before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.support.servers import ROOT, Mosquitto, scaled

DEPLOY = ROOT / "deploy" / "mosquitto"
PASSWORDS = {
    "MQTT_PASSWORD_AGGREGATOR": ("opsdash-aggregator", "agg-secret"),
    "MQTT_PASSWORD_PROBES": ("opsdash-probes", "probe-secret"),
    "MQTT_PASSWORD_GATEWAY": ("opsdash-gateway", "gw-secret"),
    "MQTT_PASSWORD_ADMIN": ("opsdash-admin", "admin-secret"),
    "MQTT_PASSWORD_NOTIFIER": ("opsdash-notifier", "notifier-secret"),
    "MQTT_PASSWORD_INGEST": ("ingest", "ingest-secret"),
    "MQTT_PASSWORD_DELIVERY": ("delivery", "delivery-secret"),
}
USERS = {**dict(PASSWORDS.values()), "billing": "billing-secret"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = tmp_path / "passwd"
    env = {**os.environ, **{var: pw for var, (_, pw) in PASSWORDS.items()},
           "MQTT_EXTRA_USERS": "billing:billing-secret"}
    subprocess.run(["sh", str(DEPLOY / "make-passwd.sh"), str(passwd)], env=env, check=True)
    conf = (DEPLOY / "mosquitto.conf").read_text()
    assert "/mosquitto/run/passwd" in conf and "/mosquitto/config/acl" in conf
    conf = (conf.replace("/mosquitto/run/passwd", str(passwd))
            .replace("/mosquitto/config/acl", str(DEPLOY / "acl")))
    base = tmp_path / "compose-mosquitto.conf"
    base.write_text(conf)
    # As root, mosquitto drops to the user "mosquitto", which cannot read our 0600 password file in a
    # 0700 temporary directory (the container's entrypoint chowns it instead).
    extra = "allow_anonymous false\n" + ("user root" if os.geteuid() == 0 else "")
    broker = Mosquitto(tmp_path / "broker", base_conf=base, extra_conf=extra).start()
    yield broker
    broker.stop()


def client(broker: Mosquitto, user: str | None, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, username=user,
                          password=password if password is not None else USERS.get(user or ""),
                          identifier=f"{user}-{uuid.uuid4().hex[:6]}", timeout=scaled(5))


class Watcher:
    """A subscriber that records what it receives, for as long as the test needs."""

    def __init__(self, c: aiomqtt.Client) -> None:
        self.client = c
        self.got: list[str] = []
        self._new = asyncio.Event()

    async def run(self) -> None:
        async for msg in self.client.messages:
            self.got.append(str(msg.topic))
            self._new.set()

    async def until(self, topic: str) -> list[str]:
        async with asyncio.timeout(scaled(5)):
            while topic not in self.got:
                self._new.clear()
                await self._new.wait()
        return list(self.got)


async def watch(stack: list[aiomqtt.Client], tasks: list[asyncio.Task[None]], broker: Mosquitto,
                user: str, filters: list[str]) -> Watcher:
    c = client(broker, user)
    await c.__aenter__()
    stack.append(c)
    for f in filters:
        await c.subscribe(f, qos=1)
    w = Watcher(c)
    tasks.append(asyncio.create_task(w.run()))
    return w


@pytest.fixture
async def ctx() -> AsyncIterator[tuple[list[aiomqtt.Client], list[asyncio.Task[None]]]]:
    stack: list[aiomqtt.Client] = []
    tasks: list[asyncio.Task[None]] = []
    yield stack, tasks
    for t in tasks:
        t.cancel()
    for c in reversed(stack):
        with contextlib.suppress(aiomqtt.MqttError):
            await c.__aexit__(None, None, None)


async def publish_all(broker: Mosquitto, user: str, topics: list[str]) -> None:
    async with client(broker, user) as c:
        for t in topics:
            await c.publish(t, b"{}", qos=1)


async def test_unknown_or_anonymous_clients_are_refused(acl_broker: Mosquitto) -> None:
    for user, password in [(None, None), ("ingest", "wrong"), ("nobody", "x")]:
        with pytest.raises(aiomqtt.MqttError):
            async with client(acl_broker, user, password or ""):
                pass


async def test_a_service_writes_only_its_own_subtree(acl_broker: Mosquitto, ctx) -> None:  # type: ignore[no-untyped-def]
    admin = await watch(*ctx, acl_broker, "opsdash-admin", ["$ops/#"])
    denied = [
        "$ops/v1/svc/delivery/delivery-1/metrics",   # another service's subtree
        "$ops/v1/svc/ingestx/i-1/metrics",           # a prefix of its name is not its name
        "$ops/v1/view/snapshot",                     # only the aggregator writes the view
        "$ops/v1/probe/postgres",                    # only the probes write probe results
        "$ops/v2/svc/ingest/i-1/metrics",            # outside v1
        "ingest/plain",                              # outside $ops altogether
    ]
    allowed = ["$ops/v1/svc/ingest/ingest-1/status", "$ops/v1/svc/ingest/ingest-1/events"]
    sentinel = "$ops/v1/svc/ingest/ingest-1/metrics"
    await publish_all(acl_broker, "ingest", [*denied, *allowed, sentinel])
    got = await admin.until(sentinel)
    assert got == [*allowed, sentinel]

    # A further platform service added with MQTT_EXTRA_USERS gets the same rule for its own name.
    await publish_all(acl_broker, "billing",
                      ["$ops/v1/svc/ingest/x/metrics", "$ops/v1/svc/billing/b-1/metrics"])
    got = await admin.until("$ops/v1/svc/billing/b-1/metrics")
    assert got[-1] == "$ops/v1/svc/billing/b-1/metrics"
    assert got.count("$ops/v1/svc/ingest/x/metrics") == 0


async def test_aggregator_reads_the_bus_and_writes_only_the_view(acl_broker: Mosquitto, ctx) -> None:  # type: ignore[no-untyped-def]
    agg = await watch(*ctx, acl_broker, "opsdash-aggregator", ["$ops/v1/#"])
    admin = await watch(*ctx, acl_broker, "opsdash-admin", ["$ops/#"])
    await publish_all(acl_broker, "ingest", ["$ops/v1/svc/ingest/i-1/metrics"])
    await publish_all(acl_broker, "opsdash-probes", ["$ops/v1/probe/postgres"])
    assert await agg.until("$ops/v1/probe/postgres") == ["$ops/v1/svc/ingest/i-1/metrics",
                                                         "$ops/v1/probe/postgres"]
    await publish_all(acl_broker, "opsdash-aggregator", [
        "$ops/v1/svc/ingest/i-1/metrics",   # denied: not its own subtree
        "$ops/v1/probe/postgres",           # denied
        "$ops/v1/view/snapshot", "$ops/v1/view/patch",
        "$ops/v1/svc/opsdash-aggregator/agg-1/metrics",  # its own heartbeat (opsdash watches itself)
    ])
    got = await admin.until("$ops/v1/svc/opsdash-aggregator/agg-1/metrics")
    assert got == ["$ops/v1/svc/ingest/i-1/metrics", "$ops/v1/probe/postgres",
                   "$ops/v1/view/snapshot", "$ops/v1/view/patch",
                   "$ops/v1/svc/opsdash-aggregator/agg-1/metrics"]


async def test_gateways_read_the_view_and_events_only(acl_broker: Mosquitto, ctx) -> None:  # type: ignore[no-untyped-def]
    gw = await watch(*ctx, acl_broker, "opsdash-gateway", ["$ops/#"])
    admin = await watch(*ctx, acl_broker, "opsdash-admin", ["$ops/#"])
    await publish_all(acl_broker, "ingest", ["$ops/v1/svc/ingest/i-1/metrics", "$ops/v1/svc/ingest/i-1/events"])
    await publish_all(acl_broker, "opsdash-probes", ["$ops/v1/probe/mqtt"])
    await publish_all(acl_broker, "opsdash-gateway", ["$ops/v1/view/patch",  # denied: gateways only read
                                                      "$ops/v1/svc/opsdash-gateway/gw-1/metrics"])
    await publish_all(acl_broker, "opsdash-aggregator", ["$ops/v1/view/snapshot"])
    # the view, the services' events (live tail) and its own subtree (for `opsdash healthcheck`)
    assert await gw.until("$ops/v1/view/snapshot") == ["$ops/v1/svc/ingest/i-1/events",
                                                       "$ops/v1/svc/opsdash-gateway/gw-1/metrics",
                                                       "$ops/v1/view/snapshot"]
    assert await admin.until("$ops/v1/view/snapshot") == [
        "$ops/v1/svc/ingest/i-1/metrics", "$ops/v1/svc/ingest/i-1/events", "$ops/v1/probe/mqtt",
        "$ops/v1/svc/opsdash-gateway/gw-1/metrics", "$ops/v1/view/snapshot"]


async def test_probes_write_probe_results_and_read_sys(acl_broker: Mosquitto, ctx) -> None:  # type: ignore[no-untyped-def]
    probes = await watch(*ctx, acl_broker, "opsdash-probes", ["$SYS/broker/uptime", "$ops/#"])
    admin = await watch(*ctx, acl_broker, "opsdash-admin", ["$ops/#"])
    canary = "$ops/probe-canary/opsdash-probes-1"
    await publish_all(acl_broker, "ingest", ["$ops/v1/svc/ingest/i-1/metrics"])
    await publish_all(acl_broker, "opsdash-probes", ["$ops/v1/view/snapshot",  # denied
                                                     "$ops/v1/svc/ingest/i-1/metrics",  # denied
                                                     "$ops/v1/probe/mqtt", canary])
    assert await admin.until(canary) == ["$ops/v1/svc/ingest/i-1/metrics", "$ops/v1/probe/mqtt", canary]
    # it reads its canary echo back, but not the services' metrics or its own probe results
    assert [t for t in await probes.until(canary) if t.startswith("$ops")] == [canary]
    await probes.until("$SYS/broker/uptime")  # $SYS is published every sys_interval (2 s)


async def test_alerts_topics_aggregator_gateway_and_notifier(acl_broker: Mosquitto, ctx) -> None:  # type: ignore[no-untyped-def]
    """Alerts (docs/alerts.md): the aggregator writes alerts and alertstate, gateways only acks and
    silences, the notifier alerts (view_stale) and its markers; a platform service none of it."""
    notifier = await watch(*ctx, acl_broker, "opsdash-notifier",
                           ["$ops/v1/alerts/#", "$ops/v1/alertstate/notified/#", "$ops/v1/view/#"])
    admin = await watch(*ctx, acl_broker, "opsdash-admin", ["$ops/#"])
    await publish_all(acl_broker, "ingest", ["$ops/v1/alerts/f0", "$ops/v1/alertstate/ack/f0"])  # denied
    await publish_all(acl_broker, "opsdash-gateway", [
        "$ops/v1/alerts/f1",                   # denied: gateways do not raise alerts
        "$ops/v1/alertstate/notified/f1",      # denied
        "$ops/v1/alertstate/ack/f1", "$ops/v1/alertstate/silence/s1"])
    await publish_all(acl_broker, "opsdash-aggregator", ["$ops/v1/alerts/f2", "$ops/v1/alertstate/recent"])
    await publish_all(acl_broker, "opsdash-notifier", [
        "$ops/v1/view/patch",                  # denied: reads the view only
        "$ops/v1/alertstate/ack/f3",           # denied
        "$ops/v1/alerts/f3", "$ops/v1/alertstate/notified/f3"])
    assert await notifier.until("$ops/v1/alertstate/notified/f3") == [
        "$ops/v1/alerts/f2", "$ops/v1/alerts/f3", "$ops/v1/alertstate/notified/f3"]
    assert await admin.until("$ops/v1/alertstate/notified/f3") == [
        "$ops/v1/alertstate/ack/f1", "$ops/v1/alertstate/silence/s1", "$ops/v1/alerts/f2",
        "$ops/v1/alertstate/recent", "$ops/v1/alerts/f3", "$ops/v1/alertstate/notified/f3"]
