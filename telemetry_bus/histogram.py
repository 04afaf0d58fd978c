"""A mergeable base-2 exponential histogram (the OpenTelemetry / Prometheus native scheme).

At scale ``s`` the base is ``b = 2 ** (2 ** -s)`` and bucket ``k`` counts values in
``(b**k, b**(k+1)]``; values <= 0 go to the zero bucket. A quantile is answered with the geometric
middle of its bucket, so its relative error is at most ``sqrt(b) - 1`` (0.54 % at scale 6) against
the exact sample at the same rank. When the buckets in use would span more than ``max_buckets``
indexes, the histogram halves its resolution (scale - 1: adjacent buckets add up), which doubles the
error bound; merging two histograms first brings the finer one down to the coarser scale.

Pure and allocation-light: ``record`` is the reporter's hot path.

>>> h = ExpHistogram()
>>> for v in (1.0, 2.0, 3.0): h.record(v)
>>> round(h.quantile(0.5), 2)
2.0
"""

from __future__ import annotations

import math
from itertools import compress
from typing import Final

from telemetry_bus.contract import Hist

__all__ = ["DEFAULT_MAX_BUCKETS", "DEFAULT_SCALE", "REPORTER_MAX_BUCKETS", "WINDOW_MAX_BUCKETS",
           "ExpHistogram", "relative_error_bound"]

DEFAULT_SCALE: Final = 6
#: Indexes one histogram may span before it lowers its scale. 320 keeps scale 6 over a 32x range
#: (e.g. 2..64 ms) and scale 5 (1.1 %) over 1,000x.
DEFAULT_MAX_BUCKETS: Final = 320
#: The reporter's budget for one interval's delta: scale 6 (0.54 %) over a 2^16 (65,000x) range, so a
#: wide distribution (4-5 decades within one second) is not coarsened before it leaves the service.
#: The wire form is dense from the lowest to the highest bucket used, so a narrow delta stays small.
REPORTER_MAX_BUCKETS: Final = 1024
#: The aggregator's budget where deltas are merged (per-second and window histograms; sparse dicts,
#: never on the wire): scale 6 over 2^64, i.e. a merge never coarsens what the deltas carried.
WINDOW_MAX_BUCKETS: Final = 4096
MIN_SCALE: Final = -10

_log2 = math.log2
_ceil = math.ceil
_isfinite = math.isfinite


def relative_error_bound(scale: int) -> float:
    """Largest relative error of a quantile answered at ``scale`` (geometric bucket middle)."""
    return float(2.0 ** (2.0 ** -scale / 2.0) - 1.0)


