"""The history endpoints through a real gateway, over a real PostgreSQL holding known points."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest

from gateway.config import GatewayConfig
from gateway.server import Gateway
from history.config import HistoryConfig
from history.store import Item, Writer
from telemetry_bus.config import MqttConfig
from telemetry_bus.histogram import ExpHistogram
from tests.support.servers import Mosquitto

H = "/operator/system/history"


@pytest.fixture
async def written(database_url: str) -> AsyncIterator[tuple[str, float]]:
    """An hour of seconds ending ~5 minutes ago: ingest_rate = minute-of-hour (so each minute's mean is
    known), a hole of 30 s, on whole quarters of an hour, latency histograms of known samples, and postgres going down for 10 min."""
    w = Writer(database_url)
    await w.open()
    end = math.floor(time.time() / 900) * 900 - 900
    start = end - 3600
    items = []
    for t in range(start, end):
        if start + 600 <= t < start + 630:
            continue  # the hole
        minute = (t - start) // 60
        h = ExpHistogram()
        for v in (1.0, 2.0, 4.0, 100.0 if t % 100 == 0 else 3.0):
            h.record(v)
        comp = "down" if start + 1200 <= t < start + 1800 else "healthy"
        items.append(Item("second", float(t), {
            "values": {"ingest_rate": float(minute), "gauge:delivery:pending_jobs": 5.0},
            "hists": {"write_latency": {"scale": h.scale, "zero_count": 0, "offset": min(h.buckets),
                                        "counts": [h.buckets.get(k, 0) for k in range(min(h.buckets),
                                                                                     max(h.buckets) + 1)],
                                        "count": h.count, "sum": h.sum, "min": h.min, "max": h.max}},
            "components": {"postgres": [comp, "probe failed" if comp == "down" else None, None]},
            "aggregator": "agg"}))
    for i in range(0, len(items), 500):
        await w.write(items[i:i + 500])
    await w.rollup(force=True)
    await w.close()
    yield database_url, float(start)


@pytest.fixture
async def gw(mosquitto: Mosquitto, written: tuple[str, float], tmp_path: object) -> AsyncIterator[Gateway]:
    app = SimpleNamespace(history=HistoryConfig(url=written[0]))
    g = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path)), MqttConfig(url=mosquitto.url),
                app_config=app)
    await g.start()
    yield g
    await g.stop()


async def test_history_endpoints(gw: Gateway, written: tuple[str, float]) -> None:
    _, start = written
    async with httpx.AsyncClient(base_url=gw.url) as http:
        cat = (await http.get(H)).json()
        assert set(cat["series"]) >= {"ingest_rate", "gauge:delivery:pending_jobs", "write_p50", "write_p99"}
        assert cat["retention_days"] == 7 and cat["oldest"] == start
        # 1 min step: exactly the minute number, from the 1 min rollups; the hole does not pull a mean down
        r = (await http.get(H, params={"series": "ingest_rate", "from": str(start), "to": str(start + 3600),
                                       "step": "60"})).json()
        assert r.get("step") == 60 and r["from"] == start, r
        assert r["series"]["ingest_rate"] == [[start + 60 * m, float(m)] for m in range(60)]
        # 1 s step across the hole: null where nothing was recorded
        r = (await http.get(H, params={"series": "ingest_rate", "from": str(start + 590),
                                       "to": str(start + 640), "step": "1"})).json()
        pts = dict((int(t - start), v) for t, v in r["series"]["ingest_rate"])
        assert pts[599] == 9.0 and pts[600] is None and pts[629] is None and pts[630] == 10.0
        # 15 min step: means over the points present
        r = (await http.get(H, params={"series": "ingest_rate", "from": str(start), "to": str(start + 3600),
                                       "step": "900"})).json()
        assert [v for _, v in r["series"]["ingest_rate"]][1] == pytest.approx(sum(range(15, 30)) / 15)
        # default step: <= 1,000 points; ISO times
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
        r = (await http.get(H, params={"series": "ingest_rate,write_p99", "from": iso, "to": str(start + 3600)}))
        body = r.json()
        assert body["step"] == 5 and len(body["series"]["ingest_rate"]) == 720
        # quantiles of merged histograms: per second samples 1, 2, 4 and 3 (100 every 100 s)
        r = (await http.get(H, params={"series": "write_p50,write_p99", "from": str(start),
                                       "to": str(start + 3600), "step": "900"})).json()
        bound = r["relative_error"]["write_p99"]
        assert 0 < bound < 0.012  # scale 5: the fixture's histograms span 1..100 in 320 buckets
        # exact, per quarter: as many 1s, 2s and 4s, the rest 3s but 9 samples of 100 (0.25 %):
        # nearest rank 50 % is the last 2, 99 % is a 4
        assert len(r["series"]["write_p99"]) == 4
        for (_, p50), (_, p99) in zip(r["series"]["write_p50"], r["series"]["write_p99"], strict=True):
            assert abs(p50 - 2.0) <= 2.0 * bound and abs(p99 - 4.0) <= 4.0 * bound
        # beyond retention: the points that exist (nulls), never an error
        r = await http.get(H, params={"series": "ingest_rate", "from": "-30d", "to": "-29d"})
        assert r.status_code == 200 and all(v is None for _, v in r.json()["series"]["ingest_rate"])
        # states and availability: down 10 of 60 minutes; the 30 s hole in the records is unknown (not
        # the last status stretched over it) and does not count as known time
        r = (await http.get(H + "/states", params={"from": str(start), "to": str(start + 3600)})).json()
        iv = r["components"]["postgres"]
        assert [(i["status"], i["from"] - start) for i in iv] == [
            ("healthy", 0), ("unknown", 600), ("healthy", 630), ("down", 1200), ("healthy", 1800)]
        assert "not recorded" in iv[1]["reason"]
        assert iv[3]["reason"] == "probe failed" and iv[3]["to"] == start + 1800 and iv[-1]["to"] == start + 3600
        assert r["availability"]["postgres"] == pytest.approx((3570 - 600) / 3570, abs=1e-6)
        now_r = (await http.get(H + "/states")).json()
        assert now_r["components"]["postgres"][-1]["to"] is None  # the current interval
        # bad parameters: 400 naming the parameter
        for params, param in (({"series": "nope"}, "series"), ({"series": "ingest_rate", "from": "yesterday"}, "from"),
                              ({"series": "ingest_rate", "step": "0"}, "step"),
                              ({"series": "ingest_rate", "step": "1", "from": "-7d"}, "step"),
                              ({"series": "ingest_rate", "bogus": "1"}, "bogus"),
                              ({"series": "ingest_rate", "from": "now", "to": "-1h"}, "to"),
                              ({"from": "-1h"}, "series")):
            r = await http.get(H, params=params)
            assert r.status_code == 400, params
            assert r.json()["parameter"] == param and param in r.json()["message"], r.json()
        r = await http.get(H + "/states", params={"to": "x"})
        assert r.status_code == 400 and r.json()["parameter"] == "to"
        assert (await http.get(H + "/other")).status_code == 404


async def test_history_off_answers_404_with_the_reason(mosquitto: Mosquitto, tmp_path: object) -> None:
    g = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path)), MqttConfig(url=mosquitto.url))
    await g.start()
    try:
        async with httpx.AsyncClient(base_url=g.url) as http:
            for path in (H, H + "/states"):
                r = await http.get(path, params={"series": "ingest_rate"} if path == H else None)
                assert r.status_code == 404
                assert r.json()["error"] == "history_off" and "OPSDASH_HISTORY_URL" in r.json()["message"]
    finally:
        await g.stop()
