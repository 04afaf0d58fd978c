"""Known events in through the bus → GET /operator/system/events returns exactly them, and the live tail.

Real parts only: a private mosquitto, PostgreSQL, the recorder (history/recorder.py) writing what the
reporters publish, and a gateway on port 0 answering over HTTP and the WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from gateway.config import GatewayConfig
from gateway.server import Gateway
from history.recorder import RecorderService
from opsdash.config import Config, load_config
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import MqttConfig
from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.events.test_search import HOSTILE
from tests.support.servers import Mosquitto, scaled

SEV = ("debug", "info", "warning", "error", "critical")
KINDS = ("webhook_timeout", "parse_error", "log", "rate_limited")


@dataclass
class Env:
    config: Config
    gw: Gateway
    http: httpx.AsyncClient
    reporters: dict[tuple[str, str], Reporter]
    sent: list[dict[str, Any]]


@pytest.fixture
async def env(mosquitto: Mosquitto, database_url: str, tmp_path: Any) -> AsyncIterator[Env]:
    config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_HISTORY_URL": database_url})
    rec = RecorderService(config)
    rec_task = asyncio.create_task(rec.run())
    await asyncio.wait_for(rec.connected.wait(), scaled(10))
    gw = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path / "dist"), backoff_max_s=0.5,
                               display_tokens=["wall"]), MqttConfig(url=mosquitto.url), app_config=config)
    await gw.start()
    await eventually(lambda: gw.mqtt_connected, 10, what="gateway on the bus")
    reporters = {}
    for svc, inst in (("delivery", "delivery-1"), ("delivery", "delivery-2"), ("ingest", "ingest-1")):
        rep = Reporter(svc, inst, mqtt_url=mosquitto.url, interval_s=0.5)
        await rep.start()
        await rep.wait_connected()
        reporters[(svc, inst)] = rep
    async with httpx.AsyncClient(base_url=gw.url, timeout=scaled(10)) as http:
        yield Env(config, gw, http, reporters, [])
    for rep in reporters.values():
        await rep.stop()
    await gw.stop()
    await cancel_and_wait([rec_task])


MESSAGES = [
    "POST https://hooks.ACME.example/alerts timed out after 10 s",
    "Invalid JSON from dev-0042: Expecting ',' delimiter: line 1 column 73",
    "tenant globex over 500 msg/s: throttled",
    "garbage collection paused the worker for 412 ms",
    "InfluxDB write retried 3 times: 503 Service Unavailable",
]


def send_known(e: Env, n: int = 60) -> list[dict[str, Any]]:
    """``n`` events with distinct, known sender times (the last hour), through the reporters."""
    t0 = time.time() - 1800
    keys = list(e.reporters)
    out = []
    for k in range(n):
        svc, inst = keys[k % 3]
        ev = {"ts": round(t0 + k * 7.5, 3), "service": svc, "instance": inst, "type": KINDS[k % 4],
              "severity": SEV[(k * 3) % 5], "message": f"{MESSAGES[k % 5]} #{k}",
              "attrs": {"tenant": ("acme", "globex", "initech")[k % 3]}}
        e.reporters[(svc, inst)].event(ev["type"], ev["message"], severity=ev["severity"], attrs=ev["attrs"],
                                       ts=ev["ts"])
        out.append(ev)
    e.sent += out
    return out


async def get(e: Env, **params: Any) -> httpx.Response:
    return await e.http.get("/operator/system/events", params=params)


async def all_pages(e: Env, **params: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    before = None
    for _ in range(200):
        r = await get(e, **params, **({"before": before} if before else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"events", "next"}
        got += body["events"]
        before = body["next"]
        if before is None:
            return got
    raise AssertionError("more than 200 pages")


def expected(sent: list[dict[str, Any]], service: str | None = None, instance: str | None = None,
             severity: str | None = None, type_: str | None = None, words: tuple[str, ...] = (),
             start: float | None = None, end: float | None = None) -> list[tuple[float, str]]:
    sev = SEV[SEV.index(severity):] if severity else SEV
    keep = [s for s in sent if (service is None or s["service"] == service)
            and (instance is None or s["instance"] == instance) and s["severity"] in sev
            and (type_ is None or s["type"] == type_)
            and all(w in s["message"].lower() for w in words)
            and (start is None or s["ts"] >= start) and (end is None or s["ts"] <= end)]
    return [(s["ts"], s["message"]) for s in sorted(keep, key=lambda s: s["ts"], reverse=True)]


def shown(events: list[dict[str, Any]]) -> list[tuple[float, str]]:
    return [(round(x["ts"], 3), x["message"]) for x in events]


async def test_known_events_come_back_exactly_under_each_filter_in_order_across_pages(env: Env) -> None:
    sent = send_known(env)
    await eventually(lambda: _count(env, len(sent)), 20, what="the recorder stored every event")
    t_mid = sent[30]["ts"]
    cases: list[tuple[dict[str, Any], list[tuple[float, str]]]] = [
        ({}, expected(sent)),
        ({"service": "delivery"}, expected(sent, service="delivery")),
        ({"service": "delivery", "instance": "delivery-2"}, expected(sent, instance="delivery-2")),
        ({"severity": "warning"}, expected(sent, severity="warning")),
        ({"severity": "critical", "service": "ingest"}, expected(sent, service="ingest", severity="critical")),
        ({"type": "log"}, expected(sent, type_="log")),
        ({"type": "log,parse_error", "severity": "error"},
         sorted(expected(sent, type_="log", severity="error") + expected(sent, type_="parse_error",
                                                                          severity="error"), reverse=True)),
        ({"from": str(t_mid)}, expected(sent, start=t_mid)),
        ({"from": str(sent[10]["ts"]), "to": str(sent[20]["ts"])},
         expected(sent, start=sent[10]["ts"], end=sent[20]["ts"])),
        ({"q": "acme timed"}, expected(sent, words=("acme", "timed"))),
        ({"q": "THROTTLED Globex,", "service": "delivery"},
         expected(sent, service="delivery", words=("throttled", "globex"))),
    ]
    for params, want in cases:
        assert want, params  # every case selects something
        for limit in (7, 100):
            got = await all_pages(env, **params, limit=limit)
            assert shown(got) == want, (params, limit)
    # the shape of one event, field by field
    [one] = (await get(env, limit=1, q="dev-0042")).json()["events"]
    src = max((s for s in sent if "dev-0042" in s["message"]), key=lambda s: s["ts"])
    assert one["service"] == src["service"] and one["instance"] == src["instance"]
    assert (one["type"], one["severity"], one["message"], one["attrs"]) == (
        src["type"], src["severity"], src["message"], src["attrs"])
    assert abs(one["ts"] - src["ts"]) < 1e-6 and isinstance(one["id"], int)
    assert one["timestamp"].endswith("Z") and one["timestamp"][:19] == time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime(src["ts"]))


async def _count(env: Env, n: int) -> bool:
    r = await get(env, limit=1000)
    return r.status_code == 200 and len(r.json()["events"]) >= n


async def test_search_ignores_case_and_punctuation_over_http(env: Env) -> None:
    sent = send_known(env, 10)
    await eventually(lambda: _count(env, len(sent)), 20, what="stored")
    for q in ("acme", "ACME", "hooks.acme.example", "Acme, TIMED-OUT", "dev-0042", "DEV 0042 json",
              "'globex'", "503 service-unavailable"):
        got = (await get(env, q=q)).json()["events"]
        words = tuple(w for w in q.lower().replace(",", " ").replace("'", " ").replace(".", " ")
                      .replace("-", " ").split())
        want = [s for s in sent if all(w in json.dumps(s).lower() for w in words)]
        assert len(got) == len(want) > 0, q


async def test_hostile_q_gives_results_or_a_400_never_a_500(env: Env) -> None:
    send_known(env, 10)
    for q in [*HOSTILE, "a" * 4000, "a " * 2000, "a" * 10_240, "%", "x%00y"]:
        r = await get(env, q=q)
        if len(str(r.request.url)) > 8192:  # past the HTTP request line limit: refused before routing
            assert r.status_code == 414, (q[:40], r.status_code)
            continue
        assert r.status_code in (200, 400), (q[:40], r.status_code, r.text)
        if r.status_code == 400:
            assert r.json()["parameter"] == "q", r.text
        else:
            assert isinstance(r.json()["events"], list)
    assert (await get(env, q="acme")).status_code == 200  # and the store is still there


BAD = [
    ("limit=0", "limit"), ("limit=5000", "limit"), ("limit=ten", "limit"), ("severity=fatal", "severity"),
    ("before=abc", "before"), ("before=1_", "before"), ("from=yesterday", "from"), ("to=-3x", "to"),
("service=Bad%20Name", "service"), ("type=Log", "type"),
    ("colour=red", "colour"), ("q=", "q"), ("limit=1&limit=2", "limit"), ("service=a,,b", "service"),
]


async def test_bad_parameters_are_a_400_naming_the_parameter(env: Env) -> None:
    for query, param in BAD:
        r = await env.http.get(f"/operator/system/events?{query}")
        assert r.status_code == 400, (query, r.text)
        assert r.json()["parameter"] == param, (query, r.text)
    r = await env.http.get("/operator/system/events/counts?from=-1h&to=today")
    assert r.status_code == 400 and r.json()["parameter"] == "to", r.text
    # an inverted range is an empty one (not an error)
    r = await env.http.get("/operator/system/events?from=-1h&to=-2h")
    assert r.status_code == 200 and r.json() == {"events": [], "next": None}, r.text


async def test_error_counts_for_a_range(env: Env) -> None:
    sent = send_known(env)
    await eventually(lambda: _count(env, len(sent)), 20, what="stored")
    start, end = sent[5]["ts"], sent[44]["ts"]
    r = await env.http.get("/operator/system/events/counts", params={"from": str(start), "to": str(end)})
    assert r.status_code == 200, r.text
    body = r.json()
    keep = [s for s in sent if start <= s["ts"] <= end and s["severity"] in ("warning", "error", "critical")]
    assert body["total"] == len(keep)
    assert body["by_severity"] == {sev: n for sev in ("warning", "error", "critical")
                                   if (n := sum(s["severity"] == sev for s in keep))}
    assert body["by_service"] == {svc: n for svc in ("delivery", "ingest")
                                  if (n := sum(s["service"] == svc for s in keep))}


async def tail_client(env: Env, flt: dict[str, Any], token: str | None = None) -> Any:
    ws = await websockets.connect(env.gw.url.replace("http", "ws") + "/operator/system/live")
    await ws.send(json.dumps({"type": "hello", **({"token": token} if token else {})}))
    await ws.send(json.dumps({"type": "tail", "filter": flt}))
    return ws


async def next_events(ws: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        msg = json.loads(raw)
        if msg["type"] == "events":
            return msg  # type: ignore[no-any-return]


async def test_live_tail_sends_new_matching_events_within_2_s(env: Env) -> None:
    ws = await tail_client(env, {"service": "delivery", "severity": "error", "q": "ACME timed-out"})
    try:
        await asyncio.sleep(0.2)  # the tail message is handled
        rep_ingest = env.reporters[("ingest", "ingest-1")]
        rep = env.reporters[("delivery", "delivery-2")]
        rep_ingest.event("webhook_timeout", "POST https://hooks.acme.example timed out", severity="error")
        rep.event("webhook_timeout", "POST https://hooks.acme.example timed out", severity="warning")
        rep.event("webhook_timeout", "POST https://hooks.globex.example timed out", severity="error")
        t = time.monotonic()
        rep.event("webhook_timeout", "POST https://hooks.acme.example/alerts timed out after 10 s",
                  severity="critical", attrs={"tenant": "acme"})
        msg = await next_events(ws, 2.0)
        latency = time.monotonic() - t
        assert latency < 2.0
        [ev] = msg["events"]
        assert (ev["service"], ev["instance"], ev["severity"], ev["id"]) == ("delivery", "delivery-2",
                                                                              "critical", None)
        assert ev["message"] == "POST https://hooks.acme.example/alerts timed out after 10 s"
        assert ev["attrs"] == {"tenant": "acme"} and msg["dropped"] == 0
        with pytest.raises(TimeoutError):  # the three that do not match never come
            await next_events(ws, 0.5)
        # untail: nothing more
        await ws.send(json.dumps({"type": "untail"}))
        await asyncio.sleep(0.2)
        rep.event("webhook_timeout", "POST https://hooks.acme.example timed out again", severity="error")
        with pytest.raises(TimeoutError):
            await next_events(ws, 0.5)
    finally:
        await ws.close()


async def next_frame(ws: Any, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if msg["type"] == kind:
            return msg  # type: ignore[no-any-return]


async def test_a_bad_tail_filter_is_refused_with_the_reason_and_the_socket_stays(env: Env) -> None:
    ws = await tail_client(env, {"severity": "fatal"})
    try:
        msg = await next_frame(ws, "tail", scaled(5))
        assert msg["ok"] is False and msg["code"] == "bad_request" and "severity" in msg["message"]
        await ws.send(json.dumps({"type": "tail", "filter": {"q": "!!!"}}))
        msg = await next_frame(ws, "tail", scaled(5))
        assert msg["ok"] is False and "letter or digit" in msg["message"]
        # the same socket still works: a good filter now, and its events
        await ws.send(json.dumps({"type": "tail", "filter": {"service": "ingest"}}))
        assert (await next_frame(ws, "tail", scaled(5)))["ok"] is True
        env.reporters[("ingest", "ingest-1")].event("parse_error", "still here", severity="error")
        assert (await next_events(ws, scaled(5)))["events"][0]["message"] == "still here"
    finally:
        await ws.close()


async def test_display_tokens_tail_and_search_only_when_their_sections_allow(
        mosquitto: Mosquitto, database_url: str, tmp_path: Any) -> None:
    config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_HISTORY_URL": database_url})
    for sections, allowed in ((None, False), (["health", "errors", "events"], True)):
        extra = {} if sections is None else {"display_sections": sections}
        gw = Gateway(GatewayConfig(listen="127.0.0.1:0", auth="token", tokens=["op"], display_tokens=["wall"],
                                   static_dir=str(tmp_path / "dist"), **extra), MqttConfig(url=mosquitto.url),
                     app_config=config)
        await gw.start()
        try:
            async with httpx.AsyncClient(base_url=gw.url, timeout=scaled(10)) as http:
                r = await http.get("/operator/system/events", headers={"Authorization": "Bearer wall"})
                assert r.status_code == (200 if allowed else 403), r.text
                r = await http.get("/operator/system/events", headers={"Authorization": "Bearer op"})
                assert r.status_code == 200, r.text
            env = Env(config, gw, None, {}, [])  # type: ignore[arg-type]
            ws = await tail_client(env, {}, token="wall")
            try:
                answer = await next_frame(ws, "tail", scaled(5))
                assert answer["ok"] is allowed, answer
                if not allowed:
                    assert answer["code"] == "forbidden" and "display_sections" in answer["message"]
                await ws.send(json.dumps({"type": "untail"}))  # the socket (and so the view) stays
                await asyncio.wait_for(await ws.ping(), scaled(5))
                assert ws.close_code is None
            finally:
                await ws.close()
        finally:
            await gw.stop()


async def test_the_tail_carries_the_aggregators_own_entries_once(
        mosquitto: Mosquitto, env: Env) -> None:
    """A quarantined message is an event only the aggregator makes: it reaches the tail through the
    view's feed; a service's own event, also in the feed, is not sent a second time."""
    from opsdash.wiring import build_aggregator

    agg = build_aggregator(load_config(env={"OPSDASH_MQTT_URL": mosquitto.url,
                                            "OPSDASH_AGGREGATOR__ID": "tail-agg",
                                            "OPSDASH_AGGREGATOR__TICK_S": "0.25"}))
    task = asyncio.create_task(agg.run())
    try:
        await asyncio.wait_for(agg.connected.wait(), scaled(10))
        await eventually(lambda: env.gw.store.seq is not None and env.gw.store.seq > 0, 15,
                         what="the gateway has the view")
        ws = await tail_client(env, {"severity": "warning"})
        try:
            await asyncio.sleep(0.3)
            proc = await asyncio.create_subprocess_exec(
                "mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1",
                "-t", "$ops/v1/svc/ingest/ingest-1/metrics", "-m", "{not json")
            await proc.wait()
            env.reporters[("delivery", "delivery-1")].event("webhook_failed", "hooks.acme.example 502",
                                                            severity="error")
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + scaled(5)
            while time.monotonic() < deadline:
                try:
                    got += (await next_events(ws, max(0.1, deadline - time.monotonic())))["events"]
                except TimeoutError:
                    break
                if any(e["type"] == "quarantined" for e in got) and any(
                        e["type"] == "webhook_failed" for e in got):
                    await asyncio.sleep(2.5)  # the next patches (with the feed) come and go
                    with contextlib.suppress(TimeoutError):
                        while True:
                            got += (await next_events(ws, 0.5))["events"]
                    break
            quarantined = [e for e in got if e["type"] == "quarantined"]
            failed = [e for e in got if e["type"] == "webhook_failed"]
            assert len(quarantined) == 1 and quarantined[0]["service"] == "opsdash-aggregator", got
            assert "ingest-1/metrics" in quarantined[0]["attrs"]["topic"]
            assert len(failed) == 1, got  # from the bus only, not again from the feed
        finally:
            await ws.close()
    finally:
        await cancel_and_wait([task])
