"""The view stream in history (issue 19): every snapshot and patch the aggregator published, so the
whole dashboard can be rebuilt as it was at any recorded moment.

The recorder stores each ``<root>/v1/view/snapshot`` (every 10 s, at start, after a reconnect) and each
``<root>/v1/view/patch`` (every tick) as one row of ``view_stream``, cut to the **default stream**
(gateway/sections.py: ``services`` as per-service summaries, no per-instance detail, so the stream
does not grow with the platform) and compressed with zstd (level 3), each row on its own (measured
against PostgreSQL's TOAST pglz and lz4 in bench/bench_viewstream.py; docs/history.md).

The view at ``T`` is the latest kept snapshot at or before ``T`` plus the patches after it up to ``T``,
applied with :func:`telemetry_bus.view_diff.apply_view_patch` exactly as a live client applies them;
a patch whose ``base`` is not the seq held is a gap (QoS 0 patches can be lost): the view then stays
at the last tick before the gap, and ``meta.generated_at`` says which tick it is.

    row = stream_row("patch", payload)               # at arrival (recorder), None for a bad message
    await conn.executemany(INSERT_SQL, [row, ...])   # in the recorder's batch
    found = await view_at(conn, at)                  # ViewAt | None; oldest(conn) for the 404
    await compact(conn, before)                      # recorder: pack closed blocks into view_blocks

**Blocks** (schema version 6): a row per message is what arrives, but it costs ~1 KB a second even
compressed (each patch alone repeats its keys; the row and its index entry cost ~60 B more). The
recorder therefore packs every closed block of ``BLOCK_S`` (5 min; ``COMPACT_AFTER_S`` behind the newest
message) into one row of ``view_blocks``: the first snapshot of each minute whole, every other snapshot
that is *not* exactly what its predecessor and the patches after it give (after a lost patch or an
aggregator restart; the others are verified equal and dropped, they add nothing), and the patches **by
column** (every leaf path of the block's patches once, then each path's values in order, and each
patch's order of paths),
all one zstd frame (level ``BLOCK_LEVEL``). :func:`encode_block` checks that :func:`decode_block` gives
every kept message back exactly before it is stored (otherwise the patches are stored as they came).
Readers see the union of ``view_blocks`` and the per-message rows (a late message of a packed block
waits in ``view_stream`` until the next compaction re-packs that block), in one REPEATABLE READ
snapshot of the database, so a compaction running meanwhile is never half seen.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from gateway.sections import filter_view
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.view_diff import apply_view_patch

if TYPE_CHECKING:
    import asyncpg
    import zstandard

log = logging.getLogger("opsdash.history.viewstream")

__all__ = ["BLOCKS_SQL", "BLOCK_S", "COMPACT_AFTER_S", "COMPACT_BLOCKS", "INSERT_SQL", "KEEP_SNAPSHOT_S",
           "MAX_PATCHES", "MIGRATION_SQL", "StreamMessage", "StreamRow", "ViewAt", "compact", "compress",
           "decode_block", "decompress", "encode_block", "messages_after", "oldest", "replay", "stream_row",
           "view_at"]

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

#: Schema version 6: the closed blocks of the stream, packed (module docstring). ``ts`` the block's
#: start; ``first_snap`` / ``last_snap`` the first and last snapshot kept whole in it (NULL: none).
BLOCKS_SQL: Final = """
CREATE TABLE view_blocks (
    ts timestamptz NOT NULL,
    first_snap timestamptz,
    last_snap timestamptz,
    messages int NOT NULL,
    raw_len int NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (ts)
) PARTITION BY RANGE (ts);
ALTER TABLE view_blocks ALTER COLUMN body SET STORAGE EXTERNAL;
"""

INSERT_SQL: Final = ("INSERT INTO view_stream (ts, seq, snap, base, raw_len, body) "
                     "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")

#: Most patches read after a snapshot (10 s of early ticks at 10 a second is ~100; an aggregator
#: whose snapshots were lost for a while must not make one request read hours of patches).
MAX_PATCHES: Final = 2000
#: How far back a snapshot is looked for (an aggregator silent longer than this: 404 for that moment).
MAX_LOOKBACK_S: Final = 86400.0
LEVEL: Final = 3
#: A block is five minutes of the stream (aligned to the epoch, like the rollups): the first snapshot
#: of each minute is kept (at most ~60 patches to apply for a moment), the snapshots between are not.
BLOCK_S: Final = 300
#: A snapshot is kept at least this often in a block, derivable or not.
KEEP_SNAPSHOT_S: Final = 60
#: A block is packed once the newest message is this far past its end (late messages of a packed
#: block are packed again with it: nothing is lost, it only costs another compaction).
COMPACT_AFTER_S: Final = 120.0
#: zstd level of a block (one compression every 5 min; level 19 took ~15x the time for ~15 % less).
BLOCK_LEVEL: Final = 9
#: Most blocks packed by one compact() call: the recorder's writer packs between its batches, so this
#: bounds the pause (~0.1-0.7 s a block); a database upgraded with days of rows catches up in steps.
COMPACT_BLOCKS: Final = 2

_enc: Final = msgspec.json.Encoder()
_dec_snapshot: Final = msgspec.json.Decoder(ViewSnapshot)
_dec_patch: Final = msgspec.json.Decoder(ViewPatch)
_dec_any: Final = msgspec.json.Decoder()
_enc_sorted: Final = msgspec.json.Encoder(order="sorted")
_codec: list[tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]] = []
_block_codec: list[zstandard.ZstdCompressor] = []
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


def compress_block(data: bytes) -> bytes:
    _zstd()
    if not _block_codec:
        import zstandard
        _block_codec.append(zstandard.ZstdCompressor(level=BLOCK_LEVEL))
    return _block_codec[0].compress(data)


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


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One recorded message, decoded: a snapshot (``base`` None, ``body`` the view) or a patch
    (``body`` ``{"patch", "append"[, "errors"]}``)."""

    ts: float
    seq: int
    base: int | None
    body: dict[str, Any]

    @property
    def key(self) -> tuple[float, int, int]:
        """The stream's order: time, seq, and at one tick the patch before the snapshot."""
        return (self.ts, self.seq, int(self.base is None))


