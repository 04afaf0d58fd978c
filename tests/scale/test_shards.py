"""Aggregator shards (design.md section 12, telemetry_bus/shards.py): the merged view of two shards is
the view one aggregator makes of the same traffic; a dead shard's services show unknown with the reason.
The pure merge is checked against a single fold fed the same messages; then two real shard processes
over a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import (
    ProbeResult,
    ViewPatch,
    ViewSnapshot,
    decode_patch,
    decode_snapshot,
    encode,
    topics,
)
from telemetry_bus.fold import Fold
from telemetry_bus.reporter import Reporter
from telemetry_bus.shards import ShardMerger, ShardSection, ShardStatus, parse_shard, shard_config, shard_of
from telemetry_bus.view_diff import apply_view_patch
from telemetry_bus.view_schema import check_view
from tests.bus.simulate import ROOT, FakeReporter
from tests.conftest import eventually
from tests.support.servers import Mosquitto


async def _until(pred: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    try:
        await eventually(pred, timeout=timeout, what="")
    except AssertionError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what()}") from None

# crc32 % 2: ingest, dispatcher, delivery, worker -> 0; evaluator, api -> 1
SERVICES = ("ingest", "evaluator", "dispatcher", "delivery", "api", "worker")


def test_parse_and_hash_are_stable() -> None:
    assert parse_shard("1/2") == (1, 2) and parse_shard("0/1") == (0, 1)
    for bad, why in (("2/2", "index must be 0..1"), ("1", "must be k/n"), ("0/0", "count must be 1..64"),
                     ("0/65", "count must be 1..64")):
        with pytest.raises(ValueError, match=why):
            parse_shard(bad)
    # crc32, the same in every process and language (Python's hash() is salted)
    assert [shard_of(s, 2) for s in SERVICES] == [zlib.crc32(s.encode()) % 2 for s in SERVICES] == [0, 1, 0, 0, 1, 0]
    assert shard_of("anything", 1) == 0
    cfg = AggregatorConfig()
    assert shard_config(cfg, 1, 2).expected_services == ["evaluator"]
    assert shard_config(cfg, 1, 2).expected_probes == [] and shard_config(cfg, 0, 2).expected_probes


def _feed_all(folds: list[Fold], fold_of: Any, reps: list[FakeReporter], seconds: int, t0: float) -> float:
    """The same traffic into the single fold and into the shard that owns each service (probes: 0)."""
    now = t0
    probe = ProbeResult(ts=t0, status="down", latency_ms=2.0, error="connection refused")
    for f in (folds[0], fold_of(None)):
        f.feed(topics.probe(ROOT, "postgres"), encode(probe), now)
    for r in reps:
        for f in (folds[0], fold_of(r.service)):
            r.online(f, now)
    for s in range(seconds):
        now = t0 + s + 0.5
        for i, r in enumerate(reps):
            r.core.inc("messages_received", 10 * (i + 1))
            r.core.observe("influx_write_ms", 3.0 + i)
            if s == 3 and r.service in ("api", "ingest"):
                r.core.event("auth_failed", "bad token", now)
            msg = r.take(now)
            for f in (folds[0], fold_of(r.service)):
                r.send(f, msg, now)
            while r.core.events:
                e = r.core.events.popleft()
                for f in (folds[0], fold_of(r.service)):
                    f.feed(topics.events(ROOT, r.service, r.instance), encode(e), now)
    return now


def _shard_folds(t0: float) -> list[Fold]:
    """Two shards' folds, as two ``opsdash aggregator`` processes with 0/2 and 1/2 build them."""
    folds = []
    for k in range(2):
        f = Fold(shard_config(AggregatorConfig(id=f"sh-{k}", shard=f"{k}/2"), k, 2), ROOT, t0)
        f.view.add("shard", ShardSection(k, 2))
        folds.append(f)
    return folds


def _strip(view: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in view.items() if k not in ("meta", "errors", "shard", "series")}
    return json.loads(json.dumps(out, sort_keys=True))  # type: ignore[no-any-return]


