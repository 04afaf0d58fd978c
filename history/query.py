"""Reading history: the catalogue, series over any range and step, and component state timelines
(the answers of design.md section 8's endpoints).

Where a step's points come from:

- a multiple of 900 s: the 15 min rollups; a multiple of 60 s: the 1 min rollups; otherwise the 1 s
  frames (kept ``history.raw_hours``; older than that such a step finds nothing: ``null``).
- the last, not yet rolled-up minutes of a rollup-based query come from the 1 s data.

Means are ``sum / n`` over the points present (a hole does not pull a mean down; a step with no point
is ``null``). ``write_p50``/``write_p95``/``write_p99`` are quantiles of the **merged histograms** of
all the samples in the step (never an average of stored quantiles), within the histogram's relative
error bound, returned beside the series as ``relative_error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from history.second import WRITE_HIST
from history.store import dt, hist_from_row
from telemetry_bus.contract import Hist
from telemetry_bus.histogram import ExpHistogram

__all__ = ["MAX_POINTS", "QUANTILES", "STEPS", "HistoryReader", "QueryError", "auto_step", "sig7"]

#: Steps the default picks from (seconds): the smallest giving <= DEFAULT_POINTS points.
STEPS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
DEFAULT_POINTS: Final = 1000
#: Most points one series may have in an answer (an explicit step smaller than that is refused).
MAX_POINTS: Final = 20_000
QUANTILES: Final = {"write_p50": 0.5, "write_p95": 0.95, "write_p99": 0.99}
#: The 1 s data read after the newest rollup spans at most this long: a series that stopped long ago
#: (its newest rollup is old) has nothing in the 1 s frames after it, so a long scan would find nothing.
TAIL_S: Final = 2 * 3600


def sig7(v: float) -> float:
    """A value of the float4 frames (or a mean of them) rounded to the 7 significant digits they hold,
    so 0.1 reads back as 0.1, not 0.10000000149."""
    return float(f"{v:.7g}")


class QueryError(ValueError):
    """A bad parameter: ``param`` names it, the message says why (the gateway answers 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def auto_step(span: float, points: int = DEFAULT_POINTS) -> int:
    """The smallest step of ``STEPS`` (then whole days) that gives at most ``points`` points."""
    for s in STEPS:
        if math.ceil(span / s) <= points:
            return s
    return 86400 * math.ceil(span / 86400 / points)


def _source(step: int) -> tuple[str, str, int]:
    """(values table, histogram table, resolution) for a step."""
    if step % 900 == 0:
        return "rollup_15m", "hist_15m", 900
    if step % 60 == 0:
        return "rollup_1m", "hist_1m", 60
    return "frames", "hist_1s", 1


@dataclass(frozen=True, slots=True)
class Range:
    start: int  # first bin (a multiple of step)
    end: float  # exclusive
    step: int

    @property
    def bins(self) -> range:
        return range(self.start, math.ceil(self.end), self.step) if self.end > self.start else range(0)


class HistoryReader:
    """Queries over a pool of the history database (the gateway's)."""

    def __init__(self, pool: asyncpg.Pool, retention_days: int = 7) -> None:
        self.pool = pool
        self.retention_days = retention_days

    async def catalogue(self) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, name, kind FROM series ORDER BY id")
            oldest = await conn.fetchval(
                "SELECT min(m) FROM (SELECT (SELECT min(ts) FROM rollup_1m r WHERE r.series_id = s.id) AS m "
                "FROM series s) x")
            first_frame = await conn.fetchval("SELECT min(ts) FROM frames")
        names = [str(r["name"]) for r in rows if r["kind"] != "hist"]
        if any(r["name"] == WRITE_HIST for r in rows):
            names += list(QUANTILES)
        # a rollup minute starts at most 60 s before its first point: the 1 s data is more exact
        if first_frame is not None and (oldest is None or first_frame.timestamp() < oldest.timestamp() + 60):
            oldest = first_frame
        return {"series": names, "retention_days": self.retention_days,
                "oldest": oldest.timestamp() if oldest is not None else None}

    async def series(self, names: list[str], frm: float, to: float, step: int | None) -> dict[str, Any]:
        """``{"from", "to", "step", "series": {name: [[t, v], ...]}, "relative_error": {...}}``."""
        if to <= frm:
            raise QueryError("to", f"must be after from ({to:g} <= {frm:g})")
        if step is None:
            step = auto_step(to - frm)
        elif math.ceil((to - frm) / step) > MAX_POINTS:
            raise QueryError("step", f"{step} s gives {math.ceil((to - frm) / step)} points over this range "
                                     f"(at most {MAX_POINTS}); use a larger step")
        rng = Range(int(frm // step * step), to, step)
        async with self.pool.acquire() as conn:
            ids = {str(r["name"]): (int(r["id"]), str(r["kind"]))
                   for r in await conn.fetch("SELECT id, name, kind FROM series")}
            unknown = [n for n in names if n not in ids and not (n in QUANTILES and WRITE_HIST in ids)]
            if unknown:
                raise QueryError("series", f"unknown series {', '.join(map(repr, unknown[:5]))} "
                                           "(GET /operator/system/history lists them)")
            value_ids = {n: ids[n][0] for n in names if n in ids and ids[n][1] != "hist"}
            out: dict[str, list[list[float | None]]] = {}
            rel: dict[str, float] = {}
            values = await self._values(conn, list(value_ids.values()), rng)
            for n, sid in value_ids.items():
                got = values.get(sid, {})
                out[n] = [[float(t), got.get(t)] for t in rng.bins]
            qnames = [n for n in names if n in QUANTILES]
            if qnames:
                hists = await self._hists(conn, ids[WRITE_HIST][0], rng)
                for n in qnames:
                    q = QUANTILES[n]
                    pts: list[list[float | None]] = []
                    worst = 0.0
                    for t in rng.bins:
                        h = hists.get(t)
                        v = h.quantile(q) if h is not None and h.count else None
                        if h is not None and h.count:
                            worst = max(worst, h.relative_error)
                        pts.append([float(t), None if v is None else round(v, 6)])
                    out[n] = pts
                    rel[n] = round(worst, 6)
        answer: dict[str, Any] = {"from": float(rng.start), "to": float(to), "step": step,
                                  "series": {n: out[n] for n in names}}
        if rel:
            answer["relative_error"] = rel
        return answer

    async def _rolled_until(self, conn: asyncpg.Connection, table: str, sid: int) -> float:
        """End of the newest rolled-up minute of a series (later data is read from the 1 s tables);
        the 15 min rollups are recomputed with every minute, so this holds for them too."""
        ts = await conn.fetchval(f"SELECT max(ts) FROM {table} WHERE series_id = $1", sid)
        return ts.timestamp() + 60 if ts is not None else -1e18

    async def _values(self, conn: asyncpg.Connection, sids: list[int],
                      rng: Range) -> dict[int, dict[int, float]]:
        """Means per bin over the points present: rollups up to the newest rolled minute (the current
        15 min rollup holds every rolled minute of its quarter), the 1 s frames after it; a bin that
        spans both adds their sums and counts."""
        if not sids:
            return {}
        table, _, _res = _source(rng.step)
        acc: dict[int, dict[int, list[float]]] = {sid: {} for sid in sids}  # sid -> t -> [sum, n]
        split = float(rng.start)
        if table != "frames":
            until = await self._rolled_until(conn, "rollup_1m", sids[0])
            split = max(float(rng.start), min(rng.end, max(until, rng.end - TAIL_S)))
            rows = await conn.fetch(
                f"SELECT series_id, (floor(extract(epoch FROM ts) / $4) * $4)::bigint AS t, "
                f"sum(sum) AS s, sum(n) AS n FROM {table} WHERE series_id = ANY($1::int[]) "
                f"AND ts >= $2 AND ts < $3 GROUP BY 1, 2", sids, dt(rng.start), dt(split), rng.step)
            for r in rows:
                acc[int(r["series_id"])][int(r["t"])] = [float(r["s"]), float(r["n"])]
        if split < rng.end:
            cols = ", ".join(f"sum(vals[{int(s)}]::float8), count(vals[{int(s)}])" for s in sids)
            rows = await conn.fetch(
                f"SELECT (floor(extract(epoch FROM ts) / $3) * $3)::bigint AS t, {cols} FROM frames "
                f"WHERE ts >= $1 AND ts < $2 GROUP BY 1", dt(split), dt(rng.end), rng.step)
            for r in rows:
                t = int(r["t"])
                for i, sid in enumerate(sids):
                    total, n = r[2 * i + 1], r[2 * i + 2]
                    if n:
                        cell = acc[sid].setdefault(t, [0.0, 0.0])
                        cell[0] += float(total)
                        cell[1] += float(n)
        return {sid: {t: sig7(sn[0] / sn[1]) for t, sn in bins.items() if sn[1]} for sid, bins in acc.items()}

    async def _hists(self, conn: asyncpg.Connection, sid: int, rng: Range) -> dict[int, ExpHistogram]:
        """Merged histogram per bin: the rollup histograms up to the newest rolled minute, the 1 s ones
        after it (merged from their wire form without building a histogram per row)."""
        _, table, _res = _source(rng.step)
        merged: dict[int, ExpHistogram] = {}
        split = float(rng.start)
        step = rng.step

        def add(rows: list[Any]) -> None:
            for r in rows:
                t = int(r["ts"].timestamp()) // step * step
                h = merged.get(t)
                if h is None:
                    merged[t] = hist_from_row(r)
                else:
                    h.merge_wire(Hist(scale=r["scale"], zero_count=r["zero_count"], offset=r["offset"],
                                      counts=r["counts"], count=r["count"], sum=r["sum"], min=r["min"],
                                      max=r["max"]))

        if table != "hist_1s":
            until = await self._rolled_until(conn, "hist_1m", sid)
            split = max(float(rng.start), min(rng.end, max(until, rng.end - TAIL_S)))
            add(await conn.fetch(f"SELECT * FROM {table} WHERE series_id = $1 AND ts >= $2 AND ts < $3",
                                 sid, dt(rng.start), dt(split)))
        if split < rng.end:
            add(await conn.fetch("SELECT * FROM hist_1s WHERE series_id = $1 AND ts >= $2 AND ts < $3",
                                 sid, dt(split), dt(rng.end)))
        return merged

    async def states(self, frm: float, to: float, now: float) -> dict[str, Any]:
        """``{"components": {c: [{"status", "from", "to", "reason"}, ...]}, "availability": {c: ratio}}``."""
        if to <= frm:
            raise QueryError("to", f"must be after from ({to:g} <= {frm:g})")
        async with self.pool.acquire() as conn:
            before = await conn.fetch(
                "SELECT DISTINCT ON (component) component, ts, status, reason FROM states WHERE ts < $1 "
                "ORDER BY component, ts DESC", dt(frm))
            rows = await conn.fetch(
                "SELECT component, ts, status, reason FROM states WHERE ts >= $1 AND ts < $2 "
                "ORDER BY component, ts", dt(frm), dt(to))
        changes: dict[str, list[tuple[float, str, str | None]]] = {}
        for r in before:
            changes.setdefault(str(r["component"]), []).append((frm, str(r["status"]), r["reason"]))
        for r in rows:
            changes.setdefault(str(r["component"]), []).append(
                (r["ts"].timestamp(), str(r["status"]), r["reason"]))
        end = min(to, now)
        components: dict[str, list[dict[str, Any]]] = {}
        availability: dict[str, float | None] = {}
        for comp in sorted(changes):
            seq = changes[comp]
            intervals: list[dict[str, Any]] = []
            known = up = 0.0
            for i, (t0, status, reason) in enumerate(seq):
                t1: float | None = seq[i + 1][0] if i + 1 < len(seq) else (None if to >= now else to)
                if intervals and intervals[-1]["status"] == status and intervals[-1]["reason"] == reason:
                    intervals[-1]["to"] = t1  # the same state recorded again (e.g. after a restart)
                else:
                    intervals.append({"status": status, "from": t0, "to": t1, "reason": reason})
                span = max(0.0, min(end, t1 if t1 is not None else end) - max(t0, frm))
                if status != "unknown":
                    known += span
                    if status != "down":
                        up += span
            components[comp] = intervals
            availability[comp] = round(up / known, 6) if known > 0 else None
        return {"components": components, "availability": availability}