# -- blocks: 5 minutes of the stream packed in one row (module docstring) -----------------------------

def _flatten(d: dict[str, Any], prefix: tuple[str, ...], out: list[tuple[tuple[str, ...], Any]]) -> None:
    for k, v in d.items():
        if isinstance(v, dict) and v:
            _flatten(v, (*prefix, k), out)
        else:
            out.append(((*prefix, k), v))  # a leaf: a value, a list, null, or an empty object


def _derived(msgs: Sequence[StreamMessage]) -> set[int]:
    """Indexes of the snapshots that are exactly their predecessor plus the patches after it and need
    not be kept (the first snapshot of each ``KEEP_SNAPSHOT_S`` is kept all the same)."""
    out: set[int] = set()
    state: dict[str, Any] | None = None
    seq = -1
    kept_in = -1  # the KEEP_SNAPSHOT_S period of the last snapshot kept
    for i, m in enumerate(msgs):
        if m.base is None:
            period = int(m.ts // KEEP_SNAPSHOT_S)
            if (state is not None and m.seq == seq and period == kept_in
                    and _enc_sorted.encode(state) == _enc_sorted.encode(m.body)):
                out.add(i)
            else:
                state, seq, kept_in = m.body, m.seq, period
        elif state is not None:
            if m.seq <= seq:
                continue
            if m.base != seq:
                state = None  # a lost patch: the next snapshot is kept
                continue
            state = apply_view_patch(state, m.body.get("patch"), m.body.get("append"), m.body.get("errors"))
            seq = m.seq
    return out


def _pack(msgs: Sequence[StreamMessage], drop: set[int], columns: bool) -> dict[str, Any]:
    snaps = [[m.ts, m.seq, m.body] for i, m in enumerate(msgs) if m.base is None and i not in drop]
    patches = [m for m in msgs if m.base is not None]
    out: dict[str, Any] = {"v": 1, "snaps": snaps, "heads": [[m.ts, m.seq, m.base] for m in patches]}
    if not columns:
        out["bodies"] = [m.body for m in patches]
        return out
    paths: dict[tuple[str, ...], int] = {}
    orders: dict[tuple[int, ...], int] = {}
    cols: list[list[Any]] = []
    po: list[int] = []
    for m in patches:
        leaves: list[tuple[tuple[str, ...], Any]] = []
        _flatten(m.body, (), leaves)
        order: list[int] = []
        for path, v in leaves:
            i = paths.setdefault(path, len(paths))
            if i == len(cols):
                cols.append([])
            cols[i].append(v)
            order.append(i)
        po.append(orders.setdefault(tuple(order), len(orders)))
    out.update(paths=[list(p) for p in paths], orders=[list(o) for o in orders], po=po, cols=cols)
    return out


class _Packed(msgspec.Struct, frozen=True):
    """A block's JSON as read back: the column values left as their JSON text (msgspec.Raw), pasted
    into each patch's template and decoded once for all patches."""

    v: int
    snaps: list[tuple[float, int, msgspec.Raw]]
    heads: list[tuple[float, int, int]]
    bodies: list[dict[str, Any]] | None = None
    paths: list[list[str]] = []
    orders: list[list[int]] = []
    po: list[int] = []
    cols: list[list[msgspec.Raw]] = []


_dec_packed: Final = msgspec.json.Decoder(_Packed)


def _template(paths: Iterable[Sequence[str]]) -> list[bytes]:
    """The JSON text of a patch with these leaf ``paths`` (depth first, as _flatten gives them) around
    its leaf values: ``t[0] v0 t[1] v1 ... t[n]``. Paths not depth first would repeat a key: the check
    in encode_block then stores the patches as they came."""
    parts = [b"{"]
    stack: list[str] = []
    filled = [False]
    for path in paths:
        dirs = path[:-1]
        c = 0
        while c < len(stack) and c < len(dirs) and stack[c] == dirs[c]:
            c += 1
        while len(stack) > c:
            stack.pop()
            filled.pop()
            parts[-1] += b"}"
        for k in dirs[c:]:
            parts[-1] += (b"," if filled[-1] else b"") + _enc.encode(k) + b":{"
            filled[-1] = True
            stack.append(k)
            filled.append(False)
        parts[-1] += (b"," if filled[-1] else b"") + _enc.encode(path[-1]) + b":"
        filled[-1] = True
        parts.append(b"")
    parts[-1] += b"}" * (len(stack) + 1)
    return parts


def _unpack(raw: bytes, lo: float = -math.inf, hi: float = math.inf,
            from_snapshot: bool = False) -> list[StreamMessage]:
    """The messages of a packed block (its JSON) in order; only those with ``lo <= ts <= hi`` (the
    others are not even decoded); ``from_snapshot``: from the last snapshot at or before ``hi`` on."""
    d = _dec_packed.decode(raw)
    if d.v != 1:
        raise ValueError(f"view block version {d.v!r} is not known")
    if from_snapshot:
        lo = max([lo, *(ts for ts, _, _ in d.snaps if ts <= hi)])
    out = [StreamMessage(float(ts), int(seq), None, _dec_any.decode(body)) for ts, seq, body in d.snaps
           if lo <= ts <= hi]
    if d.bodies is not None:
        out.extend(StreamMessage(float(ts), int(seq), int(base), body)
                   for (ts, seq, base), body in zip(d.heads, d.bodies, strict=True) if lo <= ts <= hi)
    else:
        if len(d.po) != len(d.heads):
            raise ValueError("view block: patches and heads differ in number")
        templates: dict[int, list[bytes]] = {}
        nxt = [0] * len(d.cols)
        heads: list[tuple[float, int, int]] = []
        pieces: list[Any] = [b"["]
        for (ts, seq, base), o in zip(d.heads, d.po, strict=True):
            order = d.orders[o]
            if not lo <= ts <= hi:
                for i in order:
                    nxt[i] += 1
                continue
            tpl = templates.get(o)
            if tpl is None:
                tpl = templates[o] = _template(d.paths[i] for i in order)
            if heads:
                pieces.append(b",")
            pieces.append(tpl[0])
            for j, i in enumerate(order, 1):
                pieces.append(d.cols[i][nxt[i]])
                pieces.append(tpl[j])
                nxt[i] += 1
            heads.append((ts, seq, base))
        pieces.append(b"]")
        bodies: list[dict[str, Any]] = _dec_any.decode(b"".join(pieces))
        out.extend(StreamMessage(float(ts), int(seq), int(base), body)
                   for (ts, seq, base), body in zip(heads, bodies, strict=True))
    out.sort(key=lambda m: m.key)
    return out


def _canonical(msgs: Iterable[StreamMessage]) -> list[bytes]:
    return [_enc.encode([m.ts, m.seq, m.base, m.body]) for m in msgs]


def encode_block(msgs: Sequence[StreamMessage]) -> tuple[bytes, int, list[StreamMessage]]:
    """One block's body (zstd), its raw length and the messages it keeps (in order), from the messages
    of one block (any order, no duplicates). The columns are used only when they decode back to
    exactly the patches given (compared as JSON, key order included)."""
    msgs = sorted(msgs, key=lambda m: m.key)
    drop = _derived(msgs)
    raw = _enc.encode(_pack(msgs, drop, columns=True))
    kept = _unpack(raw)
    want = [m for i, m in enumerate(msgs) if i not in drop]
    if _canonical(kept) != _canonical(want):
        log.warning("view block: the patches by column did not decode back exactly; stored as they came")
        raw = _enc.encode(_pack(msgs, drop, columns=False))
        kept = want
    return compress_block(raw), len(raw), kept


def decode_block(body: bytes, lo: float = -math.inf, hi: float = math.inf,
                 from_snapshot: bool = False) -> list[StreamMessage]:
    """The messages a block keeps, in the stream's order (those with ``lo <= ts <= hi``;
    ``from_snapshot``: from the last snapshot at or before ``hi``)."""
    return _unpack(decompress(body), lo, hi, from_snapshot)


def _row_message(r: Any) -> StreamMessage:
    return StreamMessage(float(r["ts"].timestamp()), int(r["seq"]), None if r["snap"] else int(r["base"]),
                         _dec_any.decode(decompress(r["body"])))


async def compact(conn: asyncpg.Connection, before: float, limit: int = COMPACT_BLOCKS) -> int:
    """Pack the per-message rows of every block that ends at or before ``before`` (with what the block
    already holds). Each block in its own transaction: the rows are deleted and their block written
    together. Returns the blocks packed (at most ``limit``)."""
    end = datetime.fromtimestamp(before - before % BLOCK_S, UTC)
    starts = await conn.fetch(
        f"SELECT DISTINCT date_bin('{BLOCK_S} seconds', ts, 'epoch') AS m FROM view_stream WHERE ts < $1 "
        "ORDER BY m LIMIT $2", end, limit)
    for r in starts:
        lo: datetime = r["m"]
        hi = lo + timedelta(seconds=BLOCK_S)
        async with conn.transaction():
            rows = await conn.fetch("DELETE FROM view_stream WHERE ts >= $1 AND ts < $2 "
                                    "RETURNING ts, seq, snap, base, body", lo, hi)
            old = await conn.fetchval("SELECT body FROM view_blocks WHERE ts = $1 FOR UPDATE", lo)
            msgs = {m.key: m for m in (decode_block(old) if old is not None else [])}
            for row in rows:
                m = _row_message(row)
                msgs.setdefault(m.key, m)
            body, raw_len, kept = encode_block(list(msgs.values()))
            snaps = [datetime.fromtimestamp(m.ts, UTC) for m in kept if m.base is None]
            await conn.execute(
                "INSERT INTO view_blocks (ts, first_snap, last_snap, messages, raw_len, body) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ts) DO UPDATE SET "
                "first_snap = EXCLUDED.first_snap, last_snap = EXCLUDED.last_snap, "
                "messages = EXCLUDED.messages, raw_len = EXCLUDED.raw_len, body = EXCLUDED.body",
                lo, snaps[0] if snaps else None, snaps[-1] if snaps else None,
                len(kept), raw_len, body)
    return len(starts)


# -- reading: the union of blocks and per-message rows ----------------------------------------------

def _read_only(conn: asyncpg.Connection) -> Any:
    # one snapshot of the database for the whole read: a compaction moves rows into a block at once
    return conn.transaction(isolation="repeatable_read", readonly=True)


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def oldest(conn: asyncpg.Connection) -> float | None:
    """Time of the oldest stored snapshot (nothing can be rebuilt before it); None when none."""
    t = await conn.fetchval(
        "SELECT min(t) FROM (SELECT min(ts) AS t FROM view_stream WHERE snap UNION ALL "
        "(SELECT first_snap FROM view_blocks WHERE first_snap IS NOT NULL ORDER BY ts LIMIT 1)) x")
    return None if t is None else float(t.timestamp())


async def _start(conn: asyncpg.Connection, at: float,
                 cache: dict[datetime, list[StreamMessage]]) -> StreamMessage | None:
    """The latest snapshot kept at or before ``at`` (within MAX_LOOKBACK_S), from a row or a block (the
    block's messages from that snapshot to ``at`` are left in ``cache``)."""
    t, lo = _at(at), _at(at - MAX_LOOKBACK_S)
    best: StreamMessage | None = None
    row = await conn.fetchrow(
        "SELECT ts, seq, snap, base, body FROM view_stream WHERE snap AND ts <= $1 AND ts > $2 "
        "ORDER BY ts DESC, seq DESC LIMIT 1", t, lo)
    if row is not None:
        best = _row_message(row)
    blk = await conn.fetchrow(
        "SELECT ts, body, last_snap FROM view_blocks WHERE ts <= $1 AND ts > $2 AND first_snap <= $1 "
        "AND first_snap > $2 ORDER BY ts DESC LIMIT 1", t, lo - timedelta(seconds=BLOCK_S))
    if blk is not None and (best is None or blk["last_snap"].timestamp() >= best.ts):
        msgs = decode_block(blk["body"], hi=at, from_snapshot=True)
        snaps = [m for m in msgs if m.base is None]
        if snaps and (best is None or snaps[-1].key > best.key):
            best = snaps[-1]
            cache[blk["ts"]] = [m for m in msgs if m.key >= best.key]
    return best


async def _between(conn: asyncpg.Connection, lo: float, hi: float, limit: int,
                   cache: dict[datetime, list[StreamMessage]] | None = None) -> list[StreamMessage]:
    """The messages with ``lo <= ts <= hi`` in order, from blocks and rows; when a source holds more
    than ``limit`` there, only the part both sources are complete for (at least ``limit`` rows' worth).
    ``cache``: blocks already decoded (by their start), their messages in ``[lo, hi]``."""
    a, b = _at(lo), _at(hi)
    out: dict[tuple[float, int, int], StreamMessage] = {}
    bound: tuple[float, int, int] | None = None
    rows = await conn.fetch("SELECT ts, seq, snap, base, body FROM view_stream WHERE ts >= $1 AND ts <= $2 "
                            "ORDER BY ts, seq, snap LIMIT $3", a, b, limit)
    for r in rows:
        m = _row_message(r)
        out[m.key] = m
    if len(rows) == limit:
        bound = max(out)
    nblocks = max(2, limit // BLOCK_S + 1)
    cache = cache or {}
    blocks = await conn.fetch("SELECT ts, CASE WHEN ts = ANY($4::timestamptz[]) THEN NULL ELSE body END "
                              "AS body FROM view_blocks WHERE ts > $1 AND ts <= $2 ORDER BY ts LIMIT $3",
                              a - timedelta(seconds=BLOCK_S), b, nblocks, list(cache))
    for r in blocks:
        known = cache.get(r["ts"])
        for m in decode_block(r["body"], lo, hi) if known is None else known:
            out.setdefault(m.key, m)
    if len(blocks) == nblocks:
        end = (float(blocks[-1]["ts"].timestamp()) + BLOCK_S, -1, 0)  # before the next block's first
        bound = end if bound is None else min(bound, end)
    return [out[k] for k in sorted(out) if bound is None or k <= bound]


async def view_at(conn: asyncpg.Connection, at: float) -> ViewAt | None:
    """The view at the last recorded tick at or before ``at``; None when no snapshot precedes it (within
    a day)."""
    cache: dict[datetime, list[StreamMessage]] = {}
    async with _read_only(conn):
        snap = await _start(conn, at, cache)
        if snap is None:
            return None
        msgs = await _between(conn, snap.ts, at, MAX_PATCHES, cache)
    patches = ((m.ts, m.seq, m.base, m.body) for m in msgs if m.base is not None and m.key > snap.key)
    state, seq, ts, n, gap = replay(snap.body, snap.seq, snap.ts, patches)
    return ViewAt(state, seq, ts, snap.ts, n, gap)


async def messages_after(conn: asyncpg.Connection, ts: float, seq: int, after_snap: bool, until: float,
                         limit: int = 200) -> list[StreamMessage]:
    """The recorded messages after the cursor ``(ts, seq, after_snap)`` up to ``until``, in order (at one
    tick the patch before the snapshot); at least ``limit`` of them when there are that many (whole
    blocks are read). Snapshots found equal to what the patches before them give are not kept in a
    block (module docstring): a replay that follows the patches never needed them."""
    cursor = (ts, seq, int(after_snap))
    async with _read_only(conn):
        msgs = await _between(conn, ts, until, limit + 1)
    return [m for m in msgs if m.key > cursor]
