"""Aggregator shards (design.md section 12): each shard folds the services whose name hashes to it,
and the lowest live shard merges the shards' partial views into the one view of the contract.

    k, n = parse_shard("1/2")
    shard_of("ingest", n)                           # the shard that folds ``ingest`` (stable, crc32)
    merger = ShardMerger(k, n, cfg, post)           # post: the sections built on the merged view
    merger.own(out, now)                            # this shard's tick (its partial view)
    merger.on_snapshot(j, snap, now) / on_patch(j, patch, now) / on_status(j, status, now)
    if merger.leader() == k: merged = merger.tick(now, full)   # a TickOutput of the whole view

Every shard publishes its partial view (the fold's view of its own services, plus a ``shard`` section
with what the merge needs and the view does not show) as a snapshot and patches on
``<root>/v1/shard/<k>/{snapshot,patch}``, and its liveness, retained with a Last Will, on
``<root>/v1/shard/<k>/status``. Counters and histograms never need merging across shards: every
service, hence every counter and histogram, is folded by exactly one shard, so a figure is taken whole
from the shard that owns its service (exact, not approximated). What spans services is merged: the
health grid and the overall status, per-service rates, the error feed (by time, with the merger's own
ids), the error counts, ``meta``'s counts. ``graph`` and ``alerts`` are evaluated on the merged view.

A shard that is offline (its Last Will) or never reported keeps its place: its services and, for shard
0, its probes show ``unknown`` with the reason, never silently missing. Pure: time is an argument.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from telemetry_bus.config import SHARD_PATTERN, AggregatorConfig, parse_shard
from telemetry_bus.contract import ViewPatch, ViewSnapshot
from telemetry_bus.fold import TickOutput
from telemetry_bus.health import worst
from telemetry_bus.state import FEED_LEN, iso, rnd
from telemetry_bus.view import SectionContext, ViewBuilder
from telemetry_bus.view_diff import apply_view_patch, canonical, compose, diff

__all__ = ["SHARD_PATTERN", "MergedTick", "ShardMerger", "ShardSection", "ShardStatus", "parse_shard",
           "shard_config", "shard_of", "shard_topics"]

#: the view's throughput figures and the config key naming the counter each is the rate of
_THROUGHPUT: Final = (("ingest_rate_per_sec", "ingest_rate"), ("alert_rate_per_sec", "alert_rate"),
                      ("delivery_rate_per_sec", "delivery_rate"), ("write_rate_per_sec", "write_rate"),
                      ("rules_rate_per_sec", "rules_rate"), ("routed_rate_per_sec", "routed_rate"),
                      ("delivery_failed_rate_per_sec", "delivery_failed_rate"))
#: the view's series and the config key naming the service whose shard makes them
_SERIES: Final = (("ingest_rate", "ingest_rate"), ("alert_rate", "alert_rate"),
                  ("delivery_rate", "delivery_rate"), ("write_p50", "write_latency"),
                  ("write_p95", "write_latency"), ("write_p99", "write_latency"))
_KINDS: Final = ("snapshot", "patch", "status", "second")
_META_SUMS: Final = ("folded", "duplicates", "quarantined")


def shard_config(cfg: AggregatorConfig, k: int, n: int) -> AggregatorConfig:
    """The fold's config on shard k of n: only the expected services it folds; probes on shard 0."""
    if n <= 1:
        return cfg
    own = [s for s in cfg.expected_services if shard_of(s, n) == k]
    return msgspec.structs.replace(cfg, expected_services=own,
                                   expected_probes=cfg.expected_probes if k == 0 else [])


def shard_of(service: str, n: int) -> int:
    """The shard that folds ``service``: crc32 of its name, mod n (the same in every process and
    language; Python's ``hash`` is salted per process)."""
    return zlib.crc32(service.encode()) % n if n > 1 else 0


class shard_topics:
    """The shards' own topics (a namespace, like ``contract.topics``)."""

    @staticmethod
    def base(root: str, k: int | str) -> str:
        return f"{root}/v1/shard/{k}"

    @staticmethod
    def snapshot(root: str, k: int) -> str:
        return f"{root}/v1/shard/{k}/snapshot"

    @staticmethod
    def patch(root: str, k: int) -> str:
        return f"{root}/v1/shard/{k}/patch"

    @staticmethod
    def status(root: str, k: int) -> str:
        return f"{root}/v1/shard/{k}/status"

    @staticmethod
    def parse(root: str, topic: str) -> tuple[int, str] | None:
        """``(k, kind)`` of a shard topic, None for anything else."""
        prefix = f"{root}/v1/shard/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix):].split("/")
        if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in _KINDS:
            return None
        return int(parts[0]), parts[1]


class ShardStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``<root>/v1/shard/<k>/status`` (retained): online at connect; the Last Will says offline/lost."""

    state: Literal["online", "offline"]
    shard: str
    aggregator: str
    ts: float = 0.0
    reason: str | None = None


class ShardSection:
    """The ``shard`` section of a partial view: what the merge needs that the view does not show
    (dependencies declared by instances, for ``graph``; errors of the last minute, for ``alerts``)."""

    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n

    def __call__(self, ctx: SectionContext) -> dict[str, Any]:
        s = ctx.state
        depends: dict[str, list[str]] = {}
        for svc in s.services.values():
            declared = {d for i in svc.instances.values() for d in i.depends_on}
            if declared:
                depends[svc.name] = sorted(declared)
        return {"k": self.k, "n": self.n, "depends_on": depends,
                "errors_1m": {c: s.category_count(c, ctx.now, 60) for c in s.category_rings}}


@dataclass(slots=True)
class _Part:
    """What the merger knows of one shard."""

    k: int
    view: dict[str, Any] | None = None
    seq: int | None = None
    status: ShardStatus | None = None
    status_at: float | None = None
    #: feed ids of this shard already merged: (its fold's start, the highest id taken)
    feed_seen: tuple[float, int] = (0.0, 0)
    #: (the view, the reason) the dead-marked copy below was made from, and the copy
    dead_key: tuple[int, str] | None = None
    dead: dict[str, Any] | None = None
    #: the ``services`` part of this shard's patches since the previous merged tick, composed; None
    #: when its view was replaced (a snapshot, a gap): then the merged tick diffs ``services``
    services_patch: dict[str, Any] | None = None
    #: whether this part was live at the previous merged tick
    was_live: bool = False

    @property
    def online(self) -> bool:
        return self.status is not None and self.status.state == "online"


class _MergedInstance:
    __slots__ = ("depends_on",)

    def __init__(self, depends_on: Iterable[str]) -> None:
        self.depends_on = tuple(depends_on)


class _MergedService:
    __slots__ = ("instances", "name")

    def __init__(self, name: str, depends_on: Iterable[str]) -> None:
        self.name = name
        self.instances = {"*": _MergedInstance(depends_on)}


@dataclass(slots=True)
class MergedState:
    """What ``graph`` and ``alerts`` read of the state (``services[*].instances[*].depends_on``,
    ``series``, ``category_count``), made from the partial views: they run on the merged view."""

    services: dict[str, _MergedService]
    series: dict[str, list[Any]]
    errors_1m: dict[str, int]

    def category_count(self, category: str, now: float, seconds: int = 3600) -> int:
        return self.errors_1m.get(category, 0)


@dataclass(slots=True)
class MergedTick(TickOutput):
    """A tick of the merged view: what a fold's tick gives, and whether a snapshot must follow."""

    #: the patch cannot carry this tick's change (a series got more than one point): send a snapshot
    resync: bool = False


