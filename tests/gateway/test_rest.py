"""REST, /metrics, /healthz, static files and the OpenAPI document, through the real server."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from gateway.rest import section, series_query
from gateway.server import OPENAPI_PATH
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim

OPENAPI = json.loads(OPENAPI_PATH.read_text())


def validate(path: str, status: int, body: Any) -> None:
    """Validate ``body`` against the OpenAPI response schema of ``path``/``status``."""
    op = OPENAPI["paths"][path]["get"]
    content = op["responses"][str(status)]["content"]
    schema = next(iter(content.values()))["schema"]
    jsonschema.Draft202012Validator({**schema, "components": OPENAPI["components"]}).validate(body)


def test_seed_templates_put_unknown_fields_back_as_null() -> None:
    comps = {"ingest": {"status": "healthy", "kind": "service"}, "extra": {"status": "down"}}
    state = {"health": {"status": "degraded", "components": comps},
             "metrics": {"throughput": {"ingest_rate_per_sec": 12.5}, "period": "last_60_seconds"}}
    h = section(state, "health")
    assert h["checked_at"] is None and h["status"] == "degraded"
    assert h["components"]["ingest"] == {"status": "healthy", "kind": "service", "queue_depth": None}
    assert h["components"]["postgres"] == {"status": None, "latency_ms": None, "connections": None,
                                           "max_connections": None}
    assert h["components"]["extra"] == {"status": "down"}
    m = section(state, "metrics")
    assert m["throughput"] == {"ingest_rate_per_sec": 12.5, "alert_rate_per_sec": None,
                               "delivery_rate_per_sec": None}
    assert m["latency"]["influx_write_p99_ms"] is None
    c = section({}, "capacity")
    assert c["disk"]["used_pct"] is None and c["influxdb"] == {"file_count": None, "file_limit": None}
    e = section({"errors": {"errors": [{"ts": 1.0, "type": "x"}]}}, "errors")
    assert e["errors"] == [{"ts": 1.0, "type": "x", "timestamp": None, "service": None, "message": None}]
    assert e["counts"]["quarantined_1h"] is None
    for name in ("health", "metrics", "capacity", "aggregates", "errors"):
        validate(f"/operator/system/{name}", 200, section({}, name))


def test_series_query() -> None:
    state = {"series": {"a": [[1.0, 1], [2.0, None], [3.0, 3]], "b": [[1.0, 5]]}, "meta": {"series_len": 900}}
    assert series_query(state, None, None)["series"] == state["series"]
    assert series_query(state, ["a"], 1.5)["series"] == {"a": [[2.0, None], [3.0, 3]]}
    with pytest.raises(ValueError, match="unknown series 'c'"):
        series_query(state, ["a", "c"], None)


async def test_rest_endpoints_serve_the_view_and_match_openapi(make_gateway: GatewayFactory,
                                                               publisher: Publisher) -> None:
    gw = await make_gateway()
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/operator/system/health")
        assert r.status_code == 503 and r.json()["error"] == "no_view"
        validate("/operator/system/health", 503, r.json())
        h = await http.get("/healthz")
        validate("/healthz", 200, h.json())
        sim = ViewSim(seed=4)
        for _ in range(30):
            sim.step()
        await published(gw, publisher, sim)
        view = sim.state()
        for name in ("health", "metrics", "capacity", "aggregates", "errors"):
            r = await http.get(f"/operator/system/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            assert r.headers["X-Opsdash-Seq"] == str(sim.seq)
            body = r.json()
            validate(f"/operator/system/{name}", 200, body)
            assert body == section(view, name)
            r2 = await http.get(f"/operator/system/{name}", headers={"If-None-Match": r.headers["ETag"]})
            assert r2.status_code == 304
        assert (await http.get("/operator/system/health")).json()["components"]["postgres"][
            "connections"] == view["health"]["components"]["postgres"]["connections"]
        s = await http.get("/operator/system/series", params={"names": "ingest_rate,write_p99",
                                                              "since": str(sim.t - 10)})
        validate("/operator/system/series", 200, s.json())
        assert s.json()["series"]["ingest_rate"] == view["series"]["ingest_rate"][-10:]
        bad = await http.get("/operator/system/series", params={"names": "nope"})
        assert bad.status_code == 400
        validate("/operator/system/series", 400, bad.json())
        assert (await http.get("/operator/system/nope")).status_code == 404
        big = await http.get("/operator/system/series", headers={"Accept-Encoding": "gzip"})
        assert big.headers.get("content-encoding") == "gzip" and big.json()["series"] == view["series"]
        h = await http.get("/healthz")
        validate("/healthz", 200, h.json())
        assert h.json()["status"] == "ok" and h.json()["view"]["seq"] == sim.seq
        o = await http.get("/openapi.json")
        assert o.json()["openapi"].startswith("3.1")
        p = await http.post("/healthz")
        assert p.status_code == 405 and p.json()["error"] == "method_not_allowed"


async def test_prometheus_exposition_passes_promtool(make_gateway: GatewayFactory, publisher: Publisher,
                                                     tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: ./run test installs Debian's prometheus package"
    gw = await make_gateway()
    sim = ViewSim(seed=8)
    await published(gw, publisher, sim)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    out = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                         check=False)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    view = sim.state()
    pg = view["health"]["components"]["postgres"]
    assert f'opsdash_component_status{{component="postgres",kind="probe",status="{pg["status"]}"}} 1' in text
    assert f'opsdash_platform_devices{{state="online"}} {view["aggregates"]["devices"]["online"]}' in text
    used = view["capacity"]["postgres"]["connections_used"]
    assert f'opsdash_postgres_connections{{state="used"}} {used}' in text
    total = view["services"]["ingest"]["instances"]["ingest-1"]["totals"]["messages_received"]
    assert (f'opsdash_service_events_total{{service="ingest",instance="ingest-1",'
            f'counter="messages_received"}} {total}') in text
    rate = view["metrics"]["throughput"].get("ingest_rate_per_sec")
    if rate is None:  # unknown figures are left out, never written as 0
        assert 'opsdash_rate_per_second{rate="ingest"}' not in text
    else:
        assert f'opsdash_rate_per_second{{rate="ingest"}} {rate!r}' in text
    assert "opsdash_gateway_view_seq 0" in text


async def test_static_frontend(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    index = "<!doctype html><title>opsdash</title>" + "<p>x</p>" * 300
    (dist / "index.html").write_text(index)
    js = "console.log('opsdash');" * 200
    (dist / "assets" / "index-B3x9kQ2a.js").write_text(js)
    (dist / "assets" / "app-Zz81kkLm.css").write_text("body{color:red}")
    (dist / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / "secret.txt").write_text("do not serve")
    gw = await make_gateway(static_dir=str(dist))
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200 and r.text == index
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache" and "content-encoding" not in r.headers
        r = await http.get("/assets/index-B3x9kQ2a.js", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and r.text == js  # httpx decodes
        assert r.headers["content-type"] == "text/javascript; charset=utf-8"
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert int(r.headers["content-length"]) < len(js) / 5
        r = await http.get("/assets/app-Zz81kkLm.css")
        assert r.headers["content-type"] == "text/css; charset=utf-8"
        r = await http.get("/logo.png", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-type"] == "image/png" and "content-encoding" not in r.headers
        etag = r.headers["etag"]
        assert (await http.get("/logo.png", headers={"If-None-Match": etag})).status_code == 304
        r = await http.get("/history/last-week")  # a frontend route
        assert r.status_code == 200 and r.text == index
        assert (await http.get("/dashboard/wall")).status_code == 404  # not one
        assert (await http.get("/missing.js")).status_code == 404
        for evil in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt",
                     "/assets/%2E%2E/%2E%2E/secret.txt", "/..%2fsecret.txt"):
            r = await _raw_get(gw.port, evil)
            assert r[0] == 400, (evil, r)
            assert b"do not serve" not in r[1]


async def _raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (httpx would normalise the dots away)."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data
