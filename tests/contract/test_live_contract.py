"""The contract end to end: the real fold's views, published on a private broker as the aggregator does,
served by a real gateway. Every REST answer, the WebSocket snapshot and patches and /metrics decode
against the schema (telemetry_bus/view_schema.py), and their figures are the view's, to the byte."""

from __future__ import annotations

import json
import re
from typing import Any

import aiomqtt
import httpx
from websockets.asyncio.client import connect

from telemetry_bus.contract import ViewPatch, ViewSnapshot, encode, topics
from telemetry_bus.view_schema import REST_ANSWERS, check_frame, check_rest
from tests.contract.view_source import full_ticks
from tests.gateway.client import recv
from tests.gateway.conftest import GatewayFactory, wait_view
from tests.support.servers import Mosquitto

ROOT = "$ops"
_SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (\S+)$')
#: /metrics families whose values are counts or bytes: written as integers, never 3001.0 or 3e3
INTEGER_FAMILIES = ("opsdash_platform_", "opsdash_disk_bytes", "opsdash_postgres_database_bytes",
                    "opsdash_postgres_connections", "opsdash_influxdb_files", "opsdash_influxdb_file_limit",
                    "opsdash_errors_last_hour", "opsdash_instance_restarts_total",
                    "opsdash_instance_missing_intervals_total", "opsdash_folded_messages_total",
                    "opsdash_duplicate_messages_total", "opsdash_quarantined_messages_total",
                    "opsdash_missing_intervals_total")


def parse_metrics(text: str) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[(m.group(1), m.group(2) or "")] = m.group(3)
    return out


async def test_rest_websocket_and_metrics_follow_the_schema(mosquitto: Mosquitto,
                                                            make_gateway: GatewayFactory) -> None:
    outs = full_ticks()
    first, *rest = outs[-3:]
    gw = await make_gateway()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as bus:
        await bus.publish(topics.snapshot(ROOT), encode(ViewSnapshot(seq=first.seq, ts=first.ts, state=first.view)),
                          qos=1, retain=True)
        await wait_view(gw, first.seq)
        ws_url = gw.url.replace("http://", "ws://") + "/operator/system/live"
        async with connect(ws_url) as ws:
            snap = await recv(ws, "snapshot")
            check_frame(snap)
            # the default stream carries per-service summaries, not instances (docs/websocket.md)
            assert {k: v for k, v in snap["state"].items() if k != "services"} == {
                k: v for k, v in first.view.items() if k != "services"}
            for out in rest:
                await bus.publish(topics.patch(ROOT), encode(ViewPatch(
                    seq=out.seq, base=out.base, ts=out.ts, patch=out.patch, append=out.append,
                    errors=out.errors)), qos=0)
                frame = await recv(ws, "patch")
                check_frame(frame)
                assert frame["seq"] == out.seq
            await ws.send(json.dumps({"type": "hello", "sections": ["services/ingest", "health"]}))
            detail = await recv(ws, "snapshot")
            check_frame(detail)  # per-instance members too
            assert set(detail["state"]["services"]["ingest"]["instances"]) == {"ingest-0", "ingest-1"}
        last = outs[-1]
        await wait_view(gw, last.seq)
        view: dict[str, Any] = last.view
    async with httpx.AsyncClient(base_url=gw.url) as http:
        for name in REST_ANSWERS:
            r = await http.get(f"/operator/system/{name}")
            assert r.status_code == 200, (name, r.text)
            check_rest(name, r.content)  # a float count, a renamed or unknown member fails here
        cap = (await http.get("/operator/system/capacity")).json()
        disk = view["capacity"]["disk"]
        assert cap["disk"]["total_volume_bytes"] == disk["total_volume_bytes"]
        assert cap["disk"]["total_volume_gb"] == round(disk["total_volume_bytes"] / 1e9, 3)
        assert cap["postgres"]["db_size_mb"] == round(view["capacity"]["postgres"]["db_size_bytes"] / 1e6, 1)
        raw_agg = (await http.get("/operator/system/aggregates")).text
        assert '"registered":3001' in raw_agg.replace(" ", "") and "3001.0" not in raw_agg
        metrics = (await http.get("/metrics")).text
    samples = parse_metrics(metrics)
    for (name, labels), value in samples.items():
        float(value)
        if name.startswith(INTEGER_FAMILIES):
            assert re.fullmatch(r"-?\d+", value), f"{name}{labels} = {value}: a count or size must be an integer"
    # the figures are the view's, in the documented unit (bytes), exactly
    assert samples[("opsdash_disk_bytes", '{volume="total_volume"}')] == str(disk["total_volume_bytes"])
    assert samples[("opsdash_disk_bytes", '{volume="used_volume"}')] == str(disk["used_volume_bytes"])
    assert samples[("opsdash_postgres_database_bytes", "")] == str(view["capacity"]["postgres"]["db_size_bytes"])
    assert samples[("opsdash_platform_devices", '{state="registered"}')] == "3001"
    assert samples[("opsdash_postgres_connections", '{state="used"}')] == str(
        view["capacity"]["postgres"]["connections_used"])
    assert json.loads(samples[("opsdash_data_completeness_ratio", "")]) == view["meta"]["completeness"]["ratio"]
