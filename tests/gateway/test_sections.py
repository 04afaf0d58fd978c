"""Per-instance detail only where it is looked at (design.md section 12, docs/websocket.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gateway.errors import ProtocolError
from gateway.sections import filter_view, not_allowed
from gateway.store import ViewStore, parse_sections
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.fold import Fold
from tests.bus.simulate import FakeReporter, new_fold
from tests.gateway.client import Mirror, recv
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim

T0 = 1_800_000_000.0
SERVICES = ("ingest", "evaluator", "dispatcher", "delivery")


def test_parse_sections_takes_one_service() -> None:
    assert parse_sections(["services/ingest", "health"]) == {"services/ingest", "health", "meta"}
    assert parse_sections(["services/my.svc-2"]) == {"services/my.svc-2", "meta"}
    for bad in (["services/Ingest"], ["services/"], ["services/a/b"], ["servicesx/ingest"]):
        with pytest.raises(ProtocolError, match="section names"):
            parse_sections(bad)


def test_service_sections_come_with_services_permission() -> None:
    assert not_allowed({"services/ingest", "health"}, {"services", "health", "meta"}) == set()
    assert not_allowed({"services/ingest", "health"}, {"health", "meta"}) == {"services/ingest"}


def _traffic(fold: Fold, reps: list[FakeReporter], now: float) -> None:
    for i, r in enumerate(reps):
        r.core.inc("messages_received", 10 + i)
        r.core.set_gauge("queue_depth", (now + i) % 7)
        r.send(fold, r.take(now), now)


def test_clients_hold_exactly_their_filtered_view_of_the_real_fold() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter(s, f"{s}-{i}") for s in SERVICES for i in range(3)]
    store = ViewStore()
    kinds: dict[str, frozenset[str] | None] = {
        "default": None,
        "ingest": parse_sections(["services/ingest"]),
        "health+ingest+delivery": parse_sections(["health", "services", "services/ingest",
                                                  "services/delivery"]),
        "summaries": parse_sections(["services"]),
    }
    mirrors = {k: Mirror() for k in kinds}
    for s in range(12):
        now = T0 + s
        if s == 6:
            reps.append(FakeReporter("billing", "billing-1"))  # a new service appears mid-stream
        _traffic(fold, reps, now + 0.2)
        out = fold.tick(now + 0.5)
        if s == 0:
            store.apply_snapshot(ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view), now)
            for k, m in mirrors.items():
                m.feed(json.loads(store.snapshot_message(kinds[k])))
            continue
        store.apply_patch(ViewPatch(seq=out.seq, base=out.base, ts=out.ts, patch=out.patch,
                                    append=out.append, errors=out.errors), now)
        for k, m in mirrors.items():
            m.feed(json.loads(store.patch_message(kinds[k])))
            assert m.state == filter_view(store.state or {}, kinds[k]), f"{k} diverged at {s}"
    full = store.state
    assert full is not None and set(full["services"]["ingest"]["instances"]) == {"ingest-0", "ingest-1",
                                                                                "ingest-2"}
    default = mirrors["default"].state
    assert default is not None and set(default) == set(full)  # every section
    assert set(default["services"]) == set(SERVICES) | {"billing"}
    for name, entry in default["services"].items():
        assert "instances" not in entry
        assert entry["instances_total"] == len(full["services"][name]["instances"])
    ingest = mirrors["ingest"].state
    assert ingest is not None and set(ingest) == {"meta", "services"}
    assert ingest["services"] == {"ingest": full["services"]["ingest"]}
    totals = {i: v["totals"]["messages_received"] for i, v in ingest["services"]["ingest"]["instances"].items()}
    assert totals == {"ingest-0": 12 * 10, "ingest-1": 12 * 11, "ingest-2": 12 * 12}  # known traffic in
    both = mirrors["health+ingest+delivery"].state
    assert both is not None and "instances" in both["services"]["delivery"]
    assert "instances" not in both["services"]["evaluator"] and "health" in both
    summaries = mirrors["summaries"].state
    assert summaries is not None and summaries["services"] == default["services"]


def test_summary_figures_are_right() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", f"ingest-{i}") for i in range(3)]
    reps[0].core = type(reps[0].core)("boot-1", 1.0, 0.0)
    for r in reps:
        r.online(fold, T0)
    _traffic(fold, reps, T0 + 0.2)
    reps[1].restart("boot-2")
    reps[1].online(fold, T0 + 0.4)
    reps[2].offline(fold, T0 + 0.5, "lost")
    view = fold.tick(T0 + 1).view
    s = view["services"]["ingest"]
    assert (s["instances_total"], s["restarts"]) == (3, 1)
    assert s["instances_by_status"]["down"] == 1 and sum(s["instances_by_status"].values()) == 3


def test_default_stream_does_not_grow_with_instances() -> None:
    """Generous bounds here; the figures are bench/bench_stream_bytes.py's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_stream_bytes import measure  # type: ignore[import-not-found]

    small, big = measure(200, 4, warm=2), measure(2000, 4, warm=2)
    assert big["default"] <= 2.0 * small["default"] and big["default"] <= 20_000, (small, big)
    assert big["whole view"] >= 5 * small["whole view"]  # the instances are there, on the bus
    assert 0.15 <= big["one service"] / big["whole view"] <= 0.35  # one service of four


