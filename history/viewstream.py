"""The view stream in history (issue 19): every snapshot and patch the aggregator published, so the
whole dashboard can be rebuilt as it was at any recorded moment.

The recorder stores each ``<root>/v1/view/snapshot`` (every 10 s, at start, after a reconnect) and each
``<root>/v1/view/patch`` (every tick) as one row of ``view_stream``, cut to the **default stream**
(gateway/sections.py: ``services`` as per-service summaries, no per-instance detail, so the stream
does not grow with the platform) and compressed with zstd (level 3), each row on its own (measured
against PostgreSQL's TOAST pglz and lz4 in bench/bench_viewstream.py; docs/history.md).

The view at ``T`` is the latest snapshot at or before ``T`` plus the patches after it up to ``T``,
applied with :func:`telemetry_bus.view_diff.apply_view_patch` exactly as a live client applies them;
a patch whose ``base`` is not the seq held is a gap (QoS 0 patches can be lost): the view then stays
at the last tick before the gap, and ``meta.generated_at`` says which tick it is.

    row = stream_row("patch", payload)               # at arrival (recorder), None for a bad message
    await conn.executemany(INSERT_SQL, [row, ...])   # in the recorder's batch
    found = await view_at(conn, at)                  # ViewAt | None; oldest(conn) for the 404
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from gateway.sections import filter_view
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.view_diff import apply_view_patch

if TYPE_CHECKING:
    import asyncpg
    import zstandard

log = logging.getLogger("opsdash.history.viewstream")

__all__ = ["INSERT_SQL", "MAX_PATCHES", "MIGRATION_SQL", "StreamRow", "ViewAt", "compress", "decompress",
           "oldest", "replay", "stream_row", "view_at"]

#: Schema (a migration of history/schema.py). ``snap`` first in the key: the query walks the snapshots
#: alone (one row in ~10-100) backwards from T. ``body`` is already compressed: EXTERNAL keeps
#: PostgreSQL from trying again (out of line when large, never pglz'd).
MIGRATION_SQL: Final = """
CREATE TABLE view_stream (
    ts timestamptz NOT NULL,
    seq bigint NOT NULL,
    snap boolean NOT NULL,
    base bigint,
    raw_len int NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (snap, ts, seq)
) PARTITION BY RANGE (ts);
ALTER TABLE view_stream ALTER COLUMN body SET STORAGE EXTERNAL;
"""

INSERT_SQL: Final = ("INSERT INTO view_stream (ts, seq, snap, base, raw_len, body) "
                     "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")

#: Most patches read after a snapshot (10 s of early ticks at 10 a second is ~100; an aggregator
#: whose snapshots were lost for a while must not make one request read hours of patches).
MAX_PATCHES: Final = 2000
#: How far back a snapshot is looked for (an aggregator silent longer than this: 404 for that moment).
MAX_LOOKBACK_S: Final = 86400.0
LEVEL: Final = 3

_enc: Final = msgspec.json.Encoder()
_dec_snapshot: Final = msgspec.json.Decoder(ViewSnapshot)
_dec_patch: Final = msgspec.json.Decoder(ViewPatch)
_dec_any: Final = msgspec.json.Decoder()
_codec: list[tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]] = []
_missing: list[bool] = []  # logged once

#: (ts, seq, snap, base, raw_len, body): one row of ``view_stream`` as INSERT_SQL takes it.
StreamRow = tuple[datetime, int, bool, int | None, int, bytes]


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    # imported on first use: a venv made before zstandard was a dependency still imports history (the
    # schema's migrations live here); the view stream's messages are then refused, counted and logged
    if not _codec:
        try:
            import zstandard
        except ImportError as exc:
            if not _missing:
                _missing.append(True)
                log.error("view stream: zstandard is not installed (pip install -e . installs it): %s; "
                          "view messages are refused (the recorder counts them rejected)", exc)
            raise ValueError("zstandard is not installed") from exc
        _codec.append((zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdDecompressor()))
    return _codec[0]


def compress(data: bytes) -> bytes:
    return _zstd()[0].compress(data)


def decompress(data: bytes) -> bytes:
    return _zstd()[1].decompress(data)


def stream_row(kind: Literal["snapshot", "patch"], payload: bytes) -> StreamRow:
    """The row of one published snapshot or patch: cut to the default stream, JSON, zstd. Raises
    msgspec.DecodeError / ValueError on a malformed message (the recorder counts it rejected)."""
    if kind == "snapshot":
        snap = _dec_snapshot.decode(payload)
        _check_ts(snap.ts)
        raw = _enc.encode(filter_view(snap.state, None))
        return (_tick_time(snap.ts), snap.seq, True, None, len(raw), compress(raw))
    p = _dec_patch.decode(payload)
    _check_ts(p.ts)
    body: dict[str, Any] = {"patch": filter_view(p.patch, None), "append": p.append}
    if p.errors:
        body["errors"] = p.errors
    raw = _enc.encode(body)
    return (_tick_time(p.ts), p.seq, False, p.base, len(raw), compress(raw))


def _tick_time(ts: float) -> datetime:
    """A tick's time as the view's ``meta.generated_at`` says it (ms), so ``at=generated_at`` finds it."""
    return datetime.fromtimestamp(round(ts, 3), UTC)


def _check_ts(ts: float) -> None:
    if not math.isfinite(ts) or not 0 < ts < 32503680000:  # before year 3000
        raise ValueError(f"view message ts out of range: {ts!r}")


@dataclass(frozen=True, slots=True)
class ViewAt:
    """The view rebuilt at a moment: ``state`` as the default stream held it after tick ``seq`` (time
    ``ts``); ``snapshot_ts`` the snapshot it started from, ``patches`` how many were applied, ``gap``
    True when a lost patch stopped the replay before the moment asked for."""

    state: dict[str, Any]
    seq: int
    ts: float
    snapshot_ts: float
    patches: int
    gap: bool


Patch = tuple[float, int, int, dict[str, Any]]


def replay(state: dict[str, Any], seq: int, ts: float,
           patches: Iterable[Patch]) -> tuple[dict[str, Any], int, float, int, bool]:
    """Apply ``(ts, seq, base, body)`` patches (in order) to the view at ``seq``: a patch at or before
    the seq held is skipped (the snapshot's own tick, a duplicate), one whose ``base`` is not the seq
    held stops the replay (a lost patch). Returns (state, seq, ts, applied, gap). Pure."""
    applied = 0
    for p_ts, p_seq, base, body in patches:
        if p_seq <= seq:
            continue
        if base != seq:
            return state, seq, ts, applied, True
        state = apply_view_patch(state, body.get("patch"), body.get("append"), body.get("errors"))
        seq, ts = p_seq, p_ts
        applied += 1
    return state, seq, ts, applied, False


async def oldest(conn: asyncpg.Connection) -> float | None:
    """Time of the oldest stored snapshot (nothing can be rebuilt before it); None when none."""
    t = await conn.fetchval("SELECT min(ts) FROM view_stream WHERE snap")
    return None if t is None else float(t.timestamp())


async def view_at(conn: asyncpg.Connection, at: float) -> ViewAt | None:
    """The view at the last recorded tick at or before ``at``; None when no snapshot precedes it (within
    a day)."""
    t = datetime.fromtimestamp(at, UTC)
    snap = await conn.fetchrow(
        "SELECT ts, seq, body FROM view_stream WHERE snap AND ts <= $1 AND ts > $2 "
        "ORDER BY ts DESC, seq DESC LIMIT 1", t, datetime.fromtimestamp(at - MAX_LOOKBACK_S, UTC))
    if snap is None:
        return None
    s_ts = float(snap["ts"].timestamp())
    state = _dec_any.decode(decompress(snap["body"]))
    rows: Sequence[Any] = await conn.fetch(
        "SELECT ts, seq, base, body FROM view_stream WHERE NOT snap AND ts >= $1 AND ts <= $2 "
        "ORDER BY ts, seq LIMIT $3", snap["ts"], t, MAX_PATCHES)
    patches = ((float(r["ts"].timestamp()), int(r["seq"]), int(r["base"]),
                _dec_any.decode(decompress(r["body"]))) for r in rows)
    state, seq, ts, n, gap = replay(state, int(snap["seq"]), s_ts, patches)
    return ViewAt(state, seq, ts, s_ts, n, gap)


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One recorded message, decoded: a snapshot (``base`` None, ``body`` the view) or a patch
    (``body`` ``{"patch", "append"[, "errors"]}``)."""

    ts: float
    seq: int
    base: int | None
    body: dict[str, Any]


async def messages_after(conn: asyncpg.Connection, ts: float, seq: int, after_snap: bool, until: float,
                         limit: int = 200) -> list[StreamMessage]:
    """The recorded messages after the cursor ``(ts, seq, after_snap)`` up to ``until``, in order (at one
    tick the patch before the snapshot), at most ``limit`` of each kind. Two index range scans (``snap``
    leads the key)."""
    lo, hi = datetime.fromtimestamp(ts, UTC), datetime.fromtimestamp(until, UTC)
    out: list[tuple[float, int, int, StreamMessage]] = []
    bound: tuple[float, int] | None = None  # a kind cut at ``limit`` is complete only up to its last
    for snap in (False, True):
        op = ">=" if snap and not after_snap else ">"  # a tick's snapshot sorts after its patch
        rows = await conn.fetch(
            "SELECT ts, seq, base, body FROM view_stream WHERE snap = $1 AND ts >= $2 AND ts <= $3 "
            f"AND (ts, seq) {op} ($2, $4) ORDER BY ts, seq LIMIT $5", snap, lo, hi, seq, limit)
        for r in rows:
            t = float(r["ts"].timestamp())
            out.append((t, int(r["seq"]), int(snap), StreamMessage(
                t, int(r["seq"]), None if snap else int(r["base"]), _dec_any.decode(decompress(r["body"])))))
        if len(rows) == limit:
            last = (float(rows[-1]["ts"].timestamp()), int(rows[-1]["seq"]))
            bound = last if bound is None else min(bound, last)
    out.sort(key=lambda m: m[:3])
    return [m for t, sq, _, m in out if bound is None or (t, sq) <= bound]
