"""Rolling windows of 1-second buckets on the aggregator's arrival clock (pure; time passed in).

A counter delta covers a span of time (the reporter's interval, or a whole outage). ``Ring.add_span``
spreads it evenly over that span, split across the seconds it overlaps, so a rate read over complete
seconds is exact for steady traffic and an outage's backlog does not show as a spike.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import chain

from telemetry_bus.contract import Hist
from telemetry_bus.histogram import WINDOW_MAX_BUCKETS, ExpHistogram

__all__ = ["HistRing", "Ring"]


class Ring:
    """Sums per whole second over the last ``size`` seconds."""

    __slots__ = ("head", "size", "values")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}")
        self.size = size
        self.values = [0.0] * size
        self.head: int | None = None  # the newest second held

    def advance(self, sec: int) -> None:
        """Move the newest second to ``sec``, clearing the seconds that fall out."""
        head = self.head
        if head is None:
            self.head = sec
            return
        if sec <= head:
            return
        values, size = self.values, self.size
        if sec - head >= size:
            for i in range(size):
                values[i] = 0.0
        else:
            for s in range(head + 1, sec + 1):
                values[s % size] = 0.0
        self.head = sec

    def add(self, sec: int, value: float) -> None:
        head = self.head
        if head is None or sec > head:
            self.advance(sec)
            head = sec
        if sec <= head - self.size:
            return  # older than the ring holds
        self.values[sec % self.size] += value

    def add_span(self, t0: float, t1: float, value: float) -> None:
        """Spread ``value`` evenly over the time span [t0, t1] (arrival clock)."""
        if t1 - t0 <= 1e-9:
            self.add(math.floor(t1), value)
            return
        s0, s1 = math.floor(t0), math.floor(t1)
        if s0 == s1:
            self.add(s1, value)
            return
        self.advance(s1)
        rate = value / (t1 - t0)
        first = max(s0, s1 - self.size + 1)
        if first == s0:
            self.add(s0, rate * (s0 + 1 - t0))
        for s in range(first if first > s0 else s0 + 1, s1):
            self.add(s, rate)
        self.add(s1, rate * (t1 - s1))

    def get(self, sec: int) -> float:
        head = self.head
        if head is None or sec > head or sec <= head - self.size:
            return 0.0
        return self.values[sec % self.size]

    def sum(self, first: int, last: int) -> float:
        """Sum of the seconds ``first`` .. ``last`` inclusive (those still held)."""
        head = self.head
        if head is None:
            return 0.0
        first, last = max(first, head - self.size + 1), min(last, head)
        if first > last:
            return 0.0
        # The held seconds are contiguous in the ring: one or two slices, summed in C (an hour's
        # error counts every tick read 3,600 seconds; a per-second loop cost ~10 ms a tick).
        values, size = self.values, self.size
        i, j = first % size, last % size
        if i <= j:
            return math.fsum(values[i:j + 1])
        return math.fsum(chain(values[i:], values[:j + 1]))


class HistRing:
    """One histogram per second over the last ``size`` seconds; merged on read.

    Its histograms keep ``max_buckets`` (default ``WINDOW_MAX_BUCKETS``): merging wide deltas never
    lowers the scale below what the deltas themselves carry."""

    __slots__ = ("head", "hists", "max_buckets", "size")

    def __init__(self, size: int, max_buckets: int = WINDOW_MAX_BUCKETS) -> None:
        self.size = size
        self.max_buckets = max_buckets
        self.hists: dict[int, ExpHistogram] = {}
        self.head: int | None = None

    def add_wire(self, sec: int, wire: Hist) -> None:
        """Merge a wire-form delta into the histogram of second ``sec``."""
        if self.head is None or sec > self.head:
            self.head = sec
            for old in [s for s in self.hists if s <= sec - self.size]:
                del self.hists[old]
        if sec <= self.head - self.size:
            return
        cur = self.hists.get(sec)
        if cur is None:
            cur = self.hists[sec] = ExpHistogram(min(max(wire.scale, -10), 20), self.max_buckets)
        cur.merge_wire(wire)

    def seconds(self, first: int, last: int) -> Iterator[ExpHistogram]:
        for s, h in self.hists.items():
            if first <= s <= last:
                yield h

    def merged(self, first: int, last: int) -> ExpHistogram | None:
        out: ExpHistogram | None = None
        for h in self.seconds(first, last):
            if out is None:
                out = h.copy()
            else:
                out.merge(h)
        return out
