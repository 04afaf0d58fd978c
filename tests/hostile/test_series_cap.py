"""Many instances of one service, each with its own distinct series names, cannot grow the fold without
limit: the names per service are capped (``max_series_per_service``), the excess quarantined with the
reason, and the service keeps folding the names it has."""

from __future__ import annotations

from tests.bus.simulate import FakeReporter, new_fold

T0 = 1_000_000.0


def test_distinct_names_per_service_are_capped_and_quarantined() -> None:
    fold = new_fold(T0, max_series_per_service=30, max_series_per_instance=10)
    reps = [FakeReporter("ingest", f"i-{k}") for k in range(5)]
    for k, r in enumerate(reps):
        r.online(fold, T0)
        for n in range(10):
            r.core.inc(f"c{k}_{n}", 1)  # 10 names of its own
        r.send(fold, r.take(T0 + 0.5), T0 + 0.5)
    svc = fold.services["ingest"]
    assert len(svc.series) == 30 and len(svc.rings) == 30  # three instances' names, then refused
    assert fold.quarantined == 2
    assert [e["message"].split(" (topic")[0] for e in fold.state.feed_items if e["type"] == "quarantined"] == [
        "too many series for service ingest (max 30)"] * 2
    reps[0].core.inc("c0_1", 5)  # a known name still folds
    reps[0].send(fold, reps[0].take(T0 + 1.5), T0 + 1.5)
    assert svc.instances["i-0"].totals["c0_1"] == 6
