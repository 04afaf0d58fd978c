"""The WebSocket protocol against a real gateway, a real broker and real clients."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import eventually
from tests.gateway.client import Mirror, close_code, recv
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim
from tests.support.servers import Mosquitto


def ws_url(gw, query: str = "") -> str:  # type: ignore[no-untyped-def]
    return f"ws://127.0.0.1:{gw.port}/operator/system/live{query}"


async def test_join_gets_meta_and_snapshot_then_patches(make_gateway: GatewayFactory,
                                                        publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=5)
    await published(gw, publisher, sim)
    async with connect(ws_url(gw)) as ws:
        meta = await recv(ws)
        assert meta == {"type": "meta", "stale": False, "age_s": meta["age_s"], "gateway": "gw-0"}
        snap = await recv(ws)
        assert snap["type"] == "snapshot" and snap["seq"] == 0 and snap["state"] == sim.client_state()
        mirror = Mirror()
        mirror.feed(snap)
        for _ in range(5):
            p = sim.step()
            await publisher.patch(p)
            msg = await recv(ws, "patch")
            assert (msg["seq"], msg["base"], msg["ts"]) == (p["seq"], p["base"], p["ts"])
            mirror.feed(msg)
            assert mirror.state == sim.client_state()


async def test_sections_from_hello_and_query(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=6)
    await published(gw, publisher, sim)
    async with connect(ws_url(gw, "?sections=health")) as ws:
        snap = await recv(ws, "snapshot")
        assert set(snap["state"]) == {"health", "meta"}
        await ws.send(json.dumps({"type": "hello", "sections": ["metrics", "series"]}))
        snap = await recv(ws, "snapshot")
        assert set(snap["state"]) == {"metrics", "series", "meta"}
        assert snap["state"]["series"] == sim.state()["series"]
        p = sim.step()
        await publisher.patch(p)
        msg = await recv(ws, "patch")
        assert set(msg["patch"]) <= {"metrics", "meta"} and msg["append"] == p["append"]
        await ws.send(json.dumps({"type": "hello", "sections": ["health"]}))
        await recv(ws, "snapshot")
        await publisher.patch(sim.step())
        assert (await recv(ws, "patch"))["append"] == {}


async def test_resync_sends_a_fresh_snapshot(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim()
    await published(gw, publisher, sim)
    async with connect(ws_url(gw)) as ws:
        await recv(ws, "snapshot")
        await publisher.patch(sim.step())
        await recv(ws, "patch")
        await ws.send(json.dumps({"type": "resync"}))
        snap = await recv(ws, "snapshot")
        assert snap["seq"] == 1 and snap["state"] == sim.client_state()


async def test_gap_on_the_bus_resyncs_clients_at_the_next_snapshot(
        make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim()
    await published(gw, publisher, sim)
    async with connect(ws_url(gw)) as ws:
        await recv(ws, "snapshot")
        sim.step()  # never published
        await publisher.patch(sim.step())
        await publisher.snapshot(sim)
        snap = await recv(ws, "snapshot")  # the gapped patch is never forwarded
        assert snap["seq"] == 2 and snap["state"] == sim.client_state()
        assert gw.store.counts["gap"] == 1


async def test_no_view_yet_then_snapshot_arrives(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    async with connect(ws_url(gw)) as ws:
        meta = await recv(ws)
        assert meta["type"] == "meta" and meta["stale"] is True and meta["age_s"] is None
        sim = ViewSim()
        await publisher.snapshot(sim)
        snap = await recv(ws, "snapshot")
        assert snap["state"] == sim.client_state()
        fresh = await recv(ws, "meta")
        assert fresh["stale"] is False


async def test_stale_view_is_announced_and_healthz_degraded(make_gateway: GatewayFactory,
                                                            publisher: Publisher) -> None:
    gw = await make_gateway(stale_after_s=0.6, meta_every_s=0.5)
    sim = ViewSim()
    await published(gw, publisher, sim)
    async with connect(ws_url(gw)) as ws, httpx.AsyncClient() as http:
        assert (await recv(ws))["stale"] is False
        h = (await http.get(f"{gw.url}/healthz")).json()
        assert h["status"] == "ok" and h["view"]["seq"] == 0
        stale = await recv(ws, "meta")  # the aggregator is silent
        assert stale["stale"] is True and stale["age_s"] >= 0.6
        again = await recv(ws, "meta")  # repeated while stale, with a growing age
        assert again["stale"] is True and again["age_s"] > stale["age_s"]
        h = (await http.get(f"{gw.url}/healthz")).json()
        assert h["status"] == "degraded" and h["view"]["stale"] is True
        assert any("old" in r for r in h["reasons"])
        r = await http.get(f"{gw.url}/operator/system/health")
        assert r.status_code == 200 and r.headers["X-Opsdash-Stale"] == "true"
        await publisher.patch(sim.step())
        await recv(ws, "patch")
        assert (await recv(ws, "meta"))["stale"] is False


async def test_broker_restart_reconnects(make_gateway: GatewayFactory, mosquitto: Mosquitto) -> None:
    import aiomqtt

    gw = await make_gateway(stale_after_s=30)
    async with connect(ws_url(gw)) as ws:
        await recv(ws, "meta")
        await eventually(lambda: gw.mqtt_connected, what="connected")
        mosquitto.kill()
        meta = await recv(ws, "meta")
        assert meta["stale"] is True  # broker gone: stale at once, not after stale_after_s
        mosquitto.start()
        await eventually(lambda: gw.mqtt_connected, timeout=10, what="reconnected")
        sim = ViewSim(seed=9)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            await Publisher(c).snapshot(sim)
            snap = await recv(ws, "snapshot", timeout=10)
        assert snap["state"] == sim.client_state()
        assert gw.counters.mqtt_connects_total >= 2


async def test_foreign_origin_is_refused_before_any_frame(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(allowed_origins=["https://ops.example"])
    with pytest.raises(InvalidStatus) as err:
        async with connect(ws_url(gw), origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert err.value.response.status_code == 403
    assert json.loads(err.value.response.body)["error"] == "forbidden_origin"
    async with connect(ws_url(gw), origin="https://ops.example") as ws:  # type: ignore[arg-type]
        assert (await recv(ws))["type"] == "meta"


async def test_same_host_origin_is_the_default(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    async with connect(ws_url(gw), origin=f"http://127.0.0.1:{gw.port}") as ws:  # type: ignore[arg-type]
        assert (await recv(ws))["type"] == "meta"
    with pytest.raises(InvalidStatus) as err:
        async with connect(ws_url(gw), origin="http://127.0.0.1:1"):  # type: ignore[arg-type]
            pass
    assert err.value.response.status_code == 403


async def test_too_big_message_closes_1009(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_message_bytes=1024)
    async with connect(ws_url(gw)) as ws:
        await ws.send("x" * 5000)
        assert await close_code(ws) == 1009


async def test_bad_message_closes_1008_with_an_error_frame(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    async with connect(ws_url(gw)) as ws:
        await recv(ws, "meta")
        await ws.send('{"type": "subscribe"}')
        err = await recv(ws, "error")
        assert err["code"] == "bad_request" and "subscribe" in err["message"]
        assert await close_code(ws) == 1008
    async with connect(ws_url(gw)) as ws:
        await ws.send("not json")
        assert await close_code(ws) == 1008


async def test_message_flood_closes_4429(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(client_msg_rate=1, client_msg_burst=3)
    async with connect(ws_url(gw)) as ws:
        for _ in range(6):
            await ws.send('{"type": "resync"}')
        assert await close_code(ws) == 4429


async def test_connections_per_address_and_handshake_rate(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_connections_per_address=3)
    conns = [await connect(ws_url(gw)) for _ in range(3)]
    try:
        await eventually(lambda: len(gw.clients) == 3, what="3 clients")
        with pytest.raises(InvalidStatus) as err:
            await connect(ws_url(gw))
        assert err.value.response.status_code == 429
    finally:
        for c in conns:
            await c.close()
    gw2 = await make_gateway(handshake_rate=1, handshake_burst=5)
    async with httpx.AsyncClient() as http:
        codes = [(await http.get(f"{gw2.url}/healthz")).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and 429 in codes[5:]


async def test_auth_none_refuses_a_public_address() -> None:
    from gateway.config import GatewayConfig
    from gateway.server import Gateway, GatewayStartError
    from telemetry_bus.config import MqttConfig

    with pytest.raises(GatewayStartError, match="loopback"):
        Gateway(GatewayConfig(listen="0.0.0.0:0"), MqttConfig())
    Gateway(GatewayConfig(listen="[::1]:0"), MqttConfig())  # loopback is fine
