"""The exponential histogram against exact quantiles of named data sets (as DDSketch's tests do)."""

from __future__ import annotations

import math
import random

import pytest

from telemetry_bus.contract import Hist, decode_metrics, encode
from telemetry_bus.histogram import ExpHistogram, relative_error_bound

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def exact(sorted_values: list[float], q: float) -> float:
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def datasets() -> dict[str, list[float]]:
    rnd = random.Random(42)
    n = 20_000
    return {
        "uniform": [rnd.uniform(1, 100) for _ in range(n)],
        "exponential": [rnd.expovariate(0.2) + 1e-3 for _ in range(n)],
        "lognormal": [rnd.lognormvariate(1.5, 0.8) for _ in range(n)],
        "pareto": [rnd.paretovariate(1.5) for _ in range(n)],
        "bimodal": [rnd.gauss(3, 0.3) if rnd.random() < 0.9 else rnd.gauss(250, 20) for _ in range(n)],
        "narrow": [rnd.uniform(10, 12) for _ in range(n)],
    }


@pytest.mark.parametrize("name", list(datasets()))
def test_quantiles_within_bound(name: str) -> None:
    values = datasets()[name]
    h = ExpHistogram()
    for v in values:
        h.record(v)
    s = sorted(values)
    assert h.count == len(values)
    assert math.isclose(h.sum, math.fsum(values), rel_tol=1e-9)
    bound = h.relative_error
    for q in QUANTILES:
        est, ex = h.quantile(q), exact(s, q)
        assert est is not None
        assert abs(est - ex) <= bound * abs(ex) + 1e-12, (name, q, est, ex, bound)


def test_scale_6_bound_is_about_half_a_percent() -> None:
    assert relative_error_bound(6) == pytest.approx(0.00543, abs=1e-5)
    h = ExpHistogram()
    for v in (2.0, 3.0, 50.0):  # within a 32x range scale 6 is kept
        h.record(v)
    assert h.scale == 6


def test_merge_equals_recording_everything() -> None:
    rnd = random.Random(7)
    a_vals = [rnd.lognormvariate(0, 0.5) for _ in range(5000)]
    b_vals = [rnd.lognormvariate(3, 1.5) for _ in range(5000)]  # wider: ends at a coarser scale
    a, b, both = ExpHistogram(), ExpHistogram(), ExpHistogram()
    for v in a_vals:
        a.record(v)
        both.record(v)
    for v in b_vals:
        b.record(v)
        both.record(v)
    assert a.scale > b.scale
    a.merge(b)
    assert a.scale == both.scale
    assert a.buckets == both.buckets
    assert a.count == both.count == 10_000
    s = sorted(a_vals + b_vals)
    for q in QUANTILES:
        est = a.quantile(q)
        assert est is not None
        assert abs(est - exact(s, q)) <= a.relative_error * exact(s, q)


def test_zero_and_negative_values_go_to_zero_bucket() -> None:
    h = ExpHistogram()
    for v in (0.0, -1.0, 0.0, 5.0):
        h.record(v)
    h.record(math.nan)
    h.record(math.inf)
    assert h.zero_count == 3
    assert h.count == 4
    assert h.quantile(0.5) == 0.0
    assert h.quantile(0.0) == -1.0
    assert h.quantile(1.0) == 5.0


def test_values_below_one_have_negative_offsets() -> None:
    h = ExpHistogram()
    h.record(0.4)
    wire = h.to_wire()
    assert -86 <= wire.offset <= -84  # design.md: 0.4 ms at scale 6 lands near -85


def test_wire_round_trip_through_json() -> None:
    rnd = random.Random(3)
    h = ExpHistogram()
    for _ in range(1000):
        h.record(rnd.lognormvariate(1, 1))
    payload = encode({"boot": "b1", "seq": 1, "hist": {"lat_ms": h.to_wire()}})
    back = ExpHistogram.from_wire(decode_metrics(payload).hist["lat_ms"])
    assert back.buckets == h.buckets and back.scale == h.scale and back.count == h.count
    assert back.quantile(0.99) == h.quantile(0.99)


def test_bucket_count_is_bounded() -> None:
    h = ExpHistogram(max_buckets=160)
    for e in range(-30, 30):
        h.record(2.0**e * 1.3)
    assert max(h.buckets) - min(h.buckets) + 1 <= 160


def test_bad_arguments_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="scale"):
        ExpHistogram(scale=99)
    with pytest.raises(ValueError, match="q must be"):
        ExpHistogram().quantile(1.5)


def test_merge_wire_equals_merging_the_rebuilt_histogram() -> None:
    rnd = random.Random(11)
    fine, coarse = ExpHistogram(), ExpHistogram()
    for _ in range(3000):
        fine.record(rnd.uniform(2, 20))  # stays at scale 6
        coarse.record(rnd.lognormvariate(2, 2))  # wide: a coarser scale
    a, b = ExpHistogram(), ExpHistogram()
    for wire in (fine.to_wire(), coarse.to_wire(), fine.to_wire()):
        a.merge_wire(wire)
        b.merge(ExpHistogram.from_wire(wire))
    assert (a.scale, a.buckets, a.count, a.zero_count) == (b.scale, b.buckets, b.count, b.zero_count)
    assert a.quantile(0.99) == b.quantile(0.99)


def test_merge_wire_of_all_zero_counts_is_harmless() -> None:
    # found by the long fuzz run (tests/hostile/test_fuzz.py): counts [0] with only a zero bucket
    h = ExpHistogram()
    h.merge_wire(Hist(scale=0, offset=0, counts=[0], zero_count=1, count=1))
    assert (h.count, h.zero_count, h.buckets) == (1, 1, {})
    assert h.quantile(0.5) == 0.0


def test_a_wire_delta_without_min_and_max_still_gives_finite_quantiles() -> None:
    h = ExpHistogram()
    h.merge_wire(Hist(scale=0, offset=3, counts=[2, 1], count=3))  # values in (8, 16] and (16, 32]
    assert h.quantile(0.0) == pytest.approx(2 ** 3.5)
    assert h.quantile(1.0) == pytest.approx(2 ** 4.5)
