"""Costs that do not grow with instances that sent nothing new (design.md section 12): an unchanged
instance's part of the view is reused (and skipped by the diff), an early tick evaluates only the
instances with news (plus the silent and unknown ones), and the output stays what a full rebuild gives."""

from __future__ import annotations

from telemetry_bus.view_diff import canonical, merge_patch
from tests.bus.simulate import FakeReporter, new_fold

T0 = 1_000_000.0


def test_an_unchanged_instance_is_reused_and_absent_from_the_patch() -> None:
    fold = new_fold(T0)
    a, b = FakeReporter("ingest", "a"), FakeReporter("ingest", "b")
    for r in (a, b):
        r.online(fold, T0)
        r.core.inc("messages_received", 5)
        r.send(fold, r.take(T0 + 0.5), T0 + 0.5)
    first = fold.tick(T0 + 1)
    a.core.inc("messages_received", 3)
    a.send(fold, a.take(T0 + 1.2), T0 + 1.2)
    second = fold.tick(T0 + 1.3, full=False)
    insts = second.view["services"]["ingest"]["instances"]
    assert insts["b"] is first.view["services"]["ingest"]["instances"]["b"]  # the same object
    assert insts["a"] is not first.view["services"]["ingest"]["instances"]["a"]
    changed = second.patch["services"]["ingest"]["instances"]
    assert set(changed) == {"a"} and changed["a"]["totals"] == {"messages_received": 8}


def test_the_patched_view_equals_a_full_rebuild() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", f"i-{k}") for k in range(5)]
    for r in reps:
        r.online(fold, T0)
    held = None
    for sec in range(12):
        for k, r in enumerate(reps):
            if (sec + k) % 3:  # some instances stay quiet some seconds, one goes silent for good
                if k == 4 and sec > 5:
                    continue
                r.core.inc("messages_received", k + 1)
                r.send(fold, r.take(T0 + sec + 0.4), T0 + sec + 0.4)
        for now, full in ((T0 + sec + 0.5, False), (T0 + sec + 1, True)):
            out = fold.tick(now, full=full)
            body = {k: v for k, v in out.view.items() if k != "series"}
            body["errors"] = {k: v for k, v in body["errors"].items() if k != "errors"}
            held = merge_patch(held, out.patch) if held is not None else canonical(body)
            # the same fields a from-scratch build gives (cached parts dropped first)
            for svc in fold.services.values():
                for inst in svc.instances.values():
                    inst.view_cache = None
            rebuilt = canonical(fold.view.build(fold.state, fold.cfg, now, full))
            rebuilt["errors"] = {k: v for k, v in rebuilt["errors"].items() if k != "errors"}
            rebuilt["meta"] = held["meta"]  # meta.seq moved with the extra build
            assert held["services"] == rebuilt["services"]
    assert held is not None
    assert held["services"]["ingest"]["instances"]["i-4"]["status"] == "down"  # silent since second 6


def test_an_early_tick_still_sees_a_silent_instance_and_a_last_will() -> None:
    fold = new_fold(T0)
    quiet, killed = FakeReporter("ingest", "quiet"), FakeReporter("ingest", "killed")
    for r in (quiet, killed):
        r.online(fold, T0)
        r.send(fold, r.take(T0 + 0.5), T0 + 0.5)
    fold.tick(T0 + 1)
    killed.offline(fold, T0 + 1.1, "lost")  # its Last Will
    view = fold.tick(T0 + 1.2, full=False).view
    assert view["services"]["ingest"]["instances"]["killed"]["status"] == "down"
    assert view["services"]["ingest"]["instances"]["quiet"]["status"] == "healthy"
    view = fold.tick(T0 + 3.7, full=False).view  # > 3 intervals since its last metrics: silent
    assert view["services"]["ingest"]["instances"]["quiet"]["status"] == "down"