class ShardMerger:
    """The partial views of all shards (mirrored from the bus; this shard's own from its fold) and the
    merged view made from them. See the module docstring."""

    def __init__(self, k: int, n: int, cfg: AggregatorConfig, post: ViewBuilder | None = None) -> None:
        self.k, self.n, self.cfg = k, n, cfg
        self.post = post if post is not None else ViewBuilder()
        self.parts = [_Part(j) for j in range(n)]
        self.seq = 0
        self._prev: dict[str, Any] = {}
        self._feed: deque[dict[str, Any]] = deque(maxlen=FEED_LEN)
        self._feed_id = 0
        self._last_point: dict[str, float] = {}
        self._owner = {key: shard_of(str(getattr(cfg, attr)).split(".")[0], n) for key, attr in
                       (*_THROUGHPUT, *_SERIES)}
        #: the view lost a patch of a shard (a gap): its part waits for that shard's next snapshot
        self.gaps = 0
        self._notes: list[dict[str, Any]] = []
        #: merged ticks whose ``services`` patch was composed from the shards' patches (no diff of
        #: every changed instance a second time), and those that diffed it
        self.composed = 0
        self.diffed = 0

    # -- feeding ---------------------------------------------------------------------------------

    def own(self, view: dict[str, Any], seq: int, status: ShardStatus, now: float,
            patch: dict[str, Any] | None = None) -> None:
        """This shard's own partial view (``TickOutput.view`` of its fold) and its ``patch`` from the
        previous one (None: not known, the merged tick diffs)."""
        p = self.parts[self.k]
        self._take_patch(p, seq, patch)
        p.view, p.seq, p.status, p.status_at = view, seq, status, now

    @staticmethod
    def _take_patch(p: _Part, seq: int, patch: dict[str, Any] | None) -> None:
        if patch is None or p.seq is None or seq != p.seq + 1:
            p.services_patch = None
        elif p.services_patch is not None:
            part = patch.get("services")
            if part is not None:
                p.services_patch = compose(p.services_patch, part)

    def on_status(self, k: int, status: ShardStatus, now: float) -> None:
        if 0 <= k < self.n and k != self.k:
            p = self.parts[k]
            if p.status is None or p.status.state != status.state:
                self._note(k, status, now)
            p.status, p.status_at = status, now

    def on_snapshot(self, k: int, snap: ViewSnapshot, now: float) -> None:
        if 0 <= k < self.n and k != self.k:
            p = self.parts[k]
            if p.view is not None and p.seq == snap.seq:
                return  # the periodic snapshot of the view we hold (it follows that tick's patch)
            p.view, p.seq = snap.state, snap.seq
            p.services_patch = None

    def on_patch(self, k: int, patch: ViewPatch, now: float) -> bool:
        """Apply one patch of shard ``k``; False on a gap (the part then waits for a snapshot)."""
        if not 0 <= k < self.n or k == self.k:
            return False
        p = self.parts[k]
        if p.view is None or p.seq is None or patch.seq <= p.seq:
            return False
        if patch.base != p.seq:
            self.gaps += 1
            p.seq = None  # stale: only a snapshot brings it back
            p.services_patch = None
            return False
        self._take_patch(p, patch.seq, patch.patch)
        p.view = apply_view_patch(p.view, patch.patch, patch.append, patch.errors)
        p.seq = patch.seq
        return True

    def leader(self) -> int:
        """The lowest shard that is online (this one always is, to itself)."""
        for p in self.parts:
            if p.k == self.k or p.online:
                return p.k
        return self.k

    # -- merging ---------------------------------------------------------------------------------

    def _why(self, p: _Part, now: float) -> str | None:
        """Why shard ``p``'s part is not live (None: it is)."""
        label = f"aggregator shard {p.k}/{self.n}"
        if p.k == self.k:
            return None
        st = p.status
        if st is None:
            return f"{label} has not reported yet"
        who = f"{label} ({st.aggregator})"
        if st.state == "offline":
            return f"{who} is offline: {st.reason or 'lost'}"
        if p.view is None:
            return f"{who} has not sent its view yet"
        return None

    def _dead(self, p: _Part, why: str) -> dict[str, Any]:
        """Shard ``p``'s last view with every status it holds unknown, for ``why``; the same object
        while neither changes (the merged diff then skips it)."""
        assert p.view is not None
        key = (id(p.view), why)
        if p.dead_key == key and p.dead is not None:
            return p.dead
        since = rnd(p.status.ts if p.status is not None and p.status.ts else p.status_at)

        def mark(c: Any) -> Any:
            if not isinstance(c, dict):
                return c
            out = dict(c)
            out.update(status="unknown", reason=why)
            if "since" in out:
                out["since"] = since
            return out

        v = p.view
        dead = dict(v)
        health = dict(v.get("health") or {})
        health["components"] = {name: mark(c) for name, c in (health.get("components") or {}).items()}
        dead["health"] = health
        services = {}
        for name, s in (v.get("services") or {}).items():
            s2 = mark(s)
            insts = s.get("instances") or {}
            s2["instances"] = {i: mark(d) for i, d in insts.items()}
            s2["instances_by_status"] = {"unknown": len(insts)} if insts else {}
            services[name] = s2
        dead["services"] = services
        dead["probes"] = {t: mark(d) for t, d in (v.get("probes") or {}).items()}
        cap = v.get("capacity")
        if isinstance(cap, dict):
            dead["capacity"] = {s: mark(d) for s, d in cap.items()}
        if isinstance(v.get("aggregates"), dict):
            dead["aggregates"] = mark(v["aggregates"])
        p.dead_key, p.dead = key, dead
        return dead

    def _missing(self, j: int, why: str) -> dict[str, Any]:
        """The part of a shard never heard of: the expected services and probes it would fold."""
        comps: dict[str, Any] = {}
        services: dict[str, Any] = {}
        if j == 0:
            for t in self.cfg.expected_probes:
                comps[t] = {"kind": "probe", "status": "unknown", "reason": why}
        for name in self.cfg.expected_services:
            if shard_of(name, self.n) == j:
                comps[name] = {"kind": "service", "status": "unknown", "reason": why,
                               "instances_healthy": 0, "instances_total": 0}
                services[name] = {"status": "unknown", "reason": why, "expected": True, "instances_total": 0,
                                  "instances_by_status": {}, "versions": {}, "restarts": 0,
                                  "missing_intervals": 0, "log_records_dropped": 0, "instances": {}}
        return {"health": {"components": comps}, "services": services}

    def tick(self, now: float, full: bool = True) -> MergedTick:
        """The merged view now, and its patch from the previous merged tick."""
        own = self.parts[self.k].view
        assert own is not None, "own() before tick()"
        views: list[dict[str, Any]] = []
        live: list[bool] = []
        whys: list[str | None] = []
        for p in self.parts:
            why = self._why(p, now)
            whys.append(why)
            if why is None and p.view is not None:
                views.append(p.view)
                live.append(True)
            elif p.view is not None:
                views.append(self._dead(p, why or "stale"))
                live.append(False)
            else:
                views.append(self._missing(p.k, why or "no view"))
                live.append(False)
        self.seq += 1
        merged: dict[str, Any] = {}
        # meta: this shard's, with the sums of all and a line per shard
        meta = dict(own["meta"])
        meta["seq"], meta["generated_at"] = self.seq, rnd(now)
        for key in _META_SUMS:
            meta[key] = sum(int((v.get("meta") or {}).get(key) or 0) for v in views)
        reasons: dict[str, int] = {}
        received = missing = 0
        for v in views:
            m = v.get("meta") or {}
            for r, c in (m.get("quarantine_reasons") or {}).items():
                reasons[r] = reasons.get(r, 0) + int(c)
            comp = m.get("completeness") or {}
            received += int(comp.get("received_intervals") or 0)
            missing += int(comp.get("missing_intervals") or 0)
        meta["quarantine_reasons"] = reasons
        ratio = rnd(received / (received + missing), 6) if received + missing else None
        meta["completeness"] = {"ratio": ratio, "received_intervals": received, "missing_intervals": missing}
        meta["shards"] = {
            str(p.k): {"shard": f"{p.k}/{self.n}", "aggregator": p.status.aggregator if p.status else None,
                       "status": "online" if whys[p.k] is None else "offline" if p.status else "unknown",
                       "reason": whys[p.k], "seq": p.seq,
                       "generated_at": (p.view.get("meta") or {}).get("generated_at") if p.view else None}
            for p in self.parts}
        merged["meta"] = meta
        # health: the union of the grids; the overall status is the worst of all
        comps: dict[str, Any] = {}
        for v in views:
            comps.update((v.get("health") or {}).get("components") or {})
        merged["health"] = {"status": worst([c.get("status", "unknown") for c in comps.values()]),
                            "components": comps, "checked_at": iso(now)}
        # metrics: each figure from the shard that owns its service; per-service rates: the union
        om = own.get("metrics") or {}
        throughput: dict[str, Any] = {}
        for key, _attr in _THROUGHPUT:
            j = self._owner[key]
            throughput[key] = ((views[j].get("metrics") or {}).get("throughput") or {}).get(key) \
                if live[j] else None
        lat_j = self._owner["write_p50"]
        latency = ((views[lat_j].get("metrics") or {}).get("latency") or {}) if live[lat_j] else {}
        rates: dict[str, Any] = {}
        for v, ok in zip(views, live, strict=True):
            if ok:
                rates.update((v.get("metrics") or {}).get("rates") or {})
        merged["metrics"] = {**om, "throughput": throughput, "latency": latency, "rates": rates}
        # capacity, aggregates, probes: shard 0's (the probes are folded there)
        for section in ("capacity", "aggregates"):
            if section in views[0]:
                merged[section] = views[0][section]
        # errors: the feed merged by time (this merger's ids), counts summed
        new_errors = self._merge_feed(now)
        counts: dict[str, int] = {}
        for v in views:
            for c, x in ((v.get("errors") or {}).get("counts") or {}).items():
                counts[c] = counts.get(c, 0) + int(x)
        merged["errors"] = {"errors": list(self._feed), "counts": counts}
        services: dict[str, Any] = {}
        for v in views:
            services.update(v.get("services") or {})
        merged["services"] = services
        merged["probes"] = views[0].get("probes") or {}
        # graph and alerts (and any other post section) on the merged view
        depends: dict[str, list[str]] = {}
        errors_1m: dict[str, int] = {}
        for v in views:
            sh = v.get("shard") or {}
            depends.update(sh.get("depends_on") or {})
            for c, x in (sh.get("errors_1m") or {}).items():
                errors_1m[c] = errors_1m.get(c, 0) + int(x)
        series = {name: list((views[self._owner[name]].get("series") or {}).get(name) or [])
                  for name, _ in _SERIES}
        state = MergedState({name: _MergedService(name, depends.get(name, ())) for name in services},
                            series, errors_1m)
        ctx = SectionContext(state, self.cfg, now, full, merged)  # type: ignore[arg-type]
        for name, builder in self.post.sections:
            merged[name] = builder(ctx)
        body = canonical(_ordered(merged, [n for n, _ in self.post.sections]))
        diffed = dict(body)
        diffed["errors"] = {k: v for k, v in body["errors"].items() if k != "errors"}
        # The services of live shards are disjoint, so the merged ``services`` changed exactly as the
        # shards' own patches say: compose them instead of diffing every changed instance again.
        fast = "services" in self._prev and all(ok and p.was_live and p.services_patch is not None
                                                for p, ok in zip(self.parts, live, strict=True))
        if fast:
            rest = {k: v for k, v in diffed.items() if k != "services"}
            patch = diff({k: v for k, v in self._prev.items() if k != "services"}, rest)
            services_patch: dict[str, Any] = {}
            for p in self.parts:
                services_patch.update(p.services_patch or {})
            if services_patch:
                patch["services"] = services_patch
            self.composed += 1
        else:
            patch = diff(self._prev, diffed)
            self.diffed += 1
        for p, ok in zip(self.parts, live, strict=True):
            p.was_live = ok
            p.services_patch = {}
        self._prev = diffed
        append, resync = self._append(series)
        whole = dict(body)
        whole["series"] = series
        return MergedTick(self.seq, now, whole, patch, append, self.seq - 1, new_errors, resync)

    def _append(self, series: dict[str, list[Any]]) -> tuple[dict[str, list[float | None]], bool]:
        """The series points since the previous merged tick (one per series, or a resync)."""
        out: dict[str, list[float | None]] = {}
        resync = False
        for name, points in series.items():
            if not points:
                continue
            last = self._last_point.get(name)
            newer = [p for p in points[-3:] if p[0] is not None and (last is None or p[0] > last)]
            if last is None and self.seq > 1:
                resync = True
            if len(newer) > 1:
                resync = True
            if newer:
                out[name] = list(newer[-1])
            self._last_point[name] = float(points[-1][0])
        return out, resync

    def _merge_feed(self, now: float) -> list[dict[str, Any]]:
        """Take the feed entries of every shard not merged yet, in time order, with this merger's ids;
        returns them newest first (as a patch carries them)."""
        fresh, self._notes = self._notes, []
        for p in self.parts:
            if p.view is None:
                continue
            started = float((p.view.get("meta") or {}).get("started_at") or 0.0)
            seen_start, seen = p.feed_seen
            if started != seen_start:
                seen = 0  # the shard restarted: its ids begin again
            top = seen
            for e in (p.view.get("errors") or {}).get("errors") or []:
                i = int(e.get("id") or 0)
                if i > seen:
                    fresh.append(e)
                    top = max(top, i)
            p.feed_seen = (started, top)
        fresh.sort(key=lambda e: float(e.get("ts") or 0.0))
        out: list[dict[str, Any]] = []
        for e in fresh:
            self._feed_id += 1
            entry = dict(e)
            entry["id"] = self._feed_id
            self._feed.appendleft(entry)
            out.append(entry)
        out.reverse()
        return out

    def _note(self, k: int, status: ShardStatus, now: float) -> None:
        """A shard went offline or came back: an entry for the merged feed (with the next tick)."""
        who = f"aggregator shard {k}/{self.n} ({status.aggregator})"
        offline = status.state == "offline"
        self._notes.append({
            "timestamp": iso(now), "ts": rnd(now), "service": "aggregator", "instance": status.aggregator,
            "type": "state_change", "severity": "error" if offline else "info",
            "message": f"{who} offline: {status.reason or 'lost'}" if offline else f"{who} online"})


def _ordered(view: dict[str, Any], post: list[str]) -> dict[str, Any]:
    """The sections in the unsharded view's order (``graph`` after ``health``, the rest at the end)."""
    order = ["meta", "health", "graph", "metrics", "capacity", "aggregates", "errors", "services", "probes"]
    out = {k: view[k] for k in order if k in view}
    for k in post:
        if k not in out and k in view:
            out[k] = view[k]
    for k, v in view.items():
        if k not in out:
            out[k] = v
    return out

