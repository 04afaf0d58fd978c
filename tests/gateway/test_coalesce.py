"""Patches coalesced for clients that cannot take one per early tick (design.md section 12): a client
with ``max_rate`` in its hello gets at most that many patches a second, each composed from the ones it
skipped, and ends with exactly the view a client of every patch holds."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import msgspec
from websockets.asyncio.client import connect

from gateway.store import COALESCE_LOG, ViewStore
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.view_diff import apply_append, merge_patch
from tests.gateway.client import Mirror, close_code, recv
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim


def apply_coalesced(state: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
    """What a client does with a coalesced patch: the merge patch, then every appended point."""
    new: dict[str, Any] = merge_patch(state, msg["patch"])
    for name, points in msg.get("appends", {}).items():
        for point in points:
            apply_append(new.setdefault("series", {}), {name: point}, new["meta"].get("series_len", 900))
    return new


def test_a_coalesced_patch_takes_the_old_view_to_the_new_one() -> None:
    sim = ViewSim(seed=3)
    store = ViewStore()
    store.apply_snapshot(ViewSnapshot(**sim.snapshot()), 0.0)
    held = {0: sim.client_state()}
    for k in range(1, 9):
        store.apply_patch(msgspec.convert(sim.step(), ViewPatch), float(k))
        held[k] = sim.client_state()
    for since in (0, 3, 7):
        msg = json.loads(store.coalesced_message(None, since) or b"null")
        assert (msg["seq"], msg["base"], msg["coalesced"]) == (8, since, 8 - since)
        assert all(len(points) == 8 - since for points in msg["appends"].values())
        assert apply_coalesced(held[since], msg) == held[8]
    # sections: only what was asked for, and no appends without series
    msg = json.loads(store.coalesced_message(frozenset({"health", "meta"}), 2) or b"null")
    assert set(msg["patch"]) <= {"health", "meta"} and "appends" not in msg


def test_a_seq_older_than_the_log_gets_no_patch() -> None:
    sim = ViewSim(seed=4)
    store = ViewStore()
    store.apply_snapshot(ViewSnapshot(**sim.snapshot()), 0.0)
    for k in range(COALESCE_LOG + 1):
        store.apply_patch(msgspec.convert(sim.step(), ViewPatch), float(k))
    assert store.coalesced_message(None, 0) is None  # fell out: the client needs a snapshot
    assert store.coalesced_message(None, store.seq - 1) is not None


async def test_a_slow_screen_gets_at_most_max_rate_patches_and_the_same_view(
        make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway()
    sim = ViewSim(seed=9)
    await published(gw, publisher, sim)
    async with connect(f"ws://127.0.0.1:{gw.port}/operator/system/live") as every, \
            connect(f"ws://127.0.0.1:{gw.port}/operator/system/live") as slow:
        await slow.send(json.dumps({"type": "hello", "max_rate": 2}))
        full, lean = Mirror(), Mirror()
        full.feed(await recv(every, "snapshot"))
        await recv(slow, "snapshot")  # the first, before its hello
        lean.feed(await recv(slow, "snapshot"))  # after its hello
        got: list[dict[str, Any]] = []

        async def read_slow() -> None:
            while True:
                msg = json.loads(await slow.recv())
                if msg["type"] == "patch":
                    got.append(msg)
                    assert msg["base"] == lean.seq
                    assert lean.state is not None
                    if "coalesced" in msg:  # composed from the patches it skipped
                        lean.state, lean.seq = apply_coalesced(lean.state, msg), msg["seq"]
                    else:  # it was due for exactly the next patch: the ordinary one
                        lean.feed(msg)
                elif msg["type"] == "snapshot":
                    lean.feed(msg)

        reader = asyncio.create_task(read_slow())
        started = time.monotonic()
        for _ in range(30):  # ten patches a second for 3 s, as early ticks send them
            p = sim.step()
            await publisher.patch(p)
            full.feed(await recv(every, "patch"))
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.6)  # the last due patch: one more from the bus triggers it
        p = sim.step()
        await publisher.patch(p)
        full.feed(await recv(every, "patch"))
        await asyncio.sleep(0.3)
        reader.cancel()
    assert full.state == sim.client_state()
    assert lean.seq == full.seq and lean.state == full.state  # the same view, fewer messages
    assert len(got) <= 2 * (elapsed + 1.2) + 1, (len(got), elapsed)  # at most max_rate a second
    assert sum(m.get("coalesced", 1) for m in got) == 31  # every patch, in fewer messages
    assert gw.counters.coalesced_total >= 20


async def test_a_bad_max_rate_is_refused_with_the_reason(make_gateway: GatewayFactory,
                                                        publisher: Publisher) -> None:
    gw = await make_gateway()
    await published(gw, publisher, ViewSim(seed=2))
    async with connect(f"ws://127.0.0.1:{gw.port}/operator/system/live") as ws:
        await ws.send(json.dumps({"type": "hello", "max_rate": 0}))
        err = await recv(ws, "error")
        assert "max_rate must be patches per second in (0, 20.0], got 0" in err["message"]
        assert await close_code(ws) == 1008