def test_the_merged_view_is_the_view_of_one_aggregator() -> None:
    cfg = AggregatorConfig(id="one")
    t0 = 1000.0
    single = Fold(cfg, ROOT, t0)
    shards = _shard_folds(t0)
    reps = [FakeReporter(s, f"{s}-{i}") for s in SERVICES for i in range(2)]
    now = _feed_all([single, *shards], lambda name: shards[shard_of(name, 2) if name else 0], reps, 20, t0)
    merger = ShardMerger(0, 2, AggregatorConfig(id="sh-0", shard="0/2"))
    for _ in range(2):  # two ticks: hysteresis settles the same way in all folds
        now += 1.0
        want = single.tick(now)
        outs = [f.tick(now) for f in shards]
        merger.own(outs[0].view, outs[0].seq, ShardStatus(state="online", shard="0/2", aggregator="sh-0"), now)
        merger.on_status(1, ShardStatus(state="online", shard="1/2", aggregator="sh-1"), now)
        merger.on_snapshot(1, ViewSnapshot(seq=outs[1].seq, ts=now, state=outs[1].view), now)
        got = merger.tick(now)
    assert _strip(got.view) == _strip(want.view)
    check_view(got.view)  # the contract's schema holds for the merged view (meta.shards included)
    # totals exact, each from the shard that folds the service
    for r in reps:
        inst = got.view["services"][r.service]["instances"][r.instance]
        assert inst["totals"]["messages_received"] == want.view["services"][r.service]["instances"][
            r.instance]["totals"]["messages_received"] > 0
    assert got.view["health"]["components"]["postgres"]["status"] == "down"
    assert got.view["series"] == {k: list(v) for k, v in want.view["series"].items()}
    gm, wm = got.view["meta"], want.view["meta"]
    for key in ("folded", "duplicates", "quarantined", "completeness"):
        assert gm[key] == wm[key], key
    assert gm["shards"]["1"]["status"] == "online" and gm["shards"]["0"]["aggregator"] == "sh-0"
    # the feed: the same entries (the merger's own ids), and a line when a shard came online
    notes = [e["message"] for e in got.view["errors"]["errors"] if e["service"] == "aggregator"]
    assert notes == ["aggregator shard 1/2 (sh-1) online"]
    strip_ids = [{k: v for k, v in e.items() if k != "id"} for e in got.view["errors"]["errors"]
                 if e["service"] != "aggregator"]
    assert sorted(strip_ids, key=json.dumps) == sorted(
        ({k: v for k, v in e.items() if k != "id"} for e in want.view["errors"]["errors"]), key=json.dumps)
    assert got.view["errors"]["counts"] == want.view["errors"]["counts"]


def test_a_dead_shard_shows_its_services_unknown_with_the_reason() -> None:
    t0 = 1000.0
    shards = _shard_folds(t0)
    reps = [FakeReporter(s, f"{s}-0") for s in SERVICES]
    now = _feed_all([Fold(AggregatorConfig(), ROOT, t0), *shards], lambda name: shards[shard_of(name, 2) if name else 0], reps, 5, t0)
    merger = ShardMerger(0, 2, AggregatorConfig(id="sh-0", shard="0/2"))
    me = ShardStatus(state="online", shard="0/2", aggregator="sh-0")
    # never heard of shard 1: its expected service (evaluator) is unknown, not missing
    out0 = shards[0].tick(now)
    merger.own(out0.view, out0.seq, me, now)
    first = merger.tick(now)
    ev = first.view["health"]["components"]["evaluator"]
    assert ev["status"] == "unknown" and ev["reason"] == "aggregator shard 1/2 has not reported yet"
    assert "api" not in first.view["services"]  # not expected, never seen: nothing to show yet
    # shard 1 reports, then dies (its Last Will)
    out1 = shards[1].tick(now)
    merger.on_status(1, ShardStatus(state="online", shard="1/2", aggregator="sh-1", ts=now), now)
    merger.on_snapshot(1, ViewSnapshot(seq=out1.seq, ts=now, state=out1.view), now)
    live = merger.tick(now + 0.1)
    assert live.view["services"]["api"]["status"] == "healthy"
    assert live.view["health"]["status"] == "healthy" or live.view["health"]["components"]["postgres"]
    merger.on_status(1, ShardStatus(state="offline", shard="1/2", aggregator="sh-1", ts=now + 1, reason="lost"),
                     now + 1)
    out0 = shards[0].tick(now + 1.5)
    merger.own(out0.view, out0.seq, me, now + 1.5)
    dead = merger.tick(now + 1.5)
    why = "aggregator shard 1/2 (sh-1) is offline: lost"
    for name in ("api", "evaluator"):
        svc = dead.view["services"][name]
        assert (svc["status"], svc["reason"]) == ("unknown", why)
        assert dead.view["health"]["components"][name]["status"] == "unknown"
        assert all(i["status"] == "unknown" for i in svc["instances"].values())
    assert dead.view["services"]["ingest"]["status"] == "healthy"
    assert dead.view["meta"]["shards"]["1"] == {"shard": "1/2", "aggregator": "sh-1", "status": "offline",
                                                "reason": why, "seq": out1.seq,
                                                "generated_at": out1.view["meta"]["generated_at"]}
    assert dead.patch["services"]["api"]["status"] == "unknown"  # the patch carries the change
    assert any(e["message"] == "aggregator shard 1/2 (sh-1) offline: lost" for e in dead.errors)
    # patches from the previous merged view rebuild the merged view exactly
    rebuilt = apply_view_patch({k: v for k, v in live.view.items() if k != "series"}, dead.patch, dead.append,
                               dead.errors)
    assert _strip(rebuilt) == _strip(dead.view)


