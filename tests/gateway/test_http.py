"""HTTP through the real server: routes, the strict query parser, POST bodies, frontend routes,
methods, conditional requests (issue 17)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from gateway.httpserver import MAX_BODY_BYTES
from gateway.routes import HttpRequest, Reply
from gateway.static import FRONTEND_ROUTES
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim


async def raw_request(port: int, head: str, body: bytes = b"", wait_continue: bool = False) -> bytes:
    """Send a request exactly as written; the whole answer (the server closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
    if wait_continue:
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line.startswith(b"HTTP/1.1 100"), line
        await reader.readline()
    writer.write(body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def frontend(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script src="/assets/app-B3x9kQ2a.js"></script>')
    (dist / "assets" / "app-B3x9kQ2a.js").write_text("console.log(1)")
    return dist


async def test_strict_query_on_series(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=2)
    for _ in range(20):
        sim.step()
    await published(gw, publisher, sim)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        for query, param in [("since=", "since"), ("since=1_000", "since"), ("since=abc", "since"),
                             ("names=", "names"), ("names=,", "names"),
                             ("names=ingest_rate&names=write_p99", "names"), ("nope=1", "nope"),
                             ("since=1&since=2", "since")]:
            r = await http.get(f"/operator/system/series?{query}")
            assert r.status_code == 400, (query, r.text)
            assert r.json()["error"] == "bad_request" and r.json()["parameter"] == param, query
        r = await http.get("/healthz?verbose=1")
        assert r.status_code == 400 and r.json()["parameter"] == "verbose"
        # what is accepted means exactly what it says
        r = await http.get(f"/operator/system/series?names=ingest_rate&since={sim.t - 5}")
        assert r.status_code == 200 and len(r.json()["series"]["ingest_rate"]) == 5
        r = await http.get("/operator/system/series?names=ingest_rate&since=-1h")
        assert r.status_code == 200 and abs(r.json()["since"] - (time.time() - 3600)) < 60
    assert gw.counters.refused["bad_query"] == 9


class AckBody(msgspec.Struct, forbid_unknown_fields=True):
    comment: str
    duration_s: int = 60


async def test_post_with_a_json_body(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(auth="token", tokens=["op-secret"], display_tokens=["wall"],
                            listen="127.0.0.1:0")
    seen: list[HttpRequest] = []

    async def ack(req: HttpRequest) -> Reply:
        seen.append(req)
        if req.principal is None or req.principal.role != "operator":
            return Reply(403, {"error": "forbidden", "message": "operators only"})
        return Reply(200, {"acked": req.path_params["fingerprint"], "by": req.principal.subject,
                           "comment": req.body.comment})

    gw.routes.post("/operator/system/test/{fingerprint}/ack", ack, body=AckBody)
    op = {"Authorization": "Bearer op-secret"}
    url = "/operator/system/test/f00d%20ab/ack"
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.post(url, json={"comment": "on it"}, headers=op)
        assert r.status_code == 200, r.text
        assert r.json() == {"acked": "f00d ab", "by": "token", "comment": "on it"}
        assert (await http.post(url, json={"comment": "x"})).status_code == 401
        r = await http.post(url, json={"comment": "x"}, headers={"Authorization": "Bearer wall"})
        assert r.status_code == 403  # a display token: refused before the handler (no section)
        r = await http.post(url, content=b'{"comment": "x"}', headers={**op, "Content-Type": "text/plain"})
        assert r.status_code == 415
        r = await http.post(url, content=b'{"comment": ', headers={**op, "Content-Type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["message"]
        r = await http.post(url, json={"comment": 5}, headers=op)
        assert r.status_code == 400 and "$.comment" in r.json()["message"]
        r = await http.post(url, content=b"[" * 3000 + b"]" * 3000,
                            headers={**op, "Content-Type": "application/json"})
        assert r.status_code == 400
        r = await http.post(url, json={"comment": "x" * MAX_BODY_BYTES}, headers=op)
        assert r.status_code == 413
        r = await http.get(url, headers=op)
        assert r.status_code == 405 and r.headers["allow"] == "POST, OPTIONS"
        r = await http.post("/healthz", json={})
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, OPTIONS"
    assert len(seen) == 1
    # curl's Expect: 100-continue, and chunked bodies (refused: Content-Length only)
    body = b'{"comment": "from curl"}'
    data = await raw_request(gw.port, f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer "
                             f"op-secret\nContent-Type: application/json\nContent-Length: {len(body)}\n"
                             "Expect: 100-continue\n", body, wait_continue=True)
    assert status_of(data) == 200 and b"from curl" in data
    data = await raw_request(gw.port, f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n"
                             "Content-Type: application/json\n", b"5\r\n{}   \r\n0\r\n\r\n")
    assert status_of(data) == 411
    data = await raw_request(gw.port, f"POST {url} HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 1\n"
                             "Content-Length: 2\n", b"{}")
    assert status_of(data) == 400


async def test_frontend_routes_and_unknown_paths(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    dist = frontend(tmp_path)
    gw = await make_gateway(static_dir=str(dist))
    index = (dist / "index.html").read_text()
    async with httpx.AsyncClient(base_url=gw.url) as http:
        pages = ["/", "/history", "/history/", "/logs/a/b/c", "/graph", "/alerts/x",
                 "/component/postgres", "/component/delivery/instances/delivery-1", "/history?from=-1h"]
        assert {p.rstrip("/").split("/")[1] for p in pages if p != "/"} >= {
            r.strip("/") for r in FRONTEND_ROUTES}
        for page in pages:
            r = await http.get(page)
            assert r.status_code == 200 and r.text == index, page
        assert (await http.get("/assets/app-B3x9kQ2a.js")).status_code == 200
        for path in ("/metrics/x", "/healthz/x", "/operator/nope", "/operator/system/nope",
                     "/operator/system/health/x", "/openapi.json/x", "/nope", "/component",
                     "/historyx", "/dashboard/wall", "/missing.js"):
            r = await http.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"] == "application/json" and r.json()["error"] == "not_found"


def test_the_build_uses_absolute_asset_paths() -> None:
    """At /component/x/y a relative ./assets/... would resolve under /component/x/ (a blank page)."""
    from gateway.server import REPO_DIST

    html = (REPO_DIST / "index.html").read_text()
    assert 'src="/assets/' in html and "./assets/" not in html


async def test_methods_answer_consistently(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = await make_gateway(static_dir=str(frontend(tmp_path)))
    async with httpx.AsyncClient(base_url=gw.url) as http:
        for path in ("/healthz", "/metrics", "/openapi.json", "/operator/system/health",
                     "/operator/system/series", "/operator/system/live", "/", "/history"):
            o = await http.options(path)
            assert o.status_code == 204 and o.headers["allow"] == "GET, HEAD, OPTIONS", path
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                r = await http.request(method, path)
                assert r.status_code == 405 and r.headers["allow"] == o.headers["allow"], (method, path)
                assert r.json()["error"] == "method_not_allowed"
            g = await http.get(path)
            h = await http.head(path)
            assert h.status_code == g.status_code and h.content == b"", path
            assert h.headers["content-type"] == g.headers["content-type"], path
        r = await http.get("/operator/system/live")  # no Upgrade: JSON like every other error
        assert r.status_code == 426 and r.json()["error"] == "upgrade_required"
        assert r.headers["upgrade"] == "websocket"
        # websockets' own refusal of a broken handshake (no Sec-WebSocket-Key) is JSON too
        r = await http.get("/operator/system/live", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        assert r.status_code == 400 and r.json()["error"] == "bad_handshake"
        assert "Sec-WebSocket-Key" in r.json()["message"] and r.headers["x-frame-options"] == "DENY"


async def test_conditional_requests_follow_rfc_9110(make_gateway: GatewayFactory,
                                                    publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=3)
    for _ in range(30):
        sim.step()
    await published(gw, publisher, sim)
    plain_h = {"Accept-Encoding": "identity"}
    gz_h = {"Accept-Encoding": "gzip"}
    async with httpx.AsyncClient(base_url=gw.url) as http:
        plain = await http.get("/operator/system/series", headers=plain_h)
        zipped = await http.get("/operator/system/series", headers=gz_h)
        assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
        assert plain.headers["etag"] != zipped.headers["etag"]  # one validator per representation
        for resp in (plain, zipped):
            assert resp.headers["vary"] == "Accept-Encoding"
            assert email.utils.parsedate_to_datetime(resp.headers["date"]) is not None
        etag = plain.headers["etag"]
        for inm in (etag, f"W/{etag}", "*", f'"nope", {etag}', f'"a",W/{etag}'):
            r = await http.get("/operator/system/series", headers={**plain_h, "If-None-Match": inm})
            assert r.status_code == 304 and r.headers["etag"] == etag and r.content == b"", inm
        r = await http.get("/operator/system/series", headers={**gz_h, "If-None-Match": etag})
        assert r.status_code == 200  # the plain tag does not validate the gzipped bytes
        r = await http.get("/operator/system/series", headers={**plain_h, "If-None-Match": '"nope"'})
        assert r.status_code == 200
        other = await http.get("/operator/system/series?names=ingest_rate", headers=plain_h)
        assert other.headers["etag"] != etag  # the series validator includes its parameters
        r = await http.get("/operator/system/series?names=ingest_rate",
                           headers={**plain_h, "If-None-Match": etag})
        assert r.status_code == 200 and r.json() == other.json()
        health = await http.get("/operator/system/health", headers=plain_h)
        assert health.headers["vary"] == "Accept-Encoding" and "date" in health.headers
        m = await http.get("/metrics", headers=gz_h)
        assert m.headers["content-encoding"] == "gzip" and "opsdash_gateway_view_seq" in m.text


async def test_routes_are_in_the_openapi_document(make_gateway: GatewayFactory) -> None:
    import json

    from gateway.server import OPENAPI_PATH

    gw = await make_gateway()
    doc: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    routed = {(r.method.lower(), r.pattern) for r in gw.routes.routes()}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete") and p != "/operator/system/live"}
    assert routed == documented


@pytest.mark.parametrize("path", ["/operator/system/series?since=%zz", "/operator/system/series?%ff=1"])
async def test_bad_percent_encoding_is_a_400(make_gateway: GatewayFactory, publisher: Publisher,
                                            path: str) -> None:
    gw = await make_gateway()
    await published(gw, publisher, ViewSim(seed=1))
    data = await raw_request(gw.port, f"GET {path} HTTP/1.1\nHost: 127.0.0.1\n")
    assert status_of(data) == 400


async def test_served_document_says_what_the_pipeline_answers(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway()
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/openapi.json")
        doc = r.json()
        assert (await http.get("/openapi.json", headers={"If-None-Match": r.headers["etag"]})).status_code == 304
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            rs = op["responses"]
            for status in ("400", "405", "421", "429"):
                assert status in rs, (method, path, status)
            assert rs["429"] == {"$ref": "#/components/responses/TooManyRequests"}
            if op.get("security") != []:
                assert "401" in rs and "403" in rs, (method, path)
    assert "426" in doc["paths"]["/operator/system/live"]["get"]["responses"]
    assert "Retry-After" in doc["components"]["responses"]["TooManyRequests"]["headers"]
    assert "Allow" in doc["components"]["responses"]["MethodNotAllowed"]["headers"]
    series = doc["paths"]["/operator/system/series"]["get"]
    assert "ETag" in series["responses"]["200"]["headers"] and "304" in series["responses"]
    names = next(p for p in series["parameters"] if p["name"] == "names")
    assert names["schema"]["items"]["enum"] and names["explode"] is False


def test_frontend_routes_match_the_apps_route_table() -> None:
    """gateway/static.py's FRONTEND_ROUTES and frontend/src/app/routes.ts name the same pages."""
    import re

    from gateway.static import is_frontend_route

    routes_ts = Path(__file__).resolve().parents[2] / "frontend" / "src" / "app" / "routes.ts"
    paths = re.findall(r'path:\s*"(/[^"]*)"', routes_ts.read_text())
    assert "/" in paths and len(paths) >= 6, paths
    for p in paths:
        concrete = re.sub(r":[a-z_]+", "x", p).removesuffix("/*")
        assert is_frontend_route(concrete), p
        assert p == "/" or is_frontend_route(concrete + "/deeper"), p
    app = {re.sub(r"/:[a-z_]+.*", "/", p) for p in paths if p != "/"}
    assert app == set(FRONTEND_ROUTES)
