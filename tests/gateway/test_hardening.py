"""Issue 17 and the gateway parts of issue 10, each against a real gateway: decoding limits, the one
protocol-error type, Host and security headers, counters from 0, supervised background tasks, and
the self-report's view age."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from gateway.server import REFUSAL_REASONS, Gateway
from opsdash.wiring import _report_gateway
from tests.conftest import eventually
from tests.gateway.client import close_code, recv
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim
from tests.gateway.test_http import raw_request, status_of
from tests.gateway.test_live import ws_url

# About a thousand levels (2 KB, under the 4 KB message limit) exceed the default recursion limit;
# deeper when something (Hypothesis) raised the limit in this process.
_LEVELS = max(1000, sys.getrecursionlimit() + 100)
DEEP = "[" * _LEVELS + "]" * _LEVELS
_FRAME_LIMIT = max(4096, 2 * _LEVELS + 256)


async def test_deeply_nested_frame_is_a_counted_bad_request(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_message_bytes=_FRAME_LIMIT)
    for frame in (DEEP, '{"type": "hello", "sections": ' + DEEP + "}"):
        async with connect(ws_url(gw)) as ws:
            await recv(ws, "meta")
            await ws.send(frame)
            err = await recv(ws, "error")
            assert err["code"] == "bad_request" and "deep" in err["message"]
            assert await close_code(ws) == 1008
    assert gw.counters.refused["bad_message"] == 2


async def test_a_bug_in_a_message_handler_is_not_the_clients_fault(make_gateway: GatewayFactory,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    gw = await make_gateway()

    async def buggy(client: Any, msg: dict[str, Any]) -> None:
        raise ValueError("a bug, not bad input")

    gw.on_message("buggy", buggy)
    async with connect(ws_url(gw)) as ws:
        await recv(ws, "meta")
        await ws.send('{"type": "buggy"}')
        assert await close_code(ws) == 1011  # internal error, not 1008 bad_request
    assert gw.counters.refused["bad_message"] == 0
    with pytest.raises(ValueError, match="already"):
        gw.on_message("hello", buggy)


async def test_too_big_messages_are_counted(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_message_bytes=1024)
    async with connect(ws_url(gw)) as ws:
        await ws.send("x" * 5000)
        assert await close_code(ws) == 1009
    await eventually(lambda: gw.counters.refused["message_too_big"] == 1, what="1009 counted")


async def test_undecodable_view_from_the_bus_is_counted(make_gateway: GatewayFactory,
                                                        publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=5)
    await published(gw, publisher, sim)
    await publisher.client.publish("$ops/v1/view/snapshot", ('{"seq": 99, "state": ' + DEEP + "}").encode())
    await eventually(lambda: gw.counters.bad_messages_total == 1, what="bad view counted")
    assert gw.store.seq == sim.seq and gw.counters.feed_errors_total == 0


async def test_host_header_allow_list(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    for host in ("evil.example", "evil.example:80", "127.0.0.2", "localhost.evil.example"):
        head = f"GET /operator/system/health HTTP/1.1\nHost: {host}\n"
        data = await raw_request(gw.port, head)
        assert status_of(data) == 421, host
        # the WebSocket with a matching Origin (the DNS-rebinding case) is refused as well
        data = await raw_request(gw.port, f"GET /operator/system/live HTTP/1.1\nHost: {host}\n"
                                 f"Origin: http://{host}\nUpgrade: websocket\nConnection: Upgrade\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n")
        assert status_of(data) == 421, host
    for host in (f"127.0.0.1:{gw.port}", f"localhost:{gw.port}", "LOCALHOST", f"[::1]:{gw.port}"):
        data = await raw_request(gw.port, f"GET /healthz HTTP/1.1\nHost: {host}\n")
        assert status_of(data) == 200, host
    assert status_of(await raw_request(gw.port, "GET /healthz HTTP/1.1\n")) == 400  # no Host
    assert gw.counters.refused["host"] == 9
    gw2 = await make_gateway(allowed_hosts=["dash.example.com"])
    ok = await raw_request(gw2.port, "GET /healthz HTTP/1.1\nHost: dash.example.com:443\n")
    assert status_of(ok) == 200
    assert status_of(await raw_request(gw2.port, f"GET /healthz HTTP/1.1\nHost: 127.0.0.1:{gw2.port}\n")) == 421


async def test_security_headers(make_gateway: GatewayFactory, tmp_path: Any) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>x</title>")
    gw = await make_gateway(static_dir=str(dist))
    async with httpx.AsyncClient(base_url=gw.url) as http:
        page = await http.get("/history")
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        for path in ("/", "/healthz", "/operator/system/health", "/metrics", "/nope", "/openapi.json"):
            r = await http.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["referrer-policy"] == "no-referrer", path
        assert "content-security-policy" not in (await http.get("/healthz")).headers


async def test_refusal_counters_start_at_zero(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    async with httpx.AsyncClient(base_url=gw.url) as http:
        text = (await http.get("/metrics")).text
    for reason in REFUSAL_REASONS:
        assert f'opsdash_gateway_refused_total{{reason="{reason}"}} 0' in text
    assert "opsdash_gateway_broker_connects_total " in text
    assert 'opsdash_gateway_task_restarts_total{task="mqtt"} 0' in text


async def test_a_dying_mqtt_task_is_restarted(make_gateway: GatewayFactory, publisher: Publisher,
                                              caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.ERROR, "opsdash.gateway")
    gw = await make_gateway()
    await eventually(lambda: gw.mqtt_connected, what="connected")
    sim = ViewSim(seed=6)
    await published(gw, publisher, sim)
    # 1. the task is cancelled from inside the process (not by stop())
    first = gw.tasks["mqtt"]
    first.cancel()
    await eventually(lambda: gw.tasks["mqtt"] is not first and gw.counters.mqtt_connects_total == 2,
                     what="a new MQTT task, connected again")
    assert gw.counters.task_restarts["mqtt"] == 1
    # 2. a bug: the session raises something that is not a broker outage; the loop ends with it
    original = gw._mqtt_session
    calls = 0

    async def buggy_session(backoff: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise SystemError("a bug inside the MQTT task")
        await original(backoff)

    monkeypatch.setattr(gw, "_mqtt_session", buggy_session)
    gw.tasks["mqtt"].cancel()
    await eventually(lambda: gw.counters.mqtt_connects_total == 3, what="connected a third time")
    assert gw.counters.task_restarts["mqtt"] == 3 and calls == 2
    died = [r for r in caplog.records if "gateway-mqtt" in r.getMessage()]
    assert any(r.exc_info and "a bug inside" in str(r.exc_info[1]) for r in died), died
    sim.step()
    await published(gw, publisher, sim)  # and the view moves again


async def test_a_task_that_keeps_dying_stops_the_gateway(make_gateway: GatewayFactory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.server as server

    monkeypatch.setattr(server, "_RESTART_PAUSE_S", 0.01)
    gw = await make_gateway()

    async def broken() -> None:
        raise RuntimeError("cannot run")

    await eventually(lambda: "housekeeping" in gw.tasks, what="housekeeping running")
    monkeypatch.setattr(gw, "_housekeeping", broken)
    gw.tasks["housekeeping"].cancel()
    async with asyncio.timeout(10):
        await gw.wait_closed()  # the server closed by itself
    assert isinstance(gw.failure, RuntimeError) and "housekeeping" in str(gw.failure)


class FakeReporter:
    interval_s = 0.01

    def __init__(self) -> None:
        self.gauges: dict[str, float] = {}
        self.health: tuple[str, ...] = ()

    def inc(self, name: str, n: int) -> None:
        pass

    def set_gauge(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def set_health(self, *args: str) -> None:
        self.health = args


async def test_self_report_view_age_uses_the_monotonic_clock(make_gateway: GatewayFactory,
                                                             publisher: Publisher) -> None:
    gw: Gateway = await make_gateway()
    rep = FakeReporter()
    task = asyncio.create_task(_report_gateway(gw, rep))
    await eventually(lambda: "clients_connected" in rep.gauges, what="a report")
    assert "view_age_s" not in rep.gauges  # unknown before the first view: not a 0
    await published(gw, publisher, ViewSim(seed=7))
    await eventually(lambda: "view_age_s" in rep.gauges, what="view age reported")
    task.cancel()
    assert 0 <= rep.gauges["view_age_s"] < 5  # was about 1.8e9: wall clock minus a monotonic stamp


async def test_live_url_parameters_are_refused_before_the_upgrade(make_gateway: GatewayFactory) -> None:
    from websockets.exceptions import InvalidStatus

    gw = await make_gateway()
    for query, param in (("?sections=", "sections"), ("?sections=a,,b", "sections"),
                         ("?sections=Health", "sections"), ("?token=x", "token"),
                         ("?sections=health&sections=meta", "sections")):
        with pytest.raises(InvalidStatus) as err:
            async with connect(ws_url(gw, query)):
                pass
        assert err.value.response.status_code == 400, query
        assert f'"parameter":"{param}"' in err.value.response.body.decode(), query
    async with connect(ws_url(gw, "?sections=health,metrics")) as ws:
        snap = await recv(ws, "snapshot") if gw.store.state is not None else await recv(ws, "meta")
        assert snap["type"] in ("snapshot", "meta")
    assert gw.counters.refused["bad_query"] == 5


async def test_the_mqtt_loop_fails_over_to_the_next_broker(mosquitto: Any, tmp_path: Any) -> None:
    from gateway.config import GatewayConfig
    from telemetry_bus.config import MqttConfig
    from tests.support.servers import free_port

    dead = free_port()
    gw = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path), backoff_initial_s=0.05,
                               backoff_max_s=0.2),
                 MqttConfig(url=f"mqtt://127.0.0.1:{dead},127.0.0.1:{mosquitto.port}"))
    async with gw:
        await eventually(lambda: gw.mqtt_connected, what="connected to the second broker")
        health = gw.health(gw.mono_clock())
        assert health["mqtt"]["broker"] == f"127.0.0.1:{mosquitto.port}"
        assert health["mqtt"]["failovers"] >= 1