# -- two shard processes over a real broker -----------------------------------------------------------


def _shard(url: str, k: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPSDASH_MQTT_URL": url, "OPSDASH_AGGREGATOR__ID": f"sh-{k}",
           "OPSDASH_AGGREGATOR__SHARD": f"{k}/2"}
    env.pop("OPSDASH_HISTORY_URL", None)
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "opsdash.cli", "aggregator"], env=env, stdout=fh,
                                stderr=fh, start_new_session=True)


class BusView:
    """The public view as a gateway holds it: the retained snapshot, then every patch on it."""

    def __init__(self) -> None:
        self.view: dict[str, Any] | None = None
        self.seq: int | None = None
        self.snapshots = 0
        self.gaps = 0

    async def run(self, m: Mosquitto) -> None:
        async with aiomqtt.Client(m.host, m.port) as c:
            await c.subscribe("$ops/v1/view/#", qos=1)
            async for msg in c.messages:
                body = msg.payload if isinstance(msg.payload, bytes) else b""
                if msg.topic.value.endswith("/snapshot"):
                    snap: ViewSnapshot = decode_snapshot(body)
                    self.view, self.seq = snap.state, snap.seq
                    self.snapshots += 1
                elif msg.topic.value.endswith("/patch") and self.view is not None:
                    p: ViewPatch = decode_patch(body)
                    if p.base != self.seq:
                        self.gaps += 1
                        continue
                    self.view = apply_view_patch(self.view, p.patch, p.append, p.errors)
                    self.seq = p.seq

    def svc(self, name: str) -> dict[str, Any]:
        return ((self.view or {}).get("services") or {}).get(name) or {}


