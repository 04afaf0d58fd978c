"""The gateway's pure core: the view held in memory, and the messages encoded once per section set.

Feed it what the broker delivers, with the time passed in::

    store = ViewStore()
    outcome = store.apply_snapshot(decode_snapshot(payload), now=clock())
    outcome = store.apply_patch(decode_patch(payload), now=clock())
    store.snapshot_message(frozenset({"health"}))   # bytes, encoded once per (seq, sections)
    store.patch_message(None)                       # bytes of the last applied patch, all sections

No sockets, no clock of its own. ``Sections`` is ``None`` for the default stream (every section,
``services`` as per-service summaries) or a frozenset of top-level view keys and ``services/<name>``
(that service's instances); ``meta`` is always included, ``series`` must be listed to get appends.

Rules (docs/view.md):

- a snapshot whose seq is newer than ours, or whose ``ts`` is at least ours (an aggregator that
  restarted and counts from 0 again), replaces the view; one equal to ours is checked and ignored;
- a patch applies only when ``base`` equals our seq; otherwise it is a gap and the store waits for
  the next snapshot (the aggregator publishes one every 10 s);
- after a patch, ``append`` points go onto ``series`` capped at ``meta.series_len`` (default 900),
  and ``errors`` entries go in front of ``errors.errors`` capped at ``meta.errors_len`` (default 50).
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Final

import msgspec

from gateway.errors import ProtocolError
from gateway.sections import filter_view, is_service_section
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.view_diff import DEFAULT_ERRORS_LEN, DEFAULT_SERIES_LEN, apply_view_patch, diff, meta_len

__all__ = ["DEFAULT_SERIES_LEN", "Outcome", "Sections", "ViewStore", "filter_state", "parse_sections"]

Sections = frozenset[str] | None

#: Views kept for coalesced patches (docs/websocket.md "max_rate"): at 10 patches a second, 12 s; a
#: client further behind gets a snapshot. The views share what did not change (copy on write).
COALESCE_LOG: Final = 128

#: Most sections a client may name, and the pattern of one name.
MAX_SECTIONS: Final = 16
_SECTION_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

_encoder: Final = msgspec.json.Encoder()


class Outcome(enum.Enum):
    """What one message from the broker did to the view."""

    SNAPSHOT = "snapshot"  # the view was replaced: clients need a fresh snapshot
    PATCH = "patch"  # a patch applied: clients get the patch message
    SAME = "same"  # a snapshot equal to the view we hold: nothing to send
    GAP = "gap"  # a patch whose base is not our seq: ignored until the next snapshot
    OLD = "old"  # an older snapshot or patch (e.g. the retained one after a reconnect): ignored


def parse_sections(raw: object) -> Sections:
    """Validate a client's ``sections`` value: ``None`` (all) or a list of short lowercase names.

    Raises ProtocolError (a bad_request) with a message that shows the bad value.
    """
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > MAX_SECTIONS:
        raise ProtocolError(f"sections must be a list of at most {MAX_SECTIONS} names, got {raw!r:.100}")
    for name in raw:
        if isinstance(name, str) and is_service_section(name):
            continue  # one service's instances (gateway/sections.py)
        if (not isinstance(name, str) or not 0 < len(name) <= 32
                or not set(name) <= _SECTION_CHARS):
            raise ProtocolError(f"section names are [a-z0-9_]{{1,32}}, got {name!r:.60}")
    return frozenset(raw) | {"meta"}


def _wanted(key: str, sections: Sections) -> bool:
    return sections is None or key in sections


def filter_state(state: dict[str, Any], sections: Sections) -> dict[str, Any]:
    """The top-level sections of ``state`` that ``sections`` asks for (``meta`` always); per-instance
    detail only for the ``services/<name>`` listed (gateway/sections.py)."""
    return filter_view(state, sections)


class ViewStore:
    """The latest view and the encoded messages derived from it, cached per section set.

    >>> store = ViewStore()
    >>> store.apply_snapshot(ViewSnapshot(seq=1, ts=10.0, state={"meta": {"seq": 1}}), now=0.0)
    <Outcome.SNAPSHOT: 'snapshot'>
    >>> store.snapshot_message(None)
    b'{"type":"snapshot","seq":1,"ts":10.0,"state":{"meta":{"seq":1}}}'
    """

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.seq: int | None = None
        #: The aggregator's time of the current view.
        self.ts: float | None = None
        #: Our clock when a snapshot or patch last applied (``None``: never).
        self.received_mono: float | None = None
        self.last_patch: ViewPatch | None = None
        self.counts: dict[str, int] = {o.value: 0 for o in Outcome}
        self._snapshot_cache: dict[Sections, bytes] = {}
        self._patch_cache: dict[Sections, bytes] = {}
        #: (seq, view, the patch that made it) of the recent views, oldest first: what a coalesced
        #: patch is composed from
        self.log: deque[tuple[int, dict[str, Any], ViewPatch | None]] = deque(maxlen=COALESCE_LOG)
        self._coalesced_cache: dict[tuple[Sections, int], bytes | None] = {}

    # -- feeding -------------------------------------------------------------------------------------
    def apply_snapshot(self, snap: ViewSnapshot, now: float) -> Outcome:
        outcome = self._snapshot(snap, now)
        self.counts[outcome.value] += 1
        return outcome

    def _snapshot(self, snap: ViewSnapshot, now: float) -> Outcome:
        if self.state is not None and self.seq is not None and self.ts is not None:
            if snap.seq == self.seq and snap.state == self.state:
                self.received_mono = now
                return Outcome.SAME
            if snap.seq < self.seq and snap.ts < self.ts:
                return Outcome.OLD
        self.state = snap.state
        self.seq = snap.seq
        self.ts = snap.ts
        self.received_mono = now
        self.last_patch = None
        self._snapshot_cache.clear()
        self._patch_cache.clear()
        self.log.clear()
        self.log.append((snap.seq, snap.state, None))
        self._coalesced_cache.clear()
        return Outcome.SNAPSHOT

    def apply_patch(self, patch: ViewPatch, now: float) -> Outcome:
        outcome = self._patch(patch, now)
        self.counts[outcome.value] += 1
        return outcome

    def _patch(self, patch: ViewPatch, now: float) -> Outcome:
        if self.state is None or self.seq is None:
            return Outcome.GAP
        if patch.seq <= self.seq:
            return Outcome.OLD
        if patch.base != self.seq:
            return Outcome.GAP
        # the old state is not ours to change (readers may hold it): apply_view_patch copies
        self.state = apply_view_patch(self.state, patch.patch, patch.append, patch.errors)
        self.seq = patch.seq
        self.ts = patch.ts
        self.received_mono = now
        self.last_patch = patch
        self._snapshot_cache.clear()
        self._patch_cache.clear()
        self.log.append((patch.seq, self.state, patch))
        self._coalesced_cache.clear()
        return Outcome.PATCH

    @staticmethod
    def series_len(state: dict[str, Any]) -> int:
        return meta_len(state, "series_len", DEFAULT_SERIES_LEN)

    @staticmethod
    def errors_len(state: dict[str, Any]) -> int:
        return meta_len(state, "errors_len", DEFAULT_ERRORS_LEN)

    # -- reading -------------------------------------------------------------------------------------
    def age(self, mono_now: float) -> float | None:
        """Seconds since a snapshot or patch last applied; ``None`` before the first.

        ``mono_now`` is the same monotonic clock the ``now`` of apply_* came from (never Unix time).
        """
        return None if self.received_mono is None else max(0.0, mono_now - self.received_mono)

    def snapshot_message(self, sections: Sections) -> bytes:
        """``{"type":"snapshot","seq","ts","state"}`` for ``sections``, encoded once per seq."""
        cached = self._snapshot_cache.get(sections)
        if cached is None:
            if self.state is None:
                raise LookupError("no view yet")
            cached = _encoder.encode({"type": "snapshot", "seq": self.seq, "ts": self.ts,
                                      "state": filter_state(self.state, sections)})
            self._snapshot_cache[sections] = cached
        return cached

    def patch_message(self, sections: Sections) -> bytes:
        """The last applied patch as ``{"type":"patch","seq","base","ts","patch","append"[,"errors"]}``."""
        cached = self._patch_cache.get(sections)
        if cached is None:
            p = self.last_patch
            if p is None:
                raise LookupError("no patch applied since the last snapshot")
            body = filter_view(p.patch, sections)
            append = p.append if _wanted("series", sections) else {}
            message: dict[str, Any] = {"type": "patch", "seq": p.seq, "base": p.base, "ts": p.ts,
                                       "patch": body, "append": append}
            if p.errors and _wanted("errors", sections):
                message["errors"] = p.errors  # new feed entries, newest first (docs/websocket.md)
            cached = _encoder.encode(message)
            self._patch_cache[sections] = cached
        return cached

    def coalesced_message(self, sections: Sections, since: int) -> bytes | None:
        """One patch from the view at seq ``since`` to the current one, for a client that takes at
        most ``max_rate`` patches a second (docs/websocket.md): ``patch`` is the merge patch between
        the two views without their series (so a feed that changed comes as its whole list, the way
        RFC 7396 replaces a list), ``appends`` every series point since, in order
        (``{"name": [[t, v], ...]}``), and ``coalesced`` how many patches it stands for. None when
        ``since`` is no longer held (the client needs a snapshot). Encoded once per (sections, since)."""
        key = (sections, since)
        if key in self._coalesced_cache:
            return self._coalesced_cache[key]
        seqs = [seq for seq, _, _ in self.log]
        if self.state is None or since not in seqs:
            self._coalesced_cache[key] = None
            return None
        at = seqs.index(since)
        old = self.log[at][1]
        later = [p for _, _, p in list(self.log)[at + 1:] if p is not None]
        message: dict[str, Any] = {
            "type": "patch", "seq": self.seq, "base": since, "ts": self.ts,
            "patch": diff(_without_series(filter_state(old, sections)),
                          _without_series(filter_state(self.state, sections))),
            "append": {}, "coalesced": len(later)}
        if _wanted("series", sections):
            appends: dict[str, list[Any]] = {}
            for p in later:
                for name, point in p.append.items():
                    appends.setdefault(name, []).append(point)
            message["appends"] = appends
        data = _encoder.encode(message)
        self._coalesced_cache[key] = data
        return data


def _without_series(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "series"}
