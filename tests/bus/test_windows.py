"""Rolling 1 s windows: spreading spans over seconds, advancing, forgetting."""

from __future__ import annotations

import pytest

from telemetry_bus.contract import Hist
from telemetry_bus.windows import HistRing, Ring


def test_a_span_is_split_across_the_seconds_it_overlaps() -> None:
    r = Ring(10)
    r.add_span(100.5, 102.5, 40.0)  # 20 per second: half of 100, all of 101, half of 102
    assert [r.get(s) for s in (99, 100, 101, 102, 103)] == pytest.approx([0, 10, 20, 10, 0])
    assert r.sum(100, 102) == pytest.approx(40.0)


def test_a_span_inside_one_second_and_a_zero_span() -> None:
    r = Ring(10)
    r.add_span(100.2, 100.7, 5.0)
    r.add_span(101.3, 101.3, 2.0)
    assert (r.get(100), r.get(101)) == (5.0, 2.0)


def test_advancing_clears_the_seconds_that_fall_out_and_old_values_are_dropped() -> None:
    r = Ring(5)
    for s in range(100, 105):
        r.add(s, 1.0)
    assert r.sum(100, 104) == 5.0
    r.advance(107)  # 100..102 fall out, 105..106 are new and empty
    assert r.sum(100, 107) == 2.0  # 103 and 104 remain
    r.add(101, 9.0)  # older than the ring holds: dropped
    assert r.get(101) == 0.0 and r.sum(103, 107) == 2.0
    r.advance(1000)  # a jump past the whole ring
    assert r.sum(990, 1000) == 0.0


def test_a_long_span_keeps_only_what_the_ring_holds() -> None:
    r = Ring(10)
    r.add_span(0.0, 100.0, 100.0)  # 1 per second for 100 s; the ring holds the last 10
    assert r.sum(91, 100) == pytest.approx(9.0 + 0.0)  # 91..99 full; 100 has length 0
    assert r.get(90) == 0.0


def test_hist_ring_merges_per_second_and_forgets_old_seconds() -> None:
    hr = HistRing(3)
    wire = Hist(scale=6, offset=64, counts=[2, 0, 1], count=3, sum=6.3, min=2.0, max=2.1)
    hr.add_wire(10, wire)
    hr.add_wire(10, wire)
    hr.add_wire(11, wire)
    merged = hr.merged(10, 11)
    assert merged is not None and merged.count == 9
    hr.add_wire(14, wire)  # 10 and 11 fall out of a 3-second ring
    merged = hr.merged(0, 20)
    assert merged is not None and merged.count == 3
    assert hr.merged(100, 200) is None
