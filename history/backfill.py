"""Restart without amnesia: the view's series read back from history when an aggregator starts.

``series_from_history`` returns, for each of the view's series, the points of the last
``series_len`` seconds as the live fold would have made them (docs/view.md): a rate point ``[t, v]``
is the count of the second ``[t - 1, t)`` (history stores it at ``t - 1``); a latency point at ``t`` is
the quantile over the window ``(t - window_s, t]`` of the merged per-second histograms, computed with a
sliding sum of buckets (one add and one subtract per second, not a merge of the whole window each
time). Every second without a record is ``null``: the time the aggregator was away shows as a gap,
never as zeros. The pure part (``points_from_rows``) takes rows; the adapter reads them.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from history.query import sig7
from history.second import VIEW_RATES, WRITE_HIST
from history.store import dt, hist_from_row
from telemetry_bus.histogram import WINDOW_MAX_BUCKETS, ExpHistogram

__all__ = ["points_from_rows", "series_from_history"]

log = logging.getLogger("opsdash.history.backfill")

QS: Final = (("write_p50", 0.5), ("write_p95", 0.95), ("write_p99", 0.99))


def _rnd(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, 3)


def points_from_rows(now: float, length: int, window_s: int, rates: dict[str, dict[int, float | None]],
                     hists: dict[int, ExpHistogram]) -> dict[str, list[list[float | None]]]:
    """The view's series for the ``length`` seconds before ``now``.

    ``rates``: series name → {history second → value}; ``hists``: history second → merged histogram
    of that second."""
    end = math.floor(now)
    out: dict[str, list[list[float | None]]] = {}
    # rate points: [t, count of [t-1, t)] for t up to the one the first live tick will make
    first_t = end - length + 1
    for name, by_sec in rates.items():
        # rounded as the live fold rounds them (view.py rnd): a backfilled point reads like a live one
        out[name] = [[float(t), _rnd(by_sec.get(t - 1))] for t in range(first_t, end - 1)]
    if not hists:
        for q, _ in QS:
            out[q] = [[float(t), None] for t in range(first_t, end)]
        return out
    scale = min(h.scale for h in hists.values())
    norm: dict[int, ExpHistogram] = {}
    for t, h in hists.items():
        if h.scale > scale:
            low = h.copy()
            low.downscale(h.scale - scale)
            norm[t] = low
        else:
            norm[t] = h
    running: dict[int, int] = {}
    zero = count = 0
    total = 0.0
    inside: deque[int] = deque()
    pts: dict[str, list[list[float | None]]] = {q: [] for q, _ in QS}
    for t in range(first_t - window_s, end):
        new = norm.get(t)
        if new is not None:
            for k, c in new.buckets.items():
                running[k] = running.get(k, 0) + c
            zero += new.zero_count
            count += new.count
            total += new.sum
            inside.append(t)
        old = t - window_s
        if inside and inside[0] <= old:
            inside.popleft()
            g = norm[old]
            for k, c in g.buckets.items():
                left = running[k] - c
                if left:
                    running[k] = left
                else:
                    del running[k]
            zero -= g.zero_count
            count -= g.count
            total -= g.sum
        if t < first_t:
            continue
        if not count:
            for q, _ in QS:
                pts[q].append([float(t), None])
            continue
        w = ExpHistogram(scale, WINDOW_MAX_BUCKETS)
        w.buckets = dict(running)
        w.zero_count, w.count, w.sum = zero, count, total
        w.min = min(norm[s].min for s in inside)
        w.max = max(norm[s].max for s in inside)
        for q, p in QS:
            pts[q].append([float(t), _rnd(w.quantile(p))])
    out.update(pts)
    return out


async def series_from_history(dsn: str, now: float, length: int = 900, window_s: int = 60,
                              timeout: float = 5.0) -> dict[str, list[list[float | None]]]:
    """Read the last ``length`` seconds (and the window before them) from history; see the module doc."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        if not await conn.fetchval("SELECT to_regclass('series') IS NOT NULL"):
            return {}  # a new history database: nothing recorded yet (the recorder creates the schema)
        names = [n for n, _ in VIEW_RATES]
        ids = {str(r["name"]): int(r["id"]) for r in await conn.fetch(
            "SELECT id, name FROM series WHERE name = ANY($1::text[])", [*names, WRITE_HIST])}
        end = math.floor(now)
        lo, hi = end - length - 1, end
        rates: dict[str, dict[int, float | None]] = {n: {} for n in names}
        present = [n for n in names if n in ids]
        if present:
            cols = ", ".join(f"vals[{ids[n]}]" for n in present)
            sql = f"SELECT ts, {cols} FROM frames WHERE ts >= $1 AND ts < $2"
            for r in await conn.fetch(sql, dt(lo), dt(hi), timeout=timeout):
                t = int(r["ts"].timestamp())
                for i, n in enumerate(present):
                    v = r[i + 1]
                    rates[n][t] = None if v is None else sig7(v)
        hists: dict[int, ExpHistogram] = {}
        if WRITE_HIST in ids:
            rows: Sequence[Any] = await conn.fetch(
                "SELECT * FROM hist_1s WHERE series_id = $1 AND ts >= $2 AND ts < $3", ids[WRITE_HIST],
                dt(lo - window_s), dt(hi), timeout=timeout)
            hists = {int(r["ts"].timestamp()): hist_from_row(r) for r in rows}
    finally:
        await conn.close()
    return points_from_rows(now, length, window_s, rates, hists)