def ws_url(gw: Any, query: str = "") -> str:
    return f"ws://127.0.0.1:{gw.port}/operator/system/live{query}"


async def test_live_subscription_to_one_service(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=8)
    await published(gw, publisher, sim)
    full = sim.state()
    assert "instances" in full["services"]["ingest"]
    async with connect(ws_url(gw)) as default, \
            connect(ws_url(gw, "?sections=health,services/ingest")) as one:
        snap = await recv(default, "snapshot")
        assert snap["state"]["services"]["ingest"] == {
            k: v for k, v in full["services"]["ingest"].items() if k != "instances"}
        snap1 = await recv(one, "snapshot")
        assert set(snap1["state"]) == {"meta", "health", "services"}
        assert snap1["state"]["services"] == {"ingest": full["services"]["ingest"]}
        mirror = Mirror()
        mirror.feed(snap1)
        for _ in range(3):
            await publisher.patch(sim.step())
            mirror.feed(await recv(one, "patch"))
        assert mirror.state == sim.client_state(parse_sections(["health", "services/ingest"]))
        # a hello switches: now only the summaries
        await one.send(json.dumps({"type": "hello", "sections": ["services"]}))
        snap2 = await recv(one, "snapshot")
        assert all("instances" not in v for v in snap2["state"]["services"].values())


async def test_display_token_needs_services_for_one_service(make_gateway: GatewayFactory,
                                                            publisher: Publisher) -> None:
    gw = await make_gateway(auth="token", tokens=["op"], display_tokens=["wall"])
    await published(gw, publisher, ViewSim(seed=9))
    async with connect(ws_url(gw)) as ws:
        await ws.send(json.dumps({"type": "hello", "token": "wall", "sections": ["services/ingest"]}))
        msg = await recv(ws)
        assert msg["type"] == "error" and "services/ingest" in msg["message"]


async def test_rest_graph_endpoint(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    import httpx

    from telemetry_bus.contract import encode, topics

    gw = await make_gateway()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as http:
        assert (await http.get("/operator/system/graph")).status_code == 503  # no view yet
        state = ViewSim(seed=10).state()
        state["graph"] = {"nodes": {"postgres": {"status": "down", "impacted_by": [], "root_cause": True},
                                    "delivery": {"status": "degraded", "impacted_by": ["postgres"]},
                                    "ingest": {"status": "healthy", "impacted_by": []}},
                          "edges": [["delivery", "postgres"]],
                          "roots": [{"component": "postgres", "status": "down", "impacts": ["delivery"]}],
                          "summary": "postgres down — 1 component impacted"}
        await publisher.client.publish(topics.snapshot("$ops"), encode({"seq": 7, "ts": 1.0, "state": state}),
                                       qos=1, retain=True)
        from tests.conftest import eventually
        await eventually(lambda: gw.store.seq == 7, what="the view")
        got = (await http.get("/operator/system/graph")).json()
    assert got == {
        "nodes": {"postgres": {"status": "down", "impacted_by": [], "root_cause": True},
                  "delivery": {"status": "degraded", "impacted_by": ["postgres"], "root_cause": False},
                  "ingest": {"status": "healthy", "impacted_by": [], "root_cause": False}},
        "edges": [["delivery", "postgres"]],
        "roots": [{"component": "postgres", "status": "down", "impacts": ["delivery"]}],
        "summary": "postgres down — 1 component impacted", "ignored": []}
