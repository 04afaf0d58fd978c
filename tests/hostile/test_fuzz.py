"""Fuzzing (hypothesis) of everything a stranger can send: ops payloads into the pure Fold, and client
WebSocket messages into a real Gateway on port 0.

Properties:
- Fold: every input is folded or quarantined with a reason (the contract's own decoders are the oracle
  for what must be quarantined); no exception escapes ``feed`` or ``tick``; the view and its patch are
  finite and encode to JSON that a strict parser (no NaN/Infinity) reads back.
- Gateway: every client message either gets its answer (a snapshot for hello/resync) or an error frame
  and a close with a documented code (1008, 4401, 4403, 1009); the gateway never dies, and every frame
  it sends parses with the strict parser.

The number of examples is ``OPSDASH_FUZZ_EXAMPLES`` (default 150 each). A long run:
``OPSDASH_FUZZ_EXAMPLES=100000 .venv/bin/pytest -q -s tests/hostile/test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import math
import os
import string
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.config import GatewayConfig
from gateway.server import LIVE_PATH, Gateway
from telemetry_bus.config import AggregatorConfig, MqttConfig
from telemetry_bus.contract import (
    TopicError,
    ViewPatch,
    ViewSnapshot,
    decode_event,
    decode_metrics,
    decode_probe,
    decode_status,
    encode,
    parse_topic,
    topics,
)
from telemetry_bus.fold import QUARANTINE_FEED_PER_S, Fold
from tests.faults.helpers import assert_finite, strict_loads
from tests.support.servers import Mosquitto

EXAMPLES = int(os.environ.get("OPSDASH_FUZZ_EXAMPLES", "150"))
T0 = 1_764_236_400.0
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# -- ops payloads ------------------------------------------------------------------------------------

names = st.one_of(st.sampled_from(["messages_received", "queue_depth", "influx_write_ms", "x",
                                   "webhooks_failed", "webhooks_sent", "pending_jobs"]),
                  st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                  st.text(max_size=70))
segments = st.one_of(st.sampled_from(["ingest", "delivery", "i-1", "evaluator", "svc.x"]),
                     st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,5}", fullmatch=True),
                     st.text(alphabet=string.printable, max_size=70))
numbers = st.one_of(st.integers(-5, 10**6), st.integers(-2**64, 2**64),
                    st.floats(allow_nan=True, allow_infinity=True), st.just(2**53), st.just(2**53 + 1))
anything = st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=20),
                        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                    max_size=4),
                        max_leaves=12)
boots = st.one_of(st.sampled_from(["b1", "b2", "01JDX3K8W6"]), st.text(max_size=70))
seqs = st.one_of(st.integers(0, 20), st.integers(-3, 2**60), st.floats(), st.text(max_size=3))
times = st.one_of(st.floats(T0 - 400, T0 + 400), st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(-10, 10**12))


@st.composite
def hist(draw: st.DrawFn) -> Any:
    counts = draw(st.lists(st.integers(-2, 50), max_size=draw(st.sampled_from([4, 40, 2100]))))
    h: dict[str, Any] = {"scale": draw(st.integers(-12, 22)), "offset": draw(st.integers(-2**25, 2**25)),
                         "counts": counts, "zero_count": draw(st.integers(-1, 5))}
    h["count"] = draw(st.sampled_from([h["zero_count"] + sum(counts), draw(st.integers(-1, 10**6))]))
    for k in ("sum", "min", "max"):
        if draw(st.booleans()):
            h[k] = draw(numbers)
    if draw(st.booleans()):
        h[draw(st.text(max_size=5))] = draw(anything)
    return h


def _maybe(draw: st.DrawFn, d: dict[str, Any], key: str, strat: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        d[key] = draw(strat)


@st.composite
def metrics(draw: st.DrawFn) -> Any:
    d: dict[str, Any] = {"boot": draw(boots), "seq": draw(seqs)}
    for key, strat in (("t0", times), ("t1", times), ("health", st.sampled_from(["ok", "degraded", "down",
                                                                                 "bad"])),
                       ("detail", st.text(max_size=30)),
                       ("counters", st.dictionaries(names, numbers, max_size=5)),
                       ("totals", st.dictionaries(names, numbers, max_size=5)),
                       ("gauges", st.dictionaries(names, numbers, max_size=5)),
                       ("hist", st.dictionaries(names, hist(), max_size=2)),
                       ("interval_s", st.one_of(st.floats(0, 5000), st.none()))):
        _maybe(draw, d, key, strat)
    return d


@st.composite
def status(draw: st.DrawFn) -> Any:
    d: dict[str, Any] = {"state": draw(st.sampled_from(["online", "offline", "gone"])), "boot": draw(boots)}
    for key, strat in (("version", st.text(max_size=140)), ("interval_s", st.floats(-1, 5000)),
                       ("ts", times), ("reason", st.sampled_from(["lost", "shutdown", "", "x" * 200]))):
        _maybe(draw, d, key, strat)
    return d


@st.composite
def event(draw: st.DrawFn) -> Any:
    d: dict[str, Any] = {"boot": draw(boots), "kind": draw(names)}
    for key, strat in (("seq", seqs), ("ts", times),
                       ("severity", st.sampled_from(["debug", "info", "warning", "error", "critical", "x"])),
                       ("message", st.text(max_size=50)),
                       ("attrs", st.dictionaries(st.text(max_size=70), st.text(max_size=130), max_size=34))):
        _maybe(draw, d, key, strat)
    return d


@st.composite
def probe(draw: st.DrawFn) -> Any:
    d: dict[str, Any] = {"ts": draw(times),
                         "status": draw(st.sampled_from(["healthy", "degraded", "down", "unknown", "ok"]))}
    for key, strat in (("latency_ms", st.one_of(numbers, st.none())),
                       ("metrics", st.dictionaries(names, st.one_of(numbers, st.none()), max_size=5)),
                       ("error", st.one_of(st.none(), st.text(max_size=30))),
                       ("period_s", st.floats(-1, 10**6)),
                       ("details", st.dictionaries(names, anything, max_size=3))):
        _maybe(draw, d, key, strat)
    return d


def _json(value: Any) -> bytes:
    # NaN/Infinity literals on purpose: some senders write them (Python's json does)
    import json
    return json.dumps(value).encode()


@st.composite
def payloads(draw: st.DrawFn, kind: str) -> bytes:
    shaped = {"metrics": metrics, "status": status, "events": event, "probe": probe}[kind]
    return draw(st.one_of(
        shaped().map(_json),
        st.binary(max_size=200),
        anything.map(_json),
        st.just(b""),
        st.sampled_from([b"[" + b"1," * 140_000 + b"1]", b'{"boot": "b", "seq": 1e999}', b"\xff\xfe",
                         b'{"boot": "b", "seq": 1, "counters": {"x": 1}, "counters": {"x": -1}}']),
    ))


@st.composite
def ops_message(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["metrics", "status", "events", "probe", "view", "bad"]))
    root = draw(st.sampled_from(["$ops", "$ops", "$ops", "ops", "$ops/v2"]))
    if kind in ("metrics", "status", "events"):
        topic = topics.svc(root, draw(segments), draw(segments), kind)
    elif kind == "probe":
        topic = topics.probe(root, draw(segments))
    elif kind == "view":
        topic = draw(st.sampled_from([topics.snapshot(root), topics.patch(root)]))
    else:
        topic = draw(st.text(max_size=60))
    payload_kind = kind if kind in ("metrics", "status", "events", "probe") else draw(
        st.sampled_from(["metrics", "status", "events", "probe"]))
    return topic, draw(payloads(payload_kind))


def must_quarantine(topic: str, payload: bytes) -> bool | None:
    """True: the contract refuses it; None: it decodes (the fold may still refuse it over a limit)."""
    if len(payload) > 256 * 1024:
        return True
    try:
        t = parse_topic(topic, "$ops")
    except TopicError:
        return True
    decoder = {"metrics": decode_metrics, "status": decode_status, "events": decode_event,
               "probe": decode_probe}.get(t.kind)
    if decoder is None or (not payload and t.kind in ("status", "probe")):
        return None
    try:
        decoder(payload)
    except msgspec.DecodeError:
        return True
    return None


def check_view(fold: Fold, now: float) -> None:
    out = fold.tick(now)
    for msg in (ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view),
                ViewPatch(seq=out.seq, base=out.base, ts=out.ts, patch=out.patch, append=out.append)):
        parsed = strict_loads(encode(msg))
        assert_finite(parsed)
    assert_finite(out.view)


def test_fuzz_ops_payloads_are_folded_or_quarantined() -> None:
    tally = {"messages": 0, "quarantined": 0, "folded_or_accepted": 0}

    @FUZZ
    @given(batch=st.lists(ops_message(), min_size=1, max_size=6), retained=st.booleans(),
           gap=st.floats(0, 30))
    # found by a long run: more quarantines in one second than the feed shows (the cap, not a bug)
    @example(batch=[("$ops/v1/svc/ingest/ingest/metrics", b"")] * 3
             + [("$ops/v1/svc/ingest/ingest/metrics", b'{"boot": "b1", "seq": 0, "interval_s": 0.0}'),
                ("$ops/v1/svc/ingest/ingest/metrics", b'{"boot": "b1", "seq": 0, "gauges": {"0": 0}}'),
                ("$ops/v1/svc/ingest/ingest/metrics", b"")], retained=False, gap=0.0)
    def inner(batch: list[tuple[str, bytes]], retained: bool, gap: float) -> None:
        fold = Fold(AggregatorConfig(max_series_per_instance=8, max_instances_per_service=4, max_services=6),
                    "$ops", T0)
        now = T0
        # a known instance first, so fuzzed messages also hit the paths of an existing boot
        fold.feed("$ops/v1/svc/ingest/i-1/status", b'{"state":"online","boot":"b1","ts":1764236400}', now)
        fold.feed("$ops/v1/svc/ingest/i-1/metrics", b'{"boot":"b1","seq":1,"t0":1764236399,'
                  b'"t1":1764236400,"counters":{"x":3},"totals":{"x":3}}', now)
        for topic, payload in batch:
            now += gap / len(batch)
            before_q, before_reasons = fold.quarantined, sum(fold.quarantine_reasons.values())
            fold.feed(topic, payload, now, retained)  # must not raise
            quarantined = fold.quarantined - before_q
            assert quarantined in (0, 1)
            if must_quarantine(topic, payload):
                assert quarantined == 1, (topic, payload[:200])
            if quarantined:
                # the reason is shown in the feed, at most QUARANTINE_FEED_PER_S entries a second (all
                # are counted): past that cap the newest feed entry may be something else
                shown = [e for e in fold.feed_items
                         if e["type"] == "quarantined" and math.floor(e["ts"]) == math.floor(now)]
                assert shown and all(e["message"] for e in shown)
                assert (fold.feed_items[0]["type"] == "quarantined"
                        or len(shown) == QUARANTINE_FEED_PER_S), (len(shown), fold.feed_items[0])
                assert (len(fold.quarantine_reasons) == 64
                        or sum(fold.quarantine_reasons.values()) == before_reasons + 1)
            tally["messages"] += 1
            tally["quarantined" if quarantined else "folded_or_accepted"] += 1
            for svc in fold.services.values():
                assert len(svc.instances) <= 4
                for inst in svc.instances.values():
                    assert len(inst.series) <= 8
                    assert all(v >= 0 for v in inst.totals.values())
            check_view(fold, now)
        check_view(fold, now + 100)
        assert len(fold.services) <= 6

    inner()
    print(f"\nfuzzed {EXAMPLES} batches of ops messages: {tally}")


# -- client WebSocket messages -----------------------------------------------------------------------

json_text = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                         | st.text(max_size=10),
                         lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                                   max_size=3), max_leaves=8)
sections = st.one_of(st.none(), st.lists(st.sampled_from(["health", "metrics", "capacity", "aggregates",
                                                           "errors", "series", "services", "probes", "meta",
                                                           "bogus", ""]), max_size=5),
                     json_text)


@st.composite
def client_message(draw: st.DrawFn) -> str | bytes:
    import json
    shape = draw(st.sampled_from(["hello", "resync", "object", "json", "text", "binary", "huge"]))
    match shape:
        case "hello":
            msg: dict[str, Any] = {"type": "hello"}
            if draw(st.booleans()):
                msg["sections"] = draw(sections)
            if draw(st.booleans()):
                msg["token"] = draw(st.one_of(st.text(max_size=20), st.integers(), st.none()))
            if draw(st.booleans()):
                msg[draw(st.text(max_size=5))] = draw(json_text)
            return json.dumps(msg)
        case "resync":
            return json.dumps({"type": "resync", **draw(st.dictionaries(st.text(max_size=5), json_text,
                                                                          max_size=2))})
        case "object":
            return json.dumps({"type": draw(json_text), **draw(st.dictionaries(st.text(max_size=5), json_text,
                                                                                 max_size=3))})
        case "json":
            return json.dumps(draw(json_text))
        case "text":
            return draw(st.text(max_size=100))
        case "binary":
            return draw(st.binary(max_size=100))
        case _:
            return "x" * draw(st.integers(4097, 9000))


async def _frames_until(ws: ClientConnection, snapshots: int, frames: list[Any]) -> int | None:
    """Read frames until ``snapshots`` snapshots arrived (None) or the socket closed (its close code)."""
    got = 0
    try:
        async with asyncio.timeout(10):
            while got < snapshots:
                frame = strict_loads(await ws.recv())
                assert isinstance(frame, dict) and frame.get("type") in ("meta", "snapshot", "patch", "error")
                assert_finite(frame)
                frames.append(frame)
                got += frame["type"] == "snapshot"
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return int(exc.rcvd.code)
    return None


def test_fuzz_client_websocket_messages(mosquitto: Mosquitto, tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    gw = Gateway(GatewayConfig(listen="127.0.0.1:0", id="gw-fuzz", static_dir=str(tmp_path),
                               client_msg_rate=1e6, client_msg_burst=1_000_000, handshake_rate=1e6,
                               handshake_burst=1_000_000),
                 MqttConfig(url=mosquitto.url))
    fold = Fold(AggregatorConfig(), "$ops", T0)
    fold.feed("$ops/v1/svc/ingest/i-1/metrics", b'{"boot":"b","seq":1,"counters":{"x":1}}', T0)
    out = fold.tick(T0 + 1)
    snapshot = encode(ViewSnapshot(seq=out.seq, ts=out.ts, state=out.view))
    state: dict[str, Any] = {"ws": None}
    codes: dict[int | str, int] = {}

    async def setup() -> None:
        await gw.start()
        gw.feed(topics.snapshot("$ops"), snapshot, topics.snapshot("$ops"), topics.patch("$ops"))

    async def open_ws() -> ClientConnection:
        ws = await connect(f"ws://127.0.0.1:{gw.port}{LIVE_PATH}", max_size=None)
        frames: list[Any] = []
        assert await _frames_until(ws, 1, frames) is None  # auth none: meta + snapshot at once
        return ws

    async def one(raw: str | bytes) -> None:
        ws = state["ws"] or await open_ws()
        state["ws"] = ws
        await ws.send(raw)
        await ws.send('{"type": "resync"}')  # the sentinel: its snapshot ends an accepted message's answer
        frames: list[Any] = []
        code = await _frames_until(ws, 2, frames)
        if code is None:
            codes["accepted"] = codes.get("accepted", 0) + 1
            return
        state["ws"] = None
        codes[code] = codes.get(code, 0) + 1
        assert code in (1008, 1009, 4401, 4403), (code, raw[:100])
        if code != 1009:  # 1009 is the library's own close for an oversized frame, before our handler
            assert any(f["type"] == "error" and f.get("code") and f.get("message") for f in frames), frames

    loop.run_until_complete(setup())
    try:
        @FUZZ
        @given(raw=client_message())
        # found by a long run: a reason of 120 characters but over 123 bytes of UTF-8 made the close 1000
        @example(raw='{"type": "hello", "sections": {"\\ud810\\uddfd\\u00a2\\udbe8\\udcd3&\\u00ea": null, '
                     '"\\u00a1\\u00a1\\ud7fc\\ud823\\udd09\\ud87a\\udfe1": null}}')
        @example(raw='{"type": "hello", "sections": ["\\ud800' + "\\u00e9" * 70 + '"]}')
        def inner(raw: str | bytes) -> None:
            loop.run_until_complete(one(raw))

        inner()
        # the gateway is still serving: a fresh client gets its snapshot
        loop.run_until_complete(open_ws())
        assert gw.counters.connections_total >= 1
    finally:
        if state["ws"] is not None:
            loop.run_until_complete(state["ws"].close())
        loop.run_until_complete(gw.stop())
        loop.close()
    print(f"\nfuzzed {EXAMPLES} client messages: outcomes {codes}")