class ExpHistogram:
    """Counts of positive values in exponential buckets, plus count, sum, min and max."""

    __slots__ = ("_factor", "_span", "buckets", "count", "max", "max_buckets", "min", "scale", "sum",
                 "zero_count")

    def __init__(self, scale: int = DEFAULT_SCALE, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        if not MIN_SCALE <= scale <= 20:
            raise ValueError(f"scale must be in [{MIN_SCALE}, 20], got {scale!r}")
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be >= 2, got {max_buckets!r}")
        self.scale = scale
        self.max_buckets = max_buckets
        self._factor = 2.0**scale
        self.buckets: dict[int, int] = {}
        #: (lowest, highest) bucket index held, once known: lets merges skip the span check
        self._span: tuple[int, int] | None = None
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- recording -----------------------------------------------------------------------------

    def index(self, value: float) -> int:
        """Bucket index of a positive ``value`` at the current scale."""
        return _ceil(_log2(value) * self._factor) - 1

    def record(self, value: float, n: int = 1) -> None:
        """Add ``n`` observations of ``value`` (non-finite values are ignored)."""
        if not _isfinite(value):  # NaN or inf: nothing sane to count
            return
        self.count += n
        self.sum += value * n
        if value < self.min:  # noqa: PLR1730 - cheaper than min() on the hot path
            self.min = value
        if value > self.max:  # noqa: PLR1730
            self.max = value
        if value <= 0.0:
            self.zero_count += n
            return
        k = _ceil(_log2(value) * self._factor) - 1
        buckets = self.buckets
        if k in buckets:
            buckets[k] += n
            return
        buckets[k] = n
        if len(buckets) > 1:
            self._fit()

    def _fit(self) -> None:
        if not self.buckets:  # e.g. a wire delta whose counts are all zero
            return
        lo, hi = min(self.buckets), max(self.buckets)
        shift = 0
        while (hi >> shift) - (lo >> shift) + 1 > self.max_buckets and self.scale - shift > MIN_SCALE:
            shift += 1
        if shift:
            self.downscale(shift)
            lo, hi = lo >> shift, hi >> shift
        self._span = (lo, hi)

    def downscale(self, by: int) -> None:
        """Lower the scale by ``by`` (each step adds adjacent bucket pairs)."""
        if by <= 0:
            return
        merged: dict[int, int] = {}
        for k, c in self.buckets.items():
            j = k >> by
            merged[j] = merged.get(j, 0) + c
        self.buckets = merged
        self._span = (self._span[0] >> by, self._span[1] >> by) if self._span else None
        self.scale -= by
        self._factor = 2.0**self.scale

    # -- merging ---------------------------------------------------------------------------------

    def merge(self, other: ExpHistogram) -> None:
        """Add ``other`` into this histogram (``other`` is not changed)."""
        if other.count == 0:
            return
        if other.scale < self.scale:
            self.downscale(self.scale - other.scale)
        shift = self.scale - other.scale  # <= 0: other is finer (or equal)
        buckets = self.buckets
        for k, c in other.buckets.items():
            j = k >> -shift if shift else k
            buckets[j] = buckets.get(j, 0) + c
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if len(buckets) > 1:
            self._fit()

    def merge_wire(self, wire: Hist) -> None:
        """Add a wire-form delta without building an intermediate histogram (the fold's hot path)."""
        if wire.count == 0:
            return
        if wire.scale < self.scale:
            self.downscale(self.scale - max(wire.scale, MIN_SCALE))
        shift = min(wire.scale, 20) - self.scale
        buckets = self.buckets
        offset = wire.offset
        counts = wire.counts
        if shift == 0:
            for i in compress(range(len(counts)), counts):
                k = offset + i
                buckets[k] = buckets.get(k, 0) + counts[i]
        else:
            for i in compress(range(len(counts)), counts):
                k = (offset + i) >> shift
                buckets[k] = buckets.get(k, 0) + counts[i]
        self.zero_count += wire.zero_count
        self.count += wire.count
        self.sum += wire.sum
        if wire.min is not None and wire.min < self.min:
            self.min = wire.min
        if wire.max is not None and wire.max > self.max:
            self.max = wire.max
        if counts:
            lo, hi = offset >> shift if shift else offset, (offset + len(counts) - 1) >> shift
            # Refit only when this delta reaches past the index span already held (rare).
            if self._span is None or lo < self._span[0] or hi > self._span[1]:
                self._fit()

    def copy(self) -> ExpHistogram:
        h = ExpHistogram(self.scale, self.max_buckets)
        h.buckets = dict(self.buckets)
        h._span = self._span
        h.zero_count, h.count, h.sum, h.min, h.max = self.zero_count, self.count, self.sum, self.min, self.max
        return h

    # -- reading ---------------------------------------------------------------------------------

    @property
    def relative_error(self) -> float:
        return relative_error_bound(self.scale)

    def quantile(self, q: float) -> float | None:
        """The value at rank ``ceil(q * count)`` (nearest rank), within ``relative_error``; None if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = max(1, _ceil(q * self.count))
        # min and max are known exactly when the sender gave them (a wire delta may not: +-inf here)
        lo_known, hi_known = _isfinite(self.min), _isfinite(self.max)
        if rank == self.count and hi_known:
            return float(self.max)
        if rank == 1 and lo_known:
            return float(self.min)
        if rank <= self.zero_count:
            return 0.0
        seen = self.zero_count
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen >= rank:
                mid = 2.0 ** ((k + 0.5) / self._factor)
                # The true value is also within [min, max]: clamp (exact at the extremes).
                if lo_known:
                    mid = max(mid, self.min)
                if hi_known:
                    mid = min(mid, self.max)
                return float(mid)
        # counts disagree with count (cannot happen for checked input): the largest value known
        return float(self.max) if hi_known else 0.0

    # -- wire form -------------------------------------------------------------------------------

    def to_wire(self) -> Hist:
        """The dense wire form of design.md section 2 (offset + counts)."""
        if self.buckets:
            lo, hi = min(self.buckets), max(self.buckets)
            counts = [self.buckets.get(k, 0) for k in range(lo, hi + 1)]
        else:
            lo, counts = 0, []
        return Hist(
            scale=self.scale,
            zero_count=self.zero_count,
            offset=lo,
            counts=counts,
            count=self.count,
            sum=self.sum,
            min=self.min if self.count else None,
            max=self.max if self.count else None,
        )

    @classmethod
    def from_wire(cls, wire: Hist, max_buckets: int = DEFAULT_MAX_BUCKETS) -> ExpHistogram:
        """Rebuild from the wire form; ``count`` is recomputed from the buckets (the sender's is checked)."""
        h = cls(min(max(wire.scale, MIN_SCALE), 20), max(max_buckets, len(wire.counts)))
        h.buckets = {wire.offset + i: c for i, c in enumerate(wire.counts) if c}
        h.zero_count = wire.zero_count
        h.count = wire.zero_count + sum(wire.counts)
        h.sum = wire.sum
        h.min = wire.min if wire.min is not None else math.inf
        h.max = wire.max if wire.max is not None else -math.inf
        h.max_buckets = max_buckets
        if len(h.buckets) > 1:
            h._fit()
        return h
