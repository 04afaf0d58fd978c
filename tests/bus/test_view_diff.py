"""Patches applied in order to a snapshot give exactly the next snapshot (property tests)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_bus.contract import decode_patch, encode
from telemetry_bus.view_diff import apply_append, apply_errors, canonical, diff, merge_patch
from tests.bus.simulate import ROOT, FakeReporter, new_fold

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(-5, 5, allow_nan=False),
                      st.text(max_size=3))
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from("abcde"), children, max_size=4)),
    max_leaves=12,
)
json_doc = st.dictionaries(st.sampled_from("abcdefg"), json_value, max_size=6)


@given(json_doc, json_doc)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_diff_then_merge_gives_the_new_document(a: dict[str, Any], b: dict[str, Any]) -> None:
    ca, cb = canonical(a), canonical(b)
    patch = diff(ca, cb)
    assert merge_patch(ca, patch) == cb
    if ca == cb:
        assert patch == {}


@given(json_doc, json_doc)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_merge_does_not_mutate_its_target(a: dict[str, Any], b: dict[str, Any]) -> None:
    before = copy.deepcopy(a)
    merge_patch(a, b)
    assert a == before


def test_rfc7396_examples() -> None:
    # RFC 7396 appendix A (a selection)
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


steps = st.lists(
    st.tuples(
        st.sampled_from(["traffic", "drop", "dup", "offline", "restart", "event", "silence", "probe",
                         "bad", "degraded"]),
        st.integers(0, 3),
        st.integers(0, 50),
    ),
    min_size=5, max_size=40,
)


@given(steps)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fold_patches_replay_to_every_snapshot(ops: list[tuple[str, int, int]]) -> None:
    """Drive the fold with random traffic; a client applying every patch holds every next view."""
    t = 1_000_000.0
    fold = new_fold(t, hysteresis=2)
    reps = [FakeReporter("ingest" if i % 2 else "delivery", f"x-{i}") for i in range(4)]
    for r in reps:
        r.online(fold, t)
    first = fold.tick(t)
    client = copy.deepcopy(first.view)
    series_len = client["meta"]["series_len"]
    seq = first.seq
    for op, who, n in ops:
        r = reps[who]
        t += 0.7
        match op:
            case "traffic" | "drop" | "dup":
                r.core.inc("messages_received", n)
                r.core.inc("webhooks_sent", n // 2)
                r.core.set_gauge("pending_jobs", n)
                r.core.observe("influx_write_ms", n + 0.5)
                msg = r.take(t)
                if op != "drop":
                    r.send(fold, msg, t)
                if op == "dup":
                    r.send(fold, msg, t)
            case "offline":
                r.offline(fold, t, "lost" if n % 2 else "shutdown")
            case "restart":
                r.restart(f"boot-{n}")
                r.online(fold, t)
            case "event":
                fold.feed(f"{ROOT}/v1/svc/{r.service}/{r.instance}/events",
                          encode({"boot": r.boot, "seq": n, "ts": t, "kind": "webhook_timeout",
                                  "message": "x" * n}), t)
            case "silence":
                t += n / 10
            case "probe":
                fold.feed(f"{ROOT}/v1/probe/postgres",
                          encode({"ts": t, "status": ["healthy", "degraded", "down"][n % 3],
                                  "latency_ms": n, "metrics": {"connections_used": n,
                                                               "connections_max": None},
                                  "error": None if n % 3 == 0 else f"e{n}"}), t)
            case "bad":
                fold.feed(f"{ROOT}/v1/svc/ingest/x-{who}/metrics", b"{nope", t)
            case "degraded":
                r.core.set_health("degraded" if n % 2 else "ok", f"d{n}")
        out = fold.tick(t)
        # what goes over the wire is JSON: round-trip it as the gateway would receive it
        wire = decode_patch(encode({"seq": out.seq, "base": out.base, "ts": out.ts, "patch": out.patch,
                                    "append": out.append, "errors": out.errors}))
        assert wire.base == seq
        client = merge_patch(client, wire.patch)
        series = client.setdefault("series", {})
        apply_append(series, wire.append, series_len)
        client = apply_errors(client, wire.errors, client["meta"]["errors_len"])
        # the feed never rides in the merge patch (it would resend all 50 entries)
        assert "errors" not in wire.patch.get("errors", {})
        seq = wire.seq
        assert client == out.view


def test_one_new_error_costs_one_entry_not_the_whole_feed() -> None:
    fold = new_fold(1_000_000.0)
    t = 1_000_000.0
    topic = f"{ROOT}/v1/svc/delivery/d-1/events"
    for k in range(60):
        fold.feed(topic, encode({"boot": "b", "seq": k + 1, "ts": t, "kind": "webhook_timeout",
                                 "message": "POST https://example.com/hook timed out after 10 s"}), t + k)
        out = fold.tick(t + k + 0.5)
        timeouts = [e for e in out.errors if e["type"] == "webhook_timeout"]
        assert [e["message"] for e in timeouts] == ["POST https://example.com/hook timed out after 10 s"]
        if k > 5:  # past the instance's state change (an event-only sender goes down after 3 s)
            assert len(out.errors) == 1
            assert len(encode(out.patch)) < 600
    assert len(out.view["errors"]["errors"]) == 50


def test_apply_view_patch_is_the_documented_order_and_never_mutates_the_old_view() -> None:
    from telemetry_bus.view_diff import apply_view_patch

    old = {"meta": {"seq": 1, "series_len": 3, "errors_len": 2}, "series": {"a": [[1.0, 1.0], [2.0, 2.0]]},
           "errors": {"errors": [{"id": 1}], "counts": {"x_1h": 1}}, "gone": {"k": 1}}
    frozen = json.dumps(old)
    new = apply_view_patch(old, {"meta": {"seq": 2}, "gone": None, "errors": {"counts": {"x_1h": 2}}},
                           {"a": [3.0, 3.0], "b": [3.0, None]}, [{"id": 3}, {"id": 2}])
    assert json.dumps(old) == frozen  # readers of the old view see it unchanged
    assert new == {"meta": {"seq": 2, "series_len": 3, "errors_len": 2},
                   "series": {"a": [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], "b": [[3.0, None]]},
                   "errors": {"errors": [{"id": 3}, {"id": 2}], "counts": {"x_1h": 2}}}
    more = apply_view_patch(new, {}, {"a": [4.0, 4.0]})
    assert more["series"]["a"] == [[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]  # meta.series_len kept
    assert new["series"]["a"][-1] == [3.0, 3.0]
