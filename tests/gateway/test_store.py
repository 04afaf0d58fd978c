"""The pure core: snapshots, patches, gaps, section filters and encode-once, without sockets."""

from __future__ import annotations

import json

import msgspec

from gateway.errors import ProtocolError
from gateway.sections import filter_view
from gateway.store import Outcome, ViewStore, filter_state, parse_sections
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.view_diff import apply_append, merge_patch
from tests.gateway.sim import ViewSim


def snap(sim: ViewSim) -> ViewSnapshot:
    return msgspec.convert(sim.snapshot(), ViewSnapshot)


def patch(p: dict) -> ViewPatch:  # type: ignore[type-arg]
    return msgspec.convert(p, ViewPatch)


def test_patches_reproduce_every_snapshot() -> None:
    sim = ViewSim(seed=7, series_len=50)
    store = ViewStore()
    assert store.apply_snapshot(snap(sim), now=0.0) is Outcome.SNAPSHOT
    for i in range(300):  # more ticks than series_len: the series window slides
        assert store.apply_patch(patch(sim.step()), now=float(i)) is Outcome.PATCH
        assert store.state == sim.state(), f"diverged at seq {sim.seq}"
        assert store.seq == sim.seq
    assert all(len(v) == 50 for v in store.state["series"].values())


def test_gap_waits_for_the_next_snapshot() -> None:
    sim = ViewSim(seed=2)
    store = ViewStore()
    store.apply_snapshot(snap(sim), now=0.0)
    sim.step()  # lost on the way
    assert store.apply_patch(patch(sim.step()), now=1.0) is Outcome.GAP
    assert store.seq == 0
    assert store.apply_snapshot(snap(sim), now=2.0) is Outcome.SNAPSHOT
    assert store.state == sim.state()
    assert store.apply_patch(patch(sim.step()), now=3.0) is Outcome.PATCH


def test_patch_before_any_snapshot_is_a_gap_and_old_ones_are_ignored() -> None:
    sim = ViewSim()
    store = ViewStore()
    first = sim.step()
    assert store.apply_patch(patch(first), now=0.0) is Outcome.GAP
    store.apply_snapshot(snap(sim), now=1.0)
    assert store.apply_patch(patch(first), now=1.0) is Outcome.OLD
    assert store.apply_snapshot(snap(sim), now=2.0) is Outcome.SAME
    assert store.received_mono == 2.0


def test_retained_older_snapshot_is_ignored_but_a_restarted_aggregator_is_followed() -> None:
    sim = ViewSim()
    store = ViewStore()
    old = snap(sim)
    sim.step()
    sim.step()
    store.apply_snapshot(snap(sim), now=0.0)
    assert store.apply_snapshot(old, now=1.0) is Outcome.OLD
    assert store.seq == 2
    restarted = ViewSnapshot(seq=0, ts=sim.t + 5, state={"meta": {"seq": 0}})
    assert store.apply_snapshot(restarted, now=2.0) is Outcome.SNAPSHOT
    assert store.seq == 0 and store.state == {"meta": {"seq": 0}}


def test_old_state_is_not_mutated_by_a_patch() -> None:
    sim = ViewSim(series_len=5)
    store = ViewStore()
    store.apply_snapshot(snap(sim), now=0.0)
    before = store.state
    frozen = json.dumps(before, sort_keys=True)
    store.apply_patch(patch(sim.step()), now=1.0)
    assert json.dumps(before, sort_keys=True) == frozen


