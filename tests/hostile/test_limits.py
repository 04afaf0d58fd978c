"""Oversized input, a connection flood, foreign Origins and cross-service publishes.

Already covered elsewhere (not repeated here):
- MQTT payload over 256 KiB -> quarantined: tests/bus/test_bus_e2e.py::
  test_bad_input_from_mosquitto_pub_is_quarantined_and_counted (a 400 kB metrics payload).
- WebSocket message over max_message_bytes -> close 1009: tests/gateway/test_live.py::
  test_too_big_message_closes_1009 (and the fuzz in test_fuzz.py sends 4-9 kB messages: 1009 each time).
- Foreign Origin -> 403 before any frame: tests/gateway/test_live.py::
  test_foreign_origin_is_refused_before_any_frame and test_same_host_origin_is_the_default.
- A service publishing into another service's subtree under the deploy ACLs -> nothing delivered to
  a subscriber of $ops/#: tests/deploy/test_mosquitto_acl.py::test_a_service_writes_only_its_own_subtree.

Added here: a payload over the broker's message_size_limit is refused by mosquitto and never reaches the
aggregator; the per-address connection limit under a flood leaves other addresses unaffected; the ACL
case end to end, with the real aggregator logged in as opsdash-aggregator under the deploy ACLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import aiomqtt
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gateway.config import GatewayConfig
from gateway.server import LIVE_PATH, Gateway
from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import encode, topics
from tests.conftest import eventually
from tests.deploy.test_mosquitto_acl import USERS, acl_broker
from tests.faults.conftest import StartAggregator
from tests.faults.helpers import strict_loads
from tests.support.servers import DEPLOY_CONF, Mosquitto, scaled

__all__ = ["acl_broker"]  # the deploy ACL broker fixture, reused


def _metrics(seq: int, n: int = 1) -> bytes:
    return encode({"boot": "b", "seq": seq, "counters": {"messages_received": n}})


async def test_payload_over_the_brokers_message_size_limit_is_refused(
        mosquitto: Mosquitto, start_aggregator: StartAggregator) -> None:
    m = re.search(r"^message_size_limit\s+(\d+)", DEPLOY_CONF.read_text(), re.M)
    assert m is not None
    limit = int(m.group(1))
    agg, _ = await start_aggregator("size-agg")
    topic = topics.metrics("$ops", "ingest", "big-1")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
        await c.publish(topic, _metrics(1), qos=1)
    await eventually(lambda: "big-1" in agg.fold.services["ingest"].instances, 5, what="first folded")
    huge = b'{"boot": "b", "seq": 2, "detail": "' + b"x" * limit + b'"}'
    refused: str
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, timeout=scaled(10)) as c:
            await c.publish(topic, huge, qos=1)
            refused = "acked and dropped"
    except aiomqtt.MqttError as exc:
        refused = f"client disconnected ({exc})"
    # a sentinel behind it: once it is folded, anything the broker had routed would have been too
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
        await c.publish(topic, _metrics(3, 5), qos=1)
    await eventually(lambda: agg.fold.services["ingest"].instances["big-1"].last_seq == 3, 10,
                     what="sentinel folded")
    inst = agg.fold.services["ingest"].instances["big-1"]
    assert agg.fold.quarantined == 0  # never reached the aggregator, so nothing to quarantine
    assert inst.missing_intervals == 1 and inst.totals["messages_received"] == 6
    print(f"\npayload of {len(huge):,} bytes > message_size_limit {limit:,}: refused by mosquitto "
          f"({refused}); the aggregator received nothing (quarantined 0, seq 2 missing)")


async def _ws(gw: Gateway, local: str) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{gw.port}{LIVE_PATH}", max_size=None, local_addr=(local, 0))


async def test_connection_flood_from_one_address_leaves_others_unaffected(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    # limit 3 per address and 429 past it: tests/gateway/test_live.py; here, a flood of 200 attempts
    # from 127.0.0.2 while a client on 127.0.0.3 keeps receiving and new ones from 127.0.0.4 get in.
    gw = Gateway(GatewayConfig(listen="127.0.0.1:0", id="gw-flood", static_dir=str(tmp_path),
                               max_connections_per_address=8, handshake_rate=20, handshake_burst=50),
                 MqttConfig(url=mosquitto.url))
    await gw.start()
    held: list[ClientConnection] = []
    try:
        bystander = await _ws(gw, "127.0.0.3")
        assert strict_loads(await bystander.recv())["type"] == "meta"
        statuses: dict[int | str, int] = {}

        async def attempt() -> None:
            try:
                held.append(await _ws(gw, "127.0.0.2"))
                statuses["open"] = statuses.get("open", 0) + 1
            except InvalidStatus as exc:
                code = exc.response.status_code
                statuses[code] = statuses.get(code, 0) + 1
                assert json.loads(exc.response.body)["error"] in ("too_many_connections", "rate_limited")

        await asyncio.gather(*(attempt() for _ in range(200)))
        assert statuses.get("open", 0) <= 8
        assert statuses.get(429, 0) >= 192
        assert sum(1 for c in gw.clients.values() if c.address == "127.0.0.2") <= 8
        # others unaffected: the bystander is still live, and a new address connects at once
        assert any(c.address == "127.0.0.3" and c.live for c in gw.clients.values())
        fresh = await _ws(gw, "127.0.0.4")
        assert strict_loads(await fresh.recv())["type"] == "meta"
        await fresh.close()
        async with httpx.AsyncClient() as http:
            refused = (await http.get(f"{gw.url}/healthz")).json()["refused"]
        print(f"\nconnection flood: 200 attempts from 127.0.0.2 -> {statuses} (limit 8 per address, "
              f"handshake burst 50); refused {refused}; a client on 127.0.0.3 stayed live, one from "
              f"127.0.0.4 connected")
        await bystander.close()
    finally:
        for c in held:
            with contextlib.suppress(Exception):
                await c.close()
        await gw.stop()


async def test_cross_service_publish_never_reaches_the_view(acl_broker: Mosquitto) -> None:
    url = f"mqtt://opsdash-aggregator:{USERS['opsdash-aggregator']}@{acl_broker.host}:{acl_broker.port}"
    config = load_config(env={"OPSDASH_MQTT_URL": url, "OPSDASH_AGGREGATOR__TICK_S": "0.25",
                              "OPSDASH_AGGREGATOR__ID": "acl-agg"})
    agg = build_aggregator(config)
    task = asyncio.create_task(agg.run())
    try:
        await asyncio.wait_for(agg.connected.wait(), scaled(10))
        async with aiomqtt.Client(acl_broker.host, acl_broker.port, username="ingest",
                                  password=USERS["ingest"]) as c:
            # into delivery's subtree, then its own: PUBACKed both (MQTT 3.1.1), the first dropped
            await c.publish(topics.metrics("$ops", "delivery", "delivery-1"), _metrics(1, 999), qos=1)
            await c.publish(topics.status("$ops", "delivery", "delivery-1"),
                            encode({"state": "online", "boot": "evil"}), qos=1, retain=True)
            await c.publish(topics.metrics("$ops", "ingest", "ingest-1"), _metrics(1, 7), qos=1)
        await eventually(lambda: "ingest-1" in agg.fold.services["ingest"].instances, 10,
                         what="own subtree folded")
        await eventually(lambda: agg.last is not None and "ingest-1" in agg.last.view["services"]["ingest"]
                         ["instances"], 5, what="in the view")
        assert agg.fold.services["delivery"].instances == {}
        assert agg.last is not None
        assert agg.last.view["services"]["delivery"]["instances"] == {}
        assert agg.last.view["services"]["ingest"]["instances"]["ingest-1"]["totals"] == {"messages_received": 7}
        assert agg.fold.quarantined == 0
    finally:
        await cancel_and_wait([task])
    print("\nACL: ingest publishing into delivery's subtree -> nothing delivered; the view shows no "
          "delivery instance, ingest's own message folded")
