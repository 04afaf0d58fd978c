"""`opsdash watch`: the pure model, what it renders, and a clean exit when a real gateway refuses it."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from gateway.watch import WatchModel, live_url, render, run_watch
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim
from tests.support.servers import ROOT


def test_live_url_accepts_what_an_operator_types() -> None:
    assert live_url("http://gw:8787").startswith("ws://gw:8787/operator/system/live?sections=")
    assert live_url("https://gw").startswith("wss://gw/operator/system/live")
    assert live_url("gw:8787").startswith("ws://gw:8787/")
    with pytest.raises(ValueError, match="URL must be"):
        live_url("ftp://gw")


def test_model_applies_patches_and_asks_for_resync_on_a_gap() -> None:
    sim = ViewSim(seed=3)
    model = WatchModel()
    assert model.feed({"type": "snapshot", "seq": sim.seq, "state": sim.state()}) is None
    for _ in range(20):
        assert model.feed({"type": "patch", **sim.step()}) is None
        assert model.state == sim.state()
    sim.step()  # this patch is lost
    assert model.feed({"type": "patch", **sim.step()}) == {"type": "resync"}
    assert model.resyncs == 1
    assert model.feed({"type": "patch", **sim.step()}) == {"type": "resync"}  # until a snapshot
    model.feed({"type": "snapshot", "seq": sim.seq, "state": sim.state()})
    assert model.feed({"type": "patch", **sim.step()}) is None and model.state == sim.state()


def test_render_shows_the_figures_and_unknown_as_a_dash() -> None:
    model = WatchModel()
    model.feed({"type": "snapshot", "seq": 1, "state": {
        "health": {"status": "degraded", "components": {"ingest": {"status": "healthy"},
                                                        "delivery": {"status": "degraded"}}},
        "metrics": {"throughput": {"ingest_rate_per_sec": 125.5}, "latency": {}},
        "capacity": {"postgres": {"connections_used": 15, "connections_max": 100}},
        "aggregates": {"tenants": {"total": 14}},
        "errors": {"errors": [{"timestamp": "10:02:15", "service": "delivery", "type": "webhook_timeout",
                               "message": "POST https://example.com/hook timed out"}]}}})
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(render(model, "http://gw"))
    text = out.getvalue()
    assert "SYSTEM STATUS DEGRADED" in text
    assert "125.5" in text and "PG conn 15/100" in text and "Tenants 14" in text
    assert "Alerts open —" in text  # unknown, not 0
    assert "webhook_timeout" in text and "delivery" in text


async def test_watch_renders_a_real_gateway_once(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=8)
    await published(gw, publisher, sim)
    out = io.StringIO()
    code = await run_watch(gw.url, None, console=Console(file=out, width=140, color_system=None), once=True)
    assert code == 0
    assert "SYSTEM STATUS" in out.getvalue()


async def test_watch_exits_2_with_a_clear_message_when_refused(make_gateway: GatewayFactory,
                                                              publisher: Publisher) -> None:
    gw = await make_gateway(auth="token", tokens=["right"])
    await published(gw, publisher, ViewSim(seed=9))
    out = io.StringIO()
    code = await run_watch(gw.url, "wrong", console=Console(file=out, width=140, color_system=None))
    assert code == 2
    assert "opsdash watch: refused by the gateway: HTTP 401: unknown token" in out.getvalue()


def test_watch_command_with_a_bad_url_exits_1_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "opsdash.cli", "watch", "ftp://nowhere"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert "URL must be http(s):// or ws(s)://" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