def test_sections_filter_state_patch_and_append() -> None:
    sim = ViewSim(seed=3)
    store = ViewStore()
    store.apply_snapshot(snap(sim), now=0.0)
    p = sim.step()
    store.apply_patch(patch(p), now=1.0)
    health = parse_sections(["health"])
    assert health == frozenset({"health", "meta"})
    msg = json.loads(store.snapshot_message(health))
    assert msg["type"] == "snapshot" and set(msg["state"]) == {"health", "meta"}
    assert msg["state"]["health"] == sim.state()["health"]
    pm = json.loads(store.patch_message(health))
    assert pm["append"] == {} and set(pm["patch"]) <= {"health", "meta"}
    assert pm["patch"]["meta"] == p["patch"]["meta"]
    assert (pm["seq"], pm["base"], pm["ts"]) == (p["seq"], p["base"], p["ts"])
    full = json.loads(store.patch_message(parse_sections(["health", "series"])))
    assert full["append"] == p["append"]
    everything = json.loads(store.patch_message(None))
    # the default stream: every section, services as summaries (per-instance detail by subscription)
    assert everything["patch"] == filter_view(p["patch"], None)
    assert everything["patch"].keys() <= p["patch"].keys()
    assert all("instances" not in s for s in everything["patch"].get("services", {}).values())


def test_filtered_client_view_matches_filtered_snapshot() -> None:
    """A client that asked for two sections, applying its patches, holds those sections of the view."""
    sim = ViewSim(seed=11, series_len=20)
    store = ViewStore()
    store.apply_snapshot(snap(sim), now=0.0)
    sections = parse_sections(["metrics", "series"])
    client = json.loads(store.snapshot_message(sections))["state"]
    for i in range(60):
        store.apply_patch(patch(sim.step()), now=float(i))
        pm = json.loads(store.patch_message(sections))
        client = merge_patch(client, pm["patch"])
        apply_append(client.setdefault("series", {}), pm["append"], 20)
        assert client == filter_state(sim.state(), sections)


def test_messages_are_encoded_once_per_section_set() -> None:
    sim = ViewSim()
    store = ViewStore()
    store.apply_snapshot(snap(sim), now=0.0)
    s = parse_sections(["health"])
    assert store.snapshot_message(s) is store.snapshot_message(frozenset({"health", "meta"}))
    store.apply_patch(patch(sim.step()), now=1.0)
    a = store.patch_message(s)
    assert store.patch_message(s) is a
    assert store.patch_message(None) is not a
    store.apply_patch(patch(sim.step()), now=2.0)
    assert json.loads(store.patch_message(s))["seq"] == 2


def test_bad_sections_are_refused_with_the_value() -> None:
    for bad in ("health", ["Health"], ["a" * 40], [1], ["x"] * 17):
        try:
            parse_sections(bad)
        except ProtocolError as exc:
            assert "section" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    assert parse_sections(None) is None


def test_age_uses_the_clock_passed_in() -> None:
    sim = ViewSim()
    store = ViewStore()
    assert store.age(5.0) is None
    store.apply_snapshot(snap(sim), now=10.0)
    assert store.age(12.5) == 2.5


def test_new_feed_entries_ride_beside_the_patch_and_follow_the_errors_section() -> None:
    import msgspec

    from gateway.store import ViewStore
    from telemetry_bus.contract import ViewPatch, ViewSnapshot

    store = ViewStore()
    old = [{"id": k, "message": f"m{k}"} for k in range(50, 0, -1)]
    state = {"meta": {"seq": 1, "errors_len": 50, "series_len": 900}, "errors": {"errors": old, "counts": {}},
             "health": {"status": "healthy"}}
    store.apply_snapshot(ViewSnapshot(seq=1, ts=1.0, state=state), 1.0)
    new = [{"id": 52, "message": "m52"}, {"id": 51, "message": "m51"}]
    store.apply_patch(ViewPatch(seq=2, base=1, ts=2.0, patch={"meta": {"seq": 2}}, errors=new), 2.0)
    assert store.state is not None
    assert [e["id"] for e in store.state["errors"]["errors"]] == [52, 51, *range(50, 2, -1)]
    assert state["errors"]["errors"] is old and len(old) == 50  # the old state is not changed
    with_errors = msgspec.json.decode(store.patch_message(frozenset({"errors"})))
    assert with_errors["errors"] == new
    without = msgspec.json.decode(store.patch_message(frozenset({"health"})))
    assert "errors" not in without