async def test_two_shard_processes_publish_one_exact_view_and_a_killed_shard_shows(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    procs = {k: _shard(mosquitto.url, k, tmp_path / f"shard{k}.log") for k in range(2)}
    bus = BusView()
    watcher = asyncio.create_task(bus.run(mosquitto))
    reps = [Reporter(s, f"{s}-1", mqtt_url=mosquitto.url, interval_s=0.5) for s in SERVICES]
    sent = dict.fromkeys(SERVICES, 0)

    def logs() -> str:
        return "\n".join(f"--- shard {k}:\n" + (tmp_path / f"shard{k}.log").read_text()[-3000:] for k in procs)

    try:
        await _until(lambda: bus.view is not None and bus.view["meta"].get("shards", {}).get("1", {}).get(
            "status") == "online", timeout=30, what=lambda: f"both shards online\n{logs()}")
        for r in reps:
            await r.start()
        for _ in range(20):
            for i, r in enumerate(reps):
                r.inc("messages_received", i + 1)
                sent[r.service] += i + 1
            await asyncio.sleep(0.1)

        def exact(since: dict[str, int] | None = None) -> bool:
            """Every instance's folded total is what was sent (since ``since``, for a shard restarted)."""
            return all(bus.svc(s).get("instances", {}).get(f"{s}-1", {}).get("totals", {}).get(
                "messages_received") == n - (since or {}).get(s, 0) for s, n in sent.items())

        await _until(exact, timeout=20, what=lambda: f"exact totals {sent} in the merged view: "
                         f"{ {s: bus.svc(s).get('instances') for s in SERVICES} }\n{logs()}")
        assert bus.view is not None
        assert all(bus.svc(s)["status"] == "healthy" for s in SERVICES)
        assert bus.view["meta"]["aggregator"] == "sh-0"  # the lowest live shard publishes
        # kill -9 shard 1: its services (evaluator, api) go unknown with the reason; the rest stays
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(10)
        why = "aggregator shard 1/2 (sh-1) is offline: lost"
        await _until(lambda: bus.svc("api").get("reason") == why and bus.svc("evaluator").get("reason") == why,
                         timeout=15, what=lambda: f"shard 1's services unknown: {bus.svc('api')}")
        assert bus.svc("api")["status"] == "unknown" and bus.svc("ingest")["status"] == "healthy"
        assert bus.view["health"]["components"]["api"]["status"] == "unknown"
        # restarted: back; a new fold counts from what it receives, and its broker session kept every
        # message sent while it was away: its totals are exactly what was sent since the kill
        at_kill = {s: n for s, n in sent.items() if shard_of(s, 2) == 1}
        for i, r in enumerate(reps):
            r.inc("messages_received", i + 1)
            sent[r.service] += i + 1
        procs[1] = _shard(mosquitto.url, 1, tmp_path / "shard1.log")
        await _until(lambda: bus.svc("api").get("status") == "healthy" and exact(at_kill), timeout=30,
                         what=lambda: f"shard 1 back with exact totals: {bus.svc('api')}\n{logs()}")
        # kill -9 shard 0, the one publishing: shard 1 takes over; shard 0's services and probes unknown
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        why0 = "aggregator shard 0/2 (sh-0) is offline: lost"
        await _until(lambda: bus.view is not None and bus.view["meta"]["aggregator"] == "sh-1"
                         and bus.svc("ingest").get("reason") == why0, timeout=20,
                         what=lambda: f"shard 1 publishing, ingest unknown: {bus.svc('ingest')}\n{logs()}")
        assert bus.svc("api")["status"] == "healthy"
        assert bus.view["health"]["components"]["postgres"]["status"] == "unknown"
        # shard 0 back: it publishes again; a clean stop of shard 1 (SIGTERM: no Last Will) still says so
        procs[0] = _shard(mosquitto.url, 0, tmp_path / "shard0.log")
        await _until(lambda: bus.view is not None and bus.view["meta"]["aggregator"] == "sh-0"
                     and bus.svc("ingest").get("status") == "healthy", timeout=30,
                     what=lambda: f"shard 0 back and publishing: {bus.svc('ingest')}\n{logs()}")
        procs[1].send_signal(signal.SIGTERM)
        procs[1].wait(15)
        stopped = "aggregator shard 1/2 (sh-1) is offline: stopped"
        await _until(lambda: bus.svc("api").get("reason") == stopped, timeout=15,
                     what=lambda: f"shard 1's services unknown after a clean stop: {bus.svc('api')}\n{logs()}")
    finally:
        for r in reps:
            await r.stop()
        watcher.cancel()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(10)


def test_merged_patches_composed_from_the_shards_patches_rebuild_every_merged_view() -> None:
    """The merged ``services`` patch is the shards' own patches composed (not a second diff of every
    changed instance): applied tick after tick, the patches rebuild each merged view exactly."""
    t0 = 1000.0
    shards = _shard_folds(t0)
    reps = [FakeReporter(s, f"{s}-{i}") for s in SERVICES for i in range(3)]
    now = _feed_all([Fold(AggregatorConfig(), ROOT, t0), *shards], lambda name: shards[shard_of(name, 2) if name else 0],
                    reps, 3, t0)
    merger = ShardMerger(0, 2, AggregatorConfig(id="sh-0", shard="0/2"))
    me = ShardStatus(state="online", shard="0/2", aggregator="sh-0")
    merger.on_status(1, ShardStatus(state="online", shard="1/2", aggregator="sh-1"), now)
    held: dict[str, Any] | None = None
    for step in range(8):
        now += 0.5
        for i, r in enumerate(reps):
            if (step + i) % 3:  # some instances change, some do not
                r.core.inc("messages_received", step + 1)
                r.send(shards[shard_of(r.service, 2)], r.take(now), now)
        if step == 5:  # an instance goes away on shard 1: its removal travels as a null
            reps[1].offline(shards[shard_of(reps[1].service, 2)], now, "stopped")
        outs = [f.tick(now, full=step % 2 == 0) for f in shards]
        merger.own(outs[0].view, outs[0].seq, me, now, outs[0].patch)
        if step == 0:
            merger.on_snapshot(1, ViewSnapshot(seq=outs[1].seq, ts=now, state=outs[1].view), now)
        else:
            assert merger.on_patch(1, ViewPatch(seq=outs[1].seq, base=outs[1].base, ts=now, patch=outs[1].patch,
                                                append=outs[1].append, errors=outs[1].errors), now)
        got = merger.tick(now)
        if held is not None:
            held = apply_view_patch(held, got.patch, got.append, got.errors)
            assert _strip(held) == _strip(got.view), step
            assert held["series"] == got.view["series"]
        else:
            held = got.view
    assert merger.composed >= 5 and merger.diffed <= 3, (merger.composed, merger.diffed)
