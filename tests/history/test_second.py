"""The aggregator's per-second record for history (history/second.py), on the pure fold: known traffic
in, each second's counts, gauges and merged histogram out; seconds before the fold started are not
recorded."""

from __future__ import annotations

import math

import pytest

from history.second import record_second, second_record
from telemetry_bus.histogram import ExpHistogram
from tests.bus.simulate import FakeReporter, new_fold
from tests.bus.test_fold import T0, run_traffic


def test_every_second_holds_its_counts_gauges_and_histogram() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", f"ingest-{i}") for i in range(3)]
    now, sent, _ = run_traffic(fold, reps, 40, 50, jitter=0.0)
    out = fold.tick(now)
    # the seconds of the steady part: 3 x 50 per second, in the view's rate and the per-service rate
    total = 0.0
    for sec in range(int(T0) + 5, record_second(now) + 1):
        rec = second_record(fold, out.view, now, [], sec)
        assert rec is not None and rec["ts"] == float(sec)
        v = rec["values"]
        assert v["ingest_rate"] == v["rate:ingest:messages_received"]
        if sec < record_second(now) - 2:  # the traffic ran until now - 1
            assert v["ingest_rate"] == pytest.approx(150.0, rel=1e-6)
        total += v["ingest_rate"]
        if sec < record_second(now) - 2:
            assert rec["hists"]["write_latency"].count == 3  # one sample per reporter per second
    # every second recorded carries exactly its own counts: 3 x 50 each, nothing lost or doubled
    seconds = record_second(now) + 1 - (int(T0) + 5)
    assert total == pytest.approx(150.0 * seconds, rel=1e-6)
    assert sum(sent.values()) == 150 * 40
    # the write-latency histogram of one second is all the samples of that second merged
    rec = second_record(fold, out.view, now, [], int(T0) + 10)
    assert rec is not None
    merged = fold.services["ingest"].hists["influx_write_ms"].merged(int(T0) + 10, int(T0) + 10)
    assert merged is not None
    back = ExpHistogram.from_wire(merged.to_wire())
    assert rec["hists"]["write_latency"].count == back.count == 3
    # health of every component travels with it
    assert rec["components"]["ingest"][0] == "healthy"


def test_a_second_before_the_fold_started_is_not_recorded() -> None:
    fold = new_fold(T0)
    out = fold.tick(T0 + 1)
    assert second_record(fold, out.view, T0 + 1, []) is None  # covers T0 - 1: not watched
    assert second_record(fold, out.view, T0 + 2.5, [], math.floor(T0)) is not None
