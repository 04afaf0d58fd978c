"""Writing history: the recorder's database side (one asyncpg pool, batched prepared writes, rollups).

``Writer.write(items)`` stores a batch of decoded bus messages in one transaction: the 1 s frame of
each second record, its histograms, component state changes, events (a duplicate is stored once),
probe results and alert messages. ``Writer.rollup()`` then folds every closed minute into the 1 min and
15 min rollups (recomputed from the stored seconds, so a minute that got late data is simply rolled
again). All SQL is prepared once per connection by asyncpg's statement cache.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from history.schema import drop_expired, ensure_partitions, migrate
from history.viewstream import BLOCK_S, COMPACT_AFTER_S, COMPACT_BLOCKS, compact
from history.viewstream import INSERT_SQL as VIEW_INSERT_SQL
from telemetry_bus.contract import Hist
from telemetry_bus.histogram import WINDOW_MAX_BUCKETS, ExpHistogram

__all__ = ["Item", "Writer", "dt", "kind_of"]

log = logging.getLogger("opsdash.history.store")

MINUTE: Final = 60
QUARTER: Final = 900
#: A minute is rolled up once a second this long after its end has been written.
ROLL_GRACE_S: Final = 3
#: Seconds without a record after which the state timeline shows "unknown" for the hole.
GAP_S: Final = 5
GAP_REASON: Final = "not recorded: the aggregator or the recorder was away"


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def kind_of(name: str) -> str:
    if name.startswith("gauge:"):
        return "gauge"
    if name.startswith("capacity:"):
        return "capacity"
    return "rate"


@dataclass(slots=True)
class Item:
    """One bus message waiting to be written (``kind``: second, event, probe, alert). A second's record
    is held as its JSON bytes (``raw``; ~8 KB at 200 series, about a third of the decoded dict) and
    decoded when written."""

    kind: str
    ts: float
    data: dict[str, Any]
    service: str = ""
    instance: str = ""
    raw: bytes | None = None

    def body(self) -> dict[str, Any]:
        if self.raw is not None:
            decoded: dict[str, Any] = _decode_json(self.raw)
            return decoded
        return self.data


_decode_json = msgspec.json.Decoder().decode


@dataclass(slots=True)
class _Batch:
    frames: list[tuple[datetime, list[float | None]]] = field(default_factory=list)
    hists: list[tuple[Any, ...]] = field(default_factory=list)
    states: list[tuple[datetime, str, str, str | None]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    probes: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: list[tuple[Any, ...]] = field(default_factory=list)
    views: list[tuple[Any, ...]] = field(default_factory=list)  # history/viewstream.py rows
    days: set[date] = field(default_factory=set)

    def rows(self) -> int:
        return (len(self.frames) + len(self.hists) + len(self.states) + len(self.events) + len(self.probes)
                + len(self.alerts) + len(self.views))


def hist_row(series_id: int, ts: datetime, h: ExpHistogram | Hist) -> tuple[Any, ...]:
    wire = h.to_wire() if isinstance(h, ExpHistogram) else h
    return (series_id, ts, wire.scale, wire.zero_count, wire.offset, list(wire.counts), wire.count,
            float(wire.sum), wire.min, wire.max)


def hist_from_row(r: Any) -> ExpHistogram:
    return ExpHistogram.from_wire(Hist(scale=r["scale"], zero_count=r["zero_count"], offset=r["offset"],
                                       counts=list(r["counts"]), count=r["count"], sum=r["sum"],
                                       min=r["min"], max=r["max"]), WINDOW_MAX_BUCKETS)


class Writer:
    """The recorder's connection pool and what it writes; ``open()`` migrates the schema first."""

    def __init__(self, dsn: str, retention_days: int = 7, raw_hours: int = 48, pool_size: int = 2) -> None:
        self.dsn = dsn
        self.retention_days = retention_days
        self.raw_hours = raw_hours
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None
        self.series: dict[str, int] = {}
        self.last_state: dict[str, str] = {}
        self._days: set[date] = set()
        self._dirty_minutes: set[int] = set()
        self._latest_ts = -math.inf
        self._latest_view_ts = -math.inf  # newest view stream message written
        self._packed_before = -math.inf  # view stream minutes before this are packed (compact_views)
        self.expired = 0  # rows older than the retention when they arrived (not written)
        self.rows_written = 0
        self._stale = False  # a batch failed: reload catalogue and states before the next one
        self._last_second: float | None = None  # ts of the newest second record stored
        self._gap_at: float | None = None  # start of the newest hole in the records

    async def open(self) -> None:
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                         command_timeout=60)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
                await self._load(conn)
        except BaseException:
            await pool.close()
            raise
        self.pool = pool
        self._days = set()

    async def _load(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch("SELECT id, name FROM series")
        self.series = {str(r["name"]): int(r["id"]) for r in rows}
        rows = await conn.fetch("SELECT DISTINCT ON (component) component, status FROM states "
                                "ORDER BY component, ts DESC")
        self.last_state = {str(r["component"]): str(r["status"]) for r in rows}
        last = await conn.fetchval("SELECT max(ts) FROM frames")
        self._last_second = last.timestamp() if last is not None else None
        self._days = set()
        self._stale = False

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.terminate()

    # -- writing ---------------------------------------------------------------------------------

    def _series_ids(self, names: Iterable[str], kinds: dict[str, str]) -> list[tuple[int, str, str]]:
        """Assign ids to new names (dense, in arrival order); return the rows to insert."""
        new: list[tuple[int, str, str]] = []
        for name in names:
            if name not in self.series:
                sid = len(self.series) + 1
                self.series[name] = sid
                new.append((sid, name, kinds.get(name) or kind_of(name)))
        return new

    def _build(self, items: Sequence[Item]) -> tuple[_Batch, list[tuple[int, str, str]]]:
        b = _Batch()
        new_series: list[tuple[int, str, str]] = []
        oldest = datetime.now(UTC) - timedelta(days=self.retention_days)
        for it in items:
            ts = dt(it.ts)
            if ts < oldest:
                self.expired += 1
                continue
            b.days.add(ts.date())
            if it.kind == "view":  # compressed at arrival (history/viewstream.py)
                b.views.append(it.data["row"])
                self._latest_view_ts = max(self._latest_view_ts, it.ts)
                continue
            d = it.body()
            if it.kind == "second":
                values: dict[str, float | None] = d.get("values") or {}
                hists: dict[str, Any] = d.get("hists") or {}
                new_series += self._series_ids(values, {})
                new_series += self._series_ids(hists, dict.fromkeys(hists, "hist"))
                vals: list[float | None] = [None] * len(self.series)
                for name, v in values.items():
                    vals[self.series[name] - 1] = v
                b.frames.append((ts, vals))
                for name, wire in hists.items():
                    b.hists.append(hist_row(self.series[name], ts, Hist(**wire)))
                gap_from = self._gap(it.ts)
                if gap_from is not None:
                    # nothing was recorded since gap_from (aggregator or recorder away): the timeline
                    # says unknown there, not the last status stretched over the hole
                    for comp, st in self.last_state.items():
                        if st != "unknown":
                            self.last_state[comp] = "unknown"
                            b.states.append((dt(gap_from), comp, "unknown", GAP_REASON))
                            b.days.add(dt(gap_from).date())
                    self._gap_at = gap_from
                for comp, (status, reason, since) in (d.get("components") or {}).items():
                    if self.last_state.get(comp) != status:
                        self.last_state[comp] = status
                        at = dt(since) if isinstance(since, (int, float)) and since <= it.ts + 5 else ts
                        if self._gap_at is not None and at.timestamp() <= self._gap_at:
                            at = ts  # known again from this record on, not from before the hole
                        b.states.append((at, comp, status, reason))
                        b.days.add(at.date())
                self._last_second = max(self._last_second or it.ts, it.ts)
                for e in d.get("feed") or []:
                    self._feed_event(b, e, str(d.get("aggregator") or "agg"))
                sec = int(it.ts)
                self._dirty_minutes.add(sec - sec % MINUTE)
                self._latest_ts = max(self._latest_ts, it.ts)
            elif it.kind == "event":
                b.events.append((ts, it.service, it.instance, str(d.get("boot", "")), int(d.get("seq") or 0),
                                 str(d.get("kind", "")), str(d.get("severity", "error")),
                                 str(d.get("message", "")), json.dumps(d.get("attrs") or {})))
            elif it.kind == "probe":
                metrics = d.get("metrics") or {}
                lat = d.get("latency_ms")
                b.probes.append((ts, it.service, str(d.get("status", "unknown")),
                                 float(lat) if isinstance(lat, (int, float)) else None,
                                 d.get("error"), json.dumps(metrics)))
            elif it.kind == "alert":
                b.alerts.append((ts, it.service, str(d.get("status", "")), json.dumps(d)))
        return b, new_series

    def _gap(self, ts: float) -> float | None:
        """Start of the hole before a second record at ``ts``, if more than GAP_S were not recorded."""
        last = self._last_second
        if last is None or ts - last <= GAP_S:
            return None
        return last + 1

    @staticmethod
    def _feed_event(b: _Batch, e: dict[str, Any], aggregator: str) -> None:
        """An error-feed entry of the aggregator (state change, quarantine) as an event."""
        if "reporter_ts" in e:
            # the entry of a service's own event: the recorder stores that event from the bus already
            # (with its real boot and seq); storing the feed's copy too would show it twice (h12)
            return
        try:
            ts = float(e.get("ts") or 0.0)
            seq = int(e.get("id") or 0)
        except (TypeError, ValueError):
            return
        if not ts:
            return
        attrs = {k: str(e[k]) for k in ("topic", "reporter_ts") if e.get(k) is not None}
        attrs.update({str(k): str(v) for k, v in (e.get("attrs") or {}).items()})
        b.events.append((dt(ts), str(e.get("service") or "opsdash-aggregator"), str(e.get("instance") or ""),
                         f"feed:{aggregator}", seq, str(e.get("type") or "feed"),
                         str(e.get("severity") or "info"), str(e.get("message") or ""), json.dumps(attrs)))
        b.days.add(dt(ts).date())

    async def write(self, items: Sequence[Item]) -> int:
        """Write a batch in one transaction; returns the rows written. Raises on a database error (the
        caller keeps the batch and retries): the in-memory catalogue and states are then reloaded."""
        if self.pool is None:
            raise ConnectionError("history database not connected")
        if self._stale:
            async with self.pool.acquire() as conn:
                await self._load(conn)
        b, new_series = self._build(items)
        try:
            async with self.pool.acquire() as conn:
                missing = sorted(b.days - self._days)
                if missing:
                    await ensure_partitions(conn, datetime.now(UTC), days=missing)
                    self._days.update(missing)
                async with conn.transaction():
                    if new_series:
                        await conn.executemany(
                            "INSERT INTO series (id, name, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            new_series)
                    if b.frames:
                        await conn.executemany(
                            "INSERT INTO frames (ts, vals) VALUES ($1, $2) ON CONFLICT (ts) DO NOTHING",
                            b.frames)
                    if b.hists:
                        await conn.executemany(
                            "INSERT INTO hist_1s VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                            "ON CONFLICT DO NOTHING", b.hists)
                    if b.states:
                        await conn.executemany(
                            "INSERT INTO states (ts, component, status, reason) VALUES ($1, $2, $3, $4) "
                            "ON CONFLICT (component, ts) DO UPDATE SET status = EXCLUDED.status, "
                            "reason = EXCLUDED.reason", b.states)
                    if b.events:
                        await conn.executemany(
                            "INSERT INTO events (ts, service, instance, boot, seq, type, severity, message, "
                            "attrs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) "
                            "ON CONFLICT DO NOTHING",
                            b.events)
                    if b.probes:
                        await conn.executemany(
                            "INSERT INTO probe_results VALUES ($1, $2, $3, $4, $5, $6::jsonb) "
                            "ON CONFLICT DO NOTHING", b.probes)
                    if b.alerts:
                        await conn.executemany(
                            "INSERT INTO alerts VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING",
                            b.alerts)
                    if b.views:
                        await conn.executemany(VIEW_INSERT_SQL, b.views)
        except BaseException:
            # the catalogue and states in memory may now be ahead of the database
            self._stale = True
            raise
        n = b.rows()
        self.rows_written += n
        return n

    # -- rollups ---------------------------------------------------------------------------------

    async def rollup(self, force: bool = False) -> int:
        """Roll the minutes that are closed (or all dirty ones with ``force``); returns minutes rolled."""
        if self.pool is None or not self._dirty_minutes:
            return 0
        closed = sorted(m for m in self._dirty_minutes
                        if force or m + MINUTE + ROLL_GRACE_S <= self._latest_ts)
        if not closed:
            return 0
        # contiguous runs of minutes become one range each
        ranges: list[tuple[int, int]] = []
        for m in closed:
            if ranges and ranges[-1][1] == m:
                ranges[-1] = (ranges[-1][0], m + MINUTE)
            else:
                ranges.append((m, m + MINUTE))
        async with self.pool.acquire() as conn:
            for lo, hi in ranges:
                await roll_range(conn, lo, hi)
        self._dirty_minutes.difference_update(closed)
        return len(closed)

    async def compact_views(self, before: float | None = None) -> int:
        """Pack the view stream's closed blocks (history/viewstream.compact): those ending
        ``COMPACT_AFTER_S`` before the newest message written (or before ``before``), once per block.
        Returns the blocks packed."""
        if self.pool is None:
            return 0
        horizon = self._latest_view_ts - COMPACT_AFTER_S if before is None else before
        if not math.isfinite(horizon):
            return 0  # no view message written yet (-inf % BLOCK_S is NaN)
        horizon -= horizon % BLOCK_S
        if horizon <= self._packed_before:
            return 0
        async with self.pool.acquire() as conn:
            n = await compact(conn, horizon)
        if n < COMPACT_BLOCKS:
            self._packed_before = horizon  # else more to pack: again on the next call
        return n

    async def maintain(self, now: datetime | None = None) -> list[str]:
        if self.pool is None:
            return []
        now = now or datetime.now(UTC)
        async with self.pool.acquire() as conn:
            await ensure_partitions(conn, now)
            return await drop_expired(conn, now, self.retention_days, self.raw_hours)

    async def db_size(self) -> int | None:
        if self.pool is None:
            return None
        async with self.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT pg_database_size(current_database())"))


async def roll_range(conn: asyncpg.Connection, lo: int, hi: int) -> None:
    """(Re)compute the 1 min rollups of ``[lo, hi)`` (whole minutes) from the 1 s frames and
    histograms, and the 15 min rollups of the quarters they touch from the 1 min ones."""
    a, b = dt(lo), dt(hi)
    qa, qb = dt(lo - lo % QUARTER), dt(hi + (-hi) % QUARTER)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO rollup_1m (series_id, ts, n, sum, min, max) "
            "SELECT u.id::int, date_bin('1 minute', f.ts, 'epoch'), count(*), sum(u.v::float8), min(u.v), "
            "max(u.v) "
            "FROM frames f, unnest(f.vals) WITH ORDINALITY AS u(v, id) "
            "WHERE f.ts >= $1 AND f.ts < $2 AND u.v IS NOT NULL GROUP BY 1, 2 "
            "ON CONFLICT (series_id, ts) DO UPDATE SET n = EXCLUDED.n, sum = EXCLUDED.sum, "
            "min = EXCLUDED.min, max = EXCLUDED.max", a, b)
        await conn.execute(
            "INSERT INTO rollup_15m (series_id, ts, n, sum, min, max) "
            "SELECT series_id, date_bin('15 minutes', ts, 'epoch'), sum(n), sum(sum), min(min), max(max) "
            "FROM rollup_1m WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2 "
            "ON CONFLICT (series_id, ts) DO UPDATE SET n = EXCLUDED.n, sum = EXCLUDED.sum, "
            "min = EXCLUDED.min, max = EXCLUDED.max", qa, qb)
        for src, dst, step, lo_, hi_ in (("hist_1s", "hist_1m", MINUTE, a, b),
                                         ("hist_1m", "hist_15m", QUARTER, qa, qb)):
            rows = await conn.fetch(f"SELECT * FROM {src} WHERE ts >= $1 AND ts < $2 ORDER BY series_id, ts",
                                    lo_, hi_)
            merged: dict[tuple[int, int], ExpHistogram] = {}
            for r in rows:
                t = int(r["ts"].timestamp())
                key = (int(r["series_id"]), t - t % step)
                h = merged.get(key)
                if h is None:
                    merged[key] = hist_from_row(r)
                else:
                    h.merge(hist_from_row(r))
            if merged:
                await conn.executemany(
                    f"INSERT INTO {dst} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                    "ON CONFLICT (series_id, ts) DO UPDATE SET scale = EXCLUDED.scale, "
                    "zero_count = EXCLUDED.zero_count, \"offset\" = EXCLUDED.\"offset\", "
                    "counts = EXCLUDED.counts, count = EXCLUDED.count, sum = EXCLUDED.sum, "
                    "min = EXCLUDED.min, max = EXCLUDED.max",
                    [hist_row(sid, dt(t), h) for (sid, t), h in merged.items()])

