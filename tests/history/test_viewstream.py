"""Time travel (issue 19): the views a live client held are what ``view?at=`` rebuilds afterwards.

Real broker, aggregator, recorder, PostgreSQL and gateway; a WebSocket client of the default stream
records the view it holds after every frame; afterwards ``GET /operator/system/view?at=`` for those
moments answers the same view, section by section, byte for byte.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from gateway.config import GatewayConfig
from gateway.server import Gateway
from gateway.view_api import LIVE_MARGIN_S
from history.config import HistoryConfig
from history.viewstream import (
    BLOCK_S,
    StreamMessage,
    compact,
    decode_block,
    decompress,
    encode_block,
    replay,
    stream_row,
)
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.view_schema import check_frame
from tests.conftest import eventually
from tests.gateway.client import Mirror, recv
from tests.history.conftest import Stack, start_stack
from tests.history.test_recorder import _stop_for, traffic
from tests.support.servers import Mosquitto, PrivatePostgres, scaled

V = "/operator/system/view"
_enc = msgspec.json.Encoder()
#: JSON objects are unordered: a member a patch added sits last in a patching client's copy but in the
#: aggregator's order in a snapshot, so "byte-identical" is compared with the keys sorted
_sorted = msgspec.json.Encoder(order="sorted")


@pytest.fixture
async def stack3(mosquitto: Mosquitto, database_url: str) -> AsyncIterator[Stack]:
    # a snapshot every 3 s: a 12 s run crosses several, so moments rebuild from different snapshots
    s = await start_stack(mosquitto.url, database_url, OPSDASH_AGGREGATOR__SNAPSHOT_EVERY_S="3")
    yield s
    await cancel_and_wait(s.tasks)


@pytest.fixture
async def gw(mosquitto: Mosquitto, stack3: Stack, tmp_path: object) -> AsyncIterator[Gateway]:
    g = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path)), MqttConfig(url=mosquitto.url),
                app_config=SimpleNamespace(history=HistoryConfig(url=stack3.dsn)))
    await g.start()
    yield g
    await g.stop()


async def _hold_views(url: str, stop: asyncio.Event) -> list[tuple[int, float, dict[str, Any]]]:
    """(seq, generated_at, view) after every snapshot and patch the client applied."""
    held: list[tuple[int, float, dict[str, Any]]] = []
    mirror = Mirror()
    async with connect(url) as ws:
        while not stop.is_set():
            try:
                msg = await recv(ws, timeout=5)
            except TimeoutError:
                continue
            if msg["type"] not in ("snapshot", "patch"):
                continue
            mirror.feed(msg)
            assert mirror.gaps == 0
            assert mirror.state is not None
            meta = mirror.state["meta"]
            held.append((meta["seq"], meta["generated_at"], copy.deepcopy(mirror.state)))
    return held


async def test_view_at_gives_back_the_views_a_live_client_held(mosquitto: Mosquitto, stack3: Stack,
                                                                gw: Gateway) -> None:
    ws_url = gw.url.replace("http", "ws", 1) + "/operator/system/live"
    async with httpx.AsyncClient(base_url=gw.url) as http:
        before = await http.get(V, params={"at": "now"})
        assert before.status_code == 404 and before.json()["error"] == "not_recorded"
        stop = asyncio.Event()
        client = asyncio.create_task(_hold_views(ws_url, stop))
        await asyncio.sleep(1)
        total, _, reps = await traffic(mosquitto.url, 6)
        reps[0].event("webhook_timeout", "POST https://hooks.example/a timed out after 10 s")
        for r in reps[1:]:
            await r.stop()  # two instances go away: states, reasons and totals change
        await asyncio.sleep(5)
        await reps[0].stop()
        await asyncio.sleep(2)
        stop.set()
        held = await client
        assert len(held) >= 12
        last_ts = held[-1][1]
        await eventually(lambda: not stack3.recorder.buffer and stack3.recorder.writer.rows_written > 0,
                         timeout=15, what="recorder caught up")

        await _check_moments(http, held)
        # the moments with the instances gone show them gone, with the reason of that moment
        _, gen_at, view = held[-1]
        assert view["services"]["ingest"]["instances_total"] == 3
        r = (await http.get(V, params={"at": repr(gen_at), "sections": "health,services"})).json()
        assert set(r) == {"meta", "health", "services"}
        assert r["services"] == view["services"] and r["health"] == view["health"]
        # an ISO time (whole second) answers the last tick at or before it
        whole = int(held[len(held) // 2][1])
        want = max((g for _, g, _ in held if g <= whole), default=None)
        if want is not None:
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(whole))
            r = (await http.get(V, params={"at": iso})).json()
            assert r["meta"]["generated_at"] == want

        await _check_replay(ws_url, held)

        # packed into blocks (history/viewstream.compact, as the recorder does 2 min after a block):
        # the same answers, from blocks holding fewer snapshots than were published
        packed = await _pack_all(stack3, last_ts)
        assert packed["rows"] == 0 and packed["blocks"] >= 1, packed
        assert packed["snaps_kept"] < packed["snaps_published"], packed
        await _check_moments(http, held)
        await _check_replay(ws_url, held)

        # before the first record: 404 naming the oldest time
        r = await http.get(V, params={"at": repr(held[0][1] - 3600)})
        assert r.status_code == 404
        body = r.json()
        assert body["error"] == "not_recorded" and body["oldest"] <= held[0][1] + 3
        assert body["oldest"] <= last_ts
        # per-instance detail is not recorded; bad parameters are named
        r = await http.get(V, params={"at": "now", "sections": "services/ingest"})
        assert r.status_code == 400 and r.json()["parameter"] == "sections"
        r = await http.get(V, params={"at": "yesterday"})
        assert r.status_code == 400 and r.json()["parameter"] == "at"
        r = await http.get(V)
        assert r.status_code == 400 and r.json()["parameter"] == "at"
    assert total > 0


async def _check_moments(http: httpx.AsyncClient, held: list[tuple[int, float, dict[str, Any]]],
                         every: int = 10) -> None:
    """view?at= at held moments (the tick itself, and just after it) answers the held view exactly."""
    for seq, gen_at, view in [*held[::max(1, len(held) // every)], *held[-3:]]:
        for at in (gen_at, gen_at + 0.0005):
            r = await http.get(V, params={"at": repr(at)})
            assert r.status_code == 200, r.text
            got = r.json()
            assert (got["meta"]["seq"], got["meta"]["generated_at"]) == (seq, gen_at), (seq, gen_at, got["meta"])
            assert set(got) == set(view)
            for section in view:  # byte-identical, section by section
                assert got[section] == view[section], (seq, section)
                assert _sorted.encode(got[section]) == _sorted.encode(view[section]), (seq, section)


async def _pack_all(stack: Stack, upto: float) -> dict[str, int]:
    """Pack every block recorded so far (as the recorder does 2 min after a block's end); what the
    tables hold then up to ``upto``."""
    writer = stack.recorder.writer
    assert writer.pool is not None
    async with writer.pool.acquire() as conn:
        published = int(await conn.fetchval("SELECT count(*) FROM view_stream WHERE snap"))
        assert await writer.compact_views(before=time.time() + BLOCK_S + 1) >= 1
        while await compact(conn, time.time() + 2 * BLOCK_S):  # the rest, and the rows written meanwhile
            pass
        snaps = 0
        for r in await conn.fetch("SELECT body FROM view_blocks"):
            snaps += sum(1 for m in decode_block(r["body"]) if m.base is None)
        rows = await conn.fetchval("SELECT count(*) FROM view_stream WHERE ts <= $1",
                                   datetime.fromtimestamp(upto, UTC))
        return {"rows": int(rows), "blocks": int(await conn.fetchval("SELECT count(*) FROM view_blocks")),
                "snaps_kept": snaps, "snaps_published": published}


async def _check_replay(ws_url: str, held: list[tuple[int, float, dict[str, Any]]]) -> None:
    """Replay at 10x from the first held moment: the same views in order, at the right pace, marked
    replay; then it catches up and goes live by itself. A paused seek, then "live"."""
    by_seq = {seq: view for seq, _, view in held}
    loop = asyncio.get_running_loop()
    async with connect(ws_url) as ws:
        await recv(ws, "snapshot")
        start_seq, start_ts = held[0][0], held[0][1]
        await ws.send(json.dumps({"type": "replay", "from": start_ts, "speed": 10}))
        ack = await recv(ws, "replay")
        check_frame(ack)
        assert ack["ok"] and ack["seq"] == start_seq and ack["speed"] == 10.0, ack
        mirror = Mirror()
        seen: list[int] = []
        pace: list[tuple[float, float]] = []  # (arrival, tick time)
        while True:
            msg = await recv(ws, timeout=10)
            if msg["type"] == "replay":
                assert msg == {"type": "replay", "ok": True, "ended": "caught_up"}
                caught_up = time.time()
                break
            if msg["type"] not in ("snapshot", "patch"):
                continue
            assert msg.get("replay") is True, msg  # no live frame while replaying
            check_frame(msg)
            mirror.feed(msg)
            assert mirror.gaps == 0 and mirror.state is not None
            seen.append(msg["seq"])
            pace.append((loop.time(), msg["ts"]))
            if msg["seq"] in by_seq:
                for section, value in by_seq[msg["seq"]].items():
                    assert _sorted.encode(mirror.state[section]) == _sorted.encode(value), (msg["seq"], section)
        # every tick the live client saw, in order, up to LIVE_MARGIN_S before it caught up (the live
        # snapshot that follows stands for the rest)
        replayed = [q for q in seen if q in by_seq]
        expected = [q for q, _, _ in held if q >= start_seq]
        assert replayed == expected[:len(replayed)]
        assert all(q in replayed for q, t, _ in held if q >= start_seq and t <= caught_up - LIVE_MARGIN_S - 0.5)
        assert len(replayed) >= 10
        # at 10x: the wall time between frames is a tenth of the ticks' (+- 10 %, 0.2 s of slack)
        wall = pace[-1][0] - pace[0][0]
        want = (pace[-1][1] - pace[0][1]) / 10
        assert abs(wall - want) <= 0.1 * want + 0.2, (wall, want)
        live = await recv(ws, "snapshot")
        assert "replay" not in live and live["seq"] >= held[-1][0]
        # paused seek: the view at that moment only; then back to live
        mid_seq, mid_ts, mid_view = held[len(held) // 2]
        await ws.send(json.dumps({"type": "replay", "from": mid_ts, "speed": 0}))
        assert (await recv(ws, "replay"))["ok"]
        snap = await recv(ws, "snapshot")
        assert snap["replay"] is True and snap["seq"] == mid_seq
        assert _sorted.encode(snap["state"]) == _sorted.encode(mid_view)
        await ws.send(json.dumps({"type": "live"}))
        live = await recv(ws, "snapshot")
        assert "replay" not in live
        # refusals leave the socket open
        await ws.send(json.dumps({"type": "replay", "from": mid_ts, "speed": 100}))
        r = await recv(ws, "replay")
        assert r["ok"] is False and r["code"] == "bad_request" and r["field"] == "speed"
        await ws.send(json.dumps({"type": "replay", "from": held[0][1] - 3600}))
        r = await recv(ws, "replay")
        assert r["ok"] is False and r["code"] == "not_recorded" and r["oldest"] is not None
        check_frame(r)
        await ws.send(json.dumps({"type": "resync"}))
        assert "replay" not in await recv(ws, "snapshot")


async def test_view_at_is_404_with_history_off(mosquitto: Mosquitto, tmp_path: object) -> None:
    g = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path)), MqttConfig(url=mosquitto.url),
                app_config=SimpleNamespace(history=HistoryConfig()))
    await g.start()
    try:
        async with httpx.AsyncClient(base_url=g.url) as http:
            r = await http.get(V, params={"at": "-1m"})
            assert r.status_code == 404 and r.json()["error"] == "history_off"
    finally:
        await g.stop()


def test_replay_stops_at_a_lost_patch_and_skips_duplicates() -> None:
    snap = stream_row("snapshot", json.dumps({"seq": 5, "ts": 100.0, "state": {
        "meta": {"seq": 5, "generated_at": 100.0}, "services": {"a": {"status": "healthy",
                                                                     "instances": {"a-1": {}}}}}}).encode())
    assert b"instances" not in decompress(snap[5])

    def p(seq: int, status: str) -> tuple[float, int, int, dict[str, Any]]:
        return (100.0 + seq, seq, seq - 1, {"patch": {"meta": {"seq": seq, "generated_at": 100.0 + seq},
                                                      "services": {"a": {"status": status}}}})
    base = {"meta": {"seq": 5, "generated_at": 100.0}, "services": {"a": {"status": "healthy"}}}
    state, seq, ts, n, gap = replay(base, 5, 100.0, [p(5, "x"), p(6, "down"), p(6, "down"), p(7, "degraded")])
    assert (seq, ts, n, gap) == (7, 107.0, 2, False) and state["services"]["a"]["status"] == "degraded"
    state, seq, ts, n, gap = replay(base, 5, 100.0, [p(6, "down"), p(8, "healthy")])
    assert (seq, n, gap) == (6, 1, True) and state["services"]["a"]["status"] == "down"
    assert base["services"]["a"]["status"] == "healthy"  # not mutated
    # a patch's per-instance detail is cut like the default stream's
    row = stream_row("patch", _enc.encode(ViewPatch(seq=6, base=5, ts=106.0, patch={
        "services": {"a": {"instances": {"a-1": {"status": "down"}}}}})))
    assert row[1:4] == (6, False, 5) and b"instances" not in decompress(row[5])
    with pytest.raises(ValueError):
        stream_row("snapshot", _enc.encode(ViewSnapshot(seq=1, ts=-5.0, state={})))


async def test_view_at_across_an_aggregator_restart_and_a_database_outage(
        mosquitto: Mosquitto, private_pg: PrivatePostgres, private_dsn: str, tmp_path: object) -> None:
    """The database is away for 6 s (the recorder buffers the stream), then the aggregator restarts
    (seq from 1 again): every moment the live client held is still rebuilt exactly."""
    stack = await start_stack(mosquitto.url, private_dsn, OPSDASH_AGGREGATOR__SNAPSHOT_EVERY_S="3")
    g = Gateway(GatewayConfig(listen="127.0.0.1:0", static_dir=str(tmp_path)), MqttConfig(url=mosquitto.url),
                app_config=SimpleNamespace(history=HistoryConfig(url=private_dsn)))
    await g.start()
    try:
        await eventually(lambda: stack.recorder.db_up, timeout=10, what="database up")
        stop = asyncio.Event()
        client = asyncio.create_task(_hold_views(g.url.replace("http", "ws", 1) + "/operator/system/live", stop))
        outage = asyncio.create_task(asyncio.to_thread(_stop_for, private_pg, 6.0))
        buffered = 0

        async def sample() -> None:
            nonlocal buffered
            while True:
                buffered = max(buffered, sum(1 for _, _, it in stack.recorder.buffer if it.kind == "view"))
                await asyncio.sleep(0.1)
        sampler = asyncio.create_task(sample())
        _, _, reps = await traffic(mosquitto.url, 10)
        await outage
        await cancel_and_wait([sampler])
        assert buffered >= 5, f"the view stream was not held in the buffer while the database was away ({buffered})"
        await cancel_and_wait([stack.tasks[0]])  # the aggregator restarts
        agg = build_aggregator(stack.config)
        stack.tasks[0] = asyncio.create_task(agg.run())
        await asyncio.wait_for(agg.connected.wait(), scaled(10))
        for r in reps:
            r.inc("messages_received", 5)
        await asyncio.sleep(6)
        for r in reps:
            await r.stop()
        await asyncio.sleep(1)
        stop.set()
        held = await client
        await eventually(lambda: stack.recorder.db_up and not stack.recorder.buffer, timeout=30,
                         what="recorder wrote its backlog")
        assert stack.recorder.drops == 0
        seqs = [q for q, _, _ in held]
        assert any(b < a for a, b in itertools.pairwise(seqs)), "the aggregator did not restart"
        async with httpx.AsyncClient(base_url=g.url) as http:
            for seq, gen_at, view in held[:: max(1, len(held) // 25)] + held[-3:]:
                r = await http.get(V, params={"at": repr(gen_at)})
                assert r.status_code == 200, r.text
                got = r.json()
                assert (got["meta"]["seq"], got["meta"]["generated_at"]) == (seq, gen_at), (
                    seq, gen_at, got["meta"], seqs, stack.recorder.rejected)
                for section in view:
                    assert _sorted.encode(got[section]) == _sorted.encode(view[section]), (seq, section)
            # packed into blocks: the restarted aggregator's first snapshot is kept (it is not what the
            # patches before it give), and every moment is still rebuilt exactly
            packed = await _pack_all(stack, held[-1][1])
            assert packed["rows"] == 0 and packed["snaps_kept"] < packed["snaps_published"], packed
            await _check_moments(http, held, every=25)
    finally:
        await g.stop()
        await cancel_and_wait(stack.tasks)


def _msg(ts: float, seq: int, base: int | None, body: dict[str, Any]) -> StreamMessage:
    return StreamMessage(ts, seq, base, body)


def test_a_block_keeps_every_patch_exactly_and_only_the_snapshots_it_cannot_derive() -> None:
    def view(seq: int, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"meta": {"seq": seq, "generated_at": 100.0 + seq}, "services": {"a": {"status": status}},
                **(extra or {})}

    def patch(seq: int, base: int, body: dict[str, Any]) -> StreamMessage:
        return _msg(100.0 + seq, seq, base, {"patch": {"meta": {"seq": seq, "generated_at": 100.0 + seq},
                                                       **body}, "append": {}})
    msgs = [
        _msg(101.0, 1, None, view(1, "healthy")),
        patch(2, 1, {"services": {"a": {"status": "down"}}, "new": {"z": 1, "a": {}}}),
        patch(3, 2, {"new": None, "services": {"a": {"status": "healthy", "why": [1, "x", None]}}}),
        # derivable: dropped
        _msg(103.0, 3, None, {**view(3, "healthy"), "services": {"a": {"status": "healthy",
                                                                          "why": [1, "x", None]}}}),
        patch(4, 3, {"services": {"a": {"why": None}}}),
        # the seq held, but not what the patches give (the aggregator knew more): kept
        _msg(104.0, 4, None, view(4, "healthy", {"x": 1.5})),
        patch(6, 5, {"services": {"a": {"status": "degraded"}}}),  # a lost patch (base 5)
        _msg(106.0, 6, None, view(6, "degraded")),  # after the gap: kept
        _msg(107.0, 1, None, view(1, "unknown")),  # an aggregator restart (seq from 1): kept
        patch(8, 7, {}),
    ]
    msgs[-1] = _msg(108.0, 2, 1, {"patch": {"meta": {"seq": 2}}, "append": {"s": [108.0, 3.25]},
                                  "errors": [{"id": 1, "message": "m"}]})
    body, raw_len, kept = encode_block(list(reversed(msgs)))
    assert raw_len > 0 and len(body) < raw_len
    got = decode_block(body)
    assert [(m.ts, m.seq, m.base) for m in got] == [(m.ts, m.seq, m.base) for m in kept]
    want = [m for i, m in enumerate(msgs) if i != 3]
    assert [(m.ts, m.seq, m.base) for m in got] == [(m.ts, m.seq, m.base) for m in want]
    for g, w in zip(got, want, strict=True):  # exactly, key order included
        assert _enc.encode(g.body) == _enc.encode(w.body), (w.seq, g.body, w.body)


async def test_packing_before_any_view_message_is_a_no_op(database_url: str) -> None:
    """The recorder packs after every write; its first writes may hold only events or seconds (no view
    message yet): packing then does nothing, where it raised on a NaN horizon and stopped the recorder."""
    from history.store import Writer

    w = Writer(database_url)
    await w.open()
    try:
        assert await w.compact_views() == 0
    finally:
        await w.close()
