"""The pure alert rule engine (design.md section 9): rules over the view, lifecycle, payloads.

    engine = Engine(compile_rules(config.alerts))
    engine.restore(payload, now)              # retained <root>/v1/alerts/<fp> messages at start
    ev = engine.evaluate(view, now, inputs)   # every regular aggregator tick
    ev.section                                # the view's ``alerts`` section
    ev.changes                                # what to publish on <root>/v1/alerts/<fp>

No sockets, no clock: ``now`` is an argument everywhere.

Metrics a rule may name (``metric``):

- a dotted path into the view, ``*`` matching any key: ``capacity.disk.used_pct``,
  ``health.components.*.status``, ``services.ingest.instances.*.gauges.queue_depth``;
- a history series name: ``ingest_rate``, ``write_p99`` (the view's series), ``rate:<svc>:<counter>``,
  ``gauge:<svc>:<gauge>`` (summed over the instances), ``capacity:<path>``; ``*`` in place of ``<svc>``;
- derived figures: ``capacity.postgres.connections_used_pct``, ``disk_full_in_s`` (the forecast),
  ``errors_spike:*`` (a category's last minute against its usual rate), ``view_age_s`` (the notifier's).

Labels: ``alertname``, ``severity``, ``component`` for anything under ``health.components.<c>``,
``capacity.<c>`` or ``graph.nodes.<c>``, ``service``/``instance`` under ``services.<s>.instances.<i>``
and for ``rate:``/``gauge:`` series, ``category`` for the spike rule. The fingerprint hashes the labels.

Lifecycle: a true condition makes an alert ``pending``; held for ``for_s`` it is ``firing``; a firing
alert whose condition stays false for ``keep_firing_s`` is ``resolved`` (a pending one is dropped at
once). So a flapping condition fires once, not at every flap.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
import statistics
import string
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeGuard

if TYPE_CHECKING:
    from alerts.config import AlertsConfig

__all__ = [
    "BUILTINS",
    "AlertChange",
    "Engine",
    "Evaluation",
    "Rule",
    "RuleError",
    "Silence",
    "compile_rules",
    "fingerprint",
    "forecast_full",
    "human_duration",
]

NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
SEVERITIES: Final = ("warning", "critical")
_SEV_RANK: Final = {"critical": 0, "warning": 1}
VIEW_SECTIONS: Final = frozenset({"health", "metrics", "capacity", "aggregates", "errors", "services",
                                  "probes", "graph", "meta", "series"})
DERIVED: Final = frozenset({"disk_full_in_s", "view_age_s"})
#: A firing alert's value/summary alone is republished at most this often (they move every tick).
REPUBLISH_VALUE_S: Final = 15.0
RECENT_S: Final = 24 * 3600.0
#: Disk samples for the forecast: one a minute over six hours, fit on at most FIT_POINTS of them.
DISK_SAMPLE_S: Final = 60.0
DISK_WINDOW_S: Final = 6 * 3600.0
FIT_POINTS: Final = 90
FORECAST_MIN_SPAN_S: Final = 1800.0
FORECAST_MIN_POINTS: Final = 10
#: The spike rule needs this much of an hour observed before "usual" means anything.
SPIKE_MIN_BASELINE_MIN: Final = 10.0
#: "usual" never counts below this many errors a minute (a quiet hour does not make 3 errors a spike).
SPIKE_USUAL_FLOOR: Final = 2.0
ERROR_CATEGORIES: Final = ("ingest_failures", "delivery_failures", "auth_failures", "rate_limited",
                           "quarantined")

Status = Literal["pending", "firing"]
_NUM: Final = (int, float)
_MISSING: Final = object()
#: Entries of the fingerprint and label caches before they start over.
FP_CACHE_MAX: Final = 200_000


def _compare(nums: list[tuple[Any, float]], op: str, th: float) -> list[Any]:
    """The matches whose value satisfies ``value <op> th`` (one comprehension per op: no call per item)."""
    match op:
        case ">":
            return [m for m, v in nums if v > th]
        case ">=":
            return [m for m, v in nums if v >= th]
        case "<":
            return [m for m, v in nums if v < th]
        case "<=":
            return [m for m, v in nums if v <= th]
        case "==":
            return [m for m, v in nums if v == th]
        case _:
            return [m for m, v in nums if v != th]


class RuleError(ValueError):
    """A rule that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric: str
    op: str
    value: float | str
    for_s: float = 0.0
    keep_firing_s: float = 30.0
    severity: str = "warning"
    summary: str = ""
    enabled: bool = True


def _b(name: str, metric: str, op: str, value: float | str, for_s: float, severity: str, summary: str,
       keep_firing_s: float | None = None) -> Rule:
    return Rule(name, metric, op, value, for_s, -1.0 if keep_firing_s is None else keep_firing_s,
                severity, summary)


#: The built-in rules of design.md section 9 (keep_firing_s -1 = the [alerts] default).
BUILTINS: Final[dict[str, Rule]] = {r.name: r for r in (
    _b("component_down", "health.components.*.status", "==", "down", 30, "critical",
       "{component} is down{reason_suffix}"),
    _b("component_degraded", "health.components.*.status", "==", "degraded", 120, "warning",
       "{component} is degraded{reason_suffix}"),
    _b("disk_usage_high", "capacity.disk.used_pct", ">", 80, 60, "warning",
       "disk {value} % used (threshold {threshold} %)"),
    _b("pg_connections_high", "capacity.postgres.connections_used_pct", ">", 90, 60, "warning",
       "PostgreSQL connections at {value} % of max ({connections_used} of {connections_max})"),
    _b("error_rate_spike", "errors_spike:*", ">=", 5, 0, "warning",
       "{category}: {count} errors in the last minute, usually {usual}/min"),
    _b("disk_full_forecast", "disk_full_in_s", "<=", 86400, 0, "warning",
       "disk full in {eta} (now {level} %, {slope} %/h over the last {span})", keep_firing_s=600),
    _b("view_stale", "view_age_s", ">", 10, 0, "critical",
       "no view from the aggregator for {value} s"),
)}


def _check(name: str, field_name: str, ok: bool, why: str) -> None:
    if not ok:
        raise RuleError(f"alerts.rules: rule {name!r}: {field_name}: {why}")


def check_metric(metric: str) -> str | None:
    """Why ``metric`` is not a metric a rule can name, or None."""
    if not metric:
        return "is empty"
    if metric in DERIVED or metric == "errors_spike:*" or re.fullmatch(r"errors_spike:[a-z_]+", metric):
        return None
    if ":" in metric:
        kind, _, rest = metric.partition(":")
        if kind in ("rate", "gauge"):
            parts = rest.split(":")
            if len(parts) == 2 and all(parts):
                return None
            return f"{metric!r}: expected {kind}:<service>:<name>"
        if kind == "capacity" and rest:
            return None
        return f"{metric!r}: unknown series kind {kind!r} (rate:, gauge:, capacity:, errors_spike:)"
    parts = metric.split(".")
    if parts[0] in VIEW_SECTIONS:
        if any(not p for p in parts) or len(parts) < 2:
            return f"{metric!r}: empty path segment"
        return None
    if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", metric):
        return None  # a series of the view (ingest_rate, write_p99, ...)
    return (f"{metric!r} is neither a view path (one of {', '.join(sorted(VIEW_SECTIONS))}...) nor a "
            "series name")


def compile_rules(cfg: AlertsConfig) -> dict[str, Rule]:
    """The effective rule set: built-ins, replaced/adjusted/switched off by ``[[alerts.rules]]``.

    Raise RuleError naming the rule and the field on anything unusable."""
    rules: dict[str, Rule] = {}
    for name, b in BUILTINS.items():
        keep0 = cfg.keep_firing_s if b.keep_firing_s < 0 else b.keep_firing_s
        rules[name] = Rule(b.name, b.metric, b.op, b.value, b.for_s, keep0, b.severity, b.summary)
    seen: set[str] = set()
    for i, rc in enumerate(cfg.rules):
        name = rc.name
        label = name or f"#{i + 1}"
        _check(label, "name", bool(NAME_RE.match(name)), f"must be a slug matching {NAME_RE.pattern}")
        _check(name, "name", name not in seen, "defined twice")
        seen.add(name)
        base = rules.get(name)
        if base is None:
            for f in ("metric", "op", "value"):
                _check(name, f, getattr(rc, f) is not None, "is required (not a built-in rule's name)")
        metric = rc.metric if rc.metric is not None else base.metric  # type: ignore[union-attr]
        op = rc.op if rc.op is not None else base.op  # type: ignore[union-attr]
        value = rc.value if rc.value is not None else base.value  # type: ignore[union-attr]
        why = check_metric(metric)
        _check(name, "metric", why is None, why or "")
        _check(name, "op", op in OPS, f"must be one of {' '.join(OPS)}, got {op!r}")
        if isinstance(value, str):
            _check(name, "value", op in ("==", "!="), f"a string value needs == or !=, got {op!r}")
        else:
            _check(name, "value", math.isfinite(value), f"must be finite, got {value!r}")
        for_s = rc.for_s if rc.for_s is not None else (base.for_s if base else 0.0)
        _check(name, "for_s", math.isfinite(for_s) and for_s >= 0, f"must be >= 0 seconds, got {for_s!r}")
        keep = (rc.keep_firing_s if rc.keep_firing_s is not None
                else base.keep_firing_s if base else cfg.keep_firing_s)
        _check(name, "keep_firing_s", math.isfinite(keep) and keep >= 0,
               f"must be >= 0 seconds, got {keep!r}")
        severity = rc.severity if rc.severity is not None else (base.severity if base else "warning")
        _check(name, "severity", severity in SEVERITIES, f"must be warning or critical, got {severity!r}")
        default_summary = f"{name}: {metric} {op} {value!r} (now {{value}})"
        summary = rc.summary if rc.summary is not None else (
            base.summary if base and rc.metric is None else default_summary)
        _check(name, "summary", len(summary) <= 500, "longer than 500 characters")
        rules[name] = Rule(name, metric, op, value, float(for_s), float(keep), severity, summary, rc.enabled)
    return {n: r for n, r in rules.items() if r.enabled}


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit hash of the labels (the shape of Alertmanager's fingerprints)."""
    text = "\x00".join(f"{k}\x01{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def human_duration(seconds: float) -> str:
    """``9 h 40 min``, ``3 d 2 h``, ``12 min``, ``40 s``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "?"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# -- the forecast --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forecast:
    eta_s: float  # seconds from now until 100 %
    level: float  # fitted level now, %
    slope_per_h: float  # % per hour
    span_s: float  # time covered by the samples


def forecast_full(samples: Iterable[tuple[float, float]], now: float, full: float = 100.0) -> Forecast | None:
    """Theil–Sen trend of (t, used %) samples: when does it reach ``full``? None when it does not rise.

    Theil–Sen (median of pairwise slopes) ignores up to ~29 % outliers, so one spike in the samples
    (a temporary file) does not move the prediction; at most FIT_POINTS evenly spaced samples keep the
    pairwise work ~4,000 slopes."""
    pts = [(t, v) for t, v in samples if math.isfinite(t) and math.isfinite(v) and t <= now]
    if len(pts) < FORECAST_MIN_POINTS or pts[-1][0] - pts[0][0] < FORECAST_MIN_SPAN_S:
        return None
    if len(pts) > FIT_POINTS:
        step = (len(pts) - 1) / (FIT_POINTS - 1)
        pts = [pts[round(i * step)] for i in range(FIT_POINTS)]
    slopes = [(pts[j][1] - pts[i][1]) / (pts[j][0] - pts[i][0])
              for i in range(len(pts)) for j in range(i + 1, len(pts)) if pts[j][0] > pts[i][0]]
    if not slopes:
        return None
    slope = statistics.median(slopes)
    level = statistics.median(v - slope * (t - now) for t, v in pts)  # fitted value at `now`
    span = pts[-1][0] - pts[0][0]
    # "Rising" must beat the noise: a slope whose total rise over the window is below 0.5 % is flat.
    if slope <= 0 or slope * span < 0.5:
        return None
    eta = max(0.0, (full - level) / slope)
    return Forecast(eta_s=eta, level=level, slope_per_h=slope * 3600, span_s=span)


# -- matches ---------------------------------------------------------------------------------------


class Match(NamedTuple):
    """One subject a metric resolved to: its value, a key naming it (for the caches), the dict that
    holds the value (summary fields such as ``reason``), and its labels (None: derived from the key)."""

    value: Any
    key: tuple[str, ...]
    context: Mapping[str, Any]
    labels: dict[str, str] | None = None


def _label_for(path: list[str]) -> dict[str, str]:
    """Labels a concrete view path carries (component / service / instance)."""
    n = len(path)
    if n >= 3 and path[0] == "health" and path[1] == "components":
        return {"component": path[2]}
    if n >= 3 and path[0] == "graph" and path[1] == "nodes":
        return {"component": path[2]}
    if n >= 2 and path[0] == "capacity":
        return {"component": path[1]}
    if n >= 2 and path[0] == "services":
        out = {"service": path[1]}
        if n >= 4 and path[2] == "instances":
            out["instance"] = path[3]
        return out
    if n >= 3 and path[0] == "metrics" and path[1] == "rates":
        return {"service": path[2]}
    if n >= 2 and path[0] == "probes":
        return {"component": path[1]}
    return {}


def _walk(view: Any, parts: list[str]) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(keys matched by the ``*`` segments, leaf, the dict holding it) for a path with ``*`` segments.

    Level by level, without recursion; only the wildcard keys are collected (the rest of the path is
    known), so a walk over 2,000 instances is a few thousand dict lookups."""
    level: list[tuple[tuple[str, ...], Any, Any]] = [((), view, None)]
    for key in parts:
        nxt: list[tuple[tuple[str, ...], Any, Any]] = []
        if key == "*":
            for wk, node, _ in level:
                if isinstance(node, dict):
                    nxt += [((*wk, k), child, node) for k, child in node.items()]
        else:
            for wk, node, _ in level:
                if isinstance(node, dict):
                    child = node.get(key, _MISSING)
                    if child is not _MISSING:
                        nxt.append((wk, child, node))
        level = nxt
    return level


def _is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- state -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    def matches(self, labels: Mapping[str, str], now: float) -> bool:
        return (self.starts_at <= now < self.ends_at
                and all(labels.get(k) == v for k, v in self.matchers.items()))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": dict(self.matchers), "starts_at": self.starts_at,
                "ends_at": self.ends_at, "comment": self.comment, "created_by": self.created_by}


@dataclass(slots=True)
class Ack:
    by: str
    at: float
    starts_at: float


@dataclass(slots=True)
class AlertState:
    fingerprint: str
    rule: str
    labels: dict[str, str]
    status: Status
    active_at: float
    last_true: float
    value: Any
    summary: str
    fired_at: float | None = None
    inhibited_by: list[str] | None = None
    silenced_until: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    published_key: tuple[Any, ...] | None = None
    published_at: float = -math.inf
    summary_at: float = -math.inf

    def payload(self, ends_at: float | None = None, status: str | None = None) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint, "status": status or self.status, "labels": dict(self.labels),
            "annotations": {"summary": self.summary}, "value": self.value,
            "starts_at": self.active_at, "ends_at": ends_at, "acked_by": self.acked_by,
            "silenced_until": self.silenced_until, "inhibited_by": self.inhibited_by,
            "fired_at": self.fired_at, "acked_at": self.acked_at,
        }

    def key(self) -> tuple[Any, ...]:
        """What a republish is due for at once (value and summary are throttled)."""
        return (self.status, self.acked_by, self.silenced_until, tuple(self.inhibited_by or ()))


@dataclass(frozen=True, slots=True)
class AlertChange:
    """Something to put on the bus. ``update``: retain the payload; ``resolved``: publish the resolved
    payload, then clear the retained one; ``clear``: clear the retained one (a pending alert dropped)."""

    kind: Literal["update", "resolved", "clear"]
    fingerprint: str
    payload: dict[str, Any] | None


@dataclass(slots=True)
class Evaluation:
    section: dict[str, Any]
    changes: list[AlertChange] = field(default_factory=list)
    #: acks (by fingerprint) and silences (by id) that ended: their retained messages are cleared
    cleared_acks: list[str] = field(default_factory=list)
    cleared_silences: list[str] = field(default_factory=list)
    recent_changed: bool = False


class Engine:
    """Rules, alert states and their lifecycle (see the module docstring).

    ``owned``: rule names this engine evaluates (the aggregator leaves ``view_stale`` to the notifier,
    which sees the aggregator's silence); None = every rule whose inputs are present.
    """

    def __init__(self, rules: Mapping[str, Rule], owned: Iterable[str] | None = None,
                 recent_max: int = 200) -> None:
        self.rules = {n: r for n, r in rules.items() if owned is None or n in set(owned)}
        self.states: dict[str, AlertState] = {}
        self.acks: dict[str, Ack] = {}
        self.silences: dict[str, Silence] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent_max)
        self.disk: deque[tuple[float, float]] = deque(maxlen=int(DISK_WINDOW_S / DISK_SAMPLE_S) + 1)
        self._forecast: Forecast | None = None
        self._forecast_at = -math.inf
        self._by_metric: dict[str, list[Rule]] = {}
        self._fp_cache: dict[tuple[str, ...], tuple[str, dict[str, str]]] = {}
        self._label_cache: dict[tuple[str, ...], dict[str, str]] = {}
        self._summary_fields: dict[str, frozenset[str]] = {}
        #: wildcard walks of this evaluation, by path prefix
        self._walks: dict[tuple[str, ...], list[tuple[tuple[str, ...], Any, Any]]] = {}
        for r in self.rules.values():
            self._by_metric.setdefault(r.metric, []).append(r)

    # -- memory (restored from retained bus messages) -----------------------------------------------

    def restore(self, payload: Mapping[str, Any], now: float) -> bool:
        """Take back an alert from its retained message (after a restart). False if not ours/invalid."""
        try:
            labels = {str(k): str(v) for k, v in payload["labels"].items()}
            rule = labels["alertname"]
            status = payload["status"]
            fp = str(payload["fingerprint"])
            starts = float(payload["starts_at"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        if status not in ("pending", "firing") or rule not in self.rules or fp in self.states:
            return False
        fired = payload.get("fired_at")
        fired_at = (float(fired) if isinstance(fired, (int, float))
                    else starts if status == "firing" else None)
        st = AlertState(
            fingerprint=fp, rule=rule, labels=labels, status=status, active_at=starts, last_true=now,
            value=payload.get("value"), summary=str((payload.get("annotations") or {}).get("summary", "")),
            fired_at=fired_at,
            acked_by=payload.get("acked_by"), acked_at=payload.get("acked_at"),
            silenced_until=payload.get("silenced_until"), inhibited_by=payload.get("inhibited_by"),
        )
        st.published_key = st.key()
        st.published_at = now
        self.states[fp] = st
        return True

    def restore_recent(self, items: Iterable[Mapping[str, Any]]) -> None:
        for item in items:
            if isinstance(item, Mapping) and "fingerprint" in item:
                self.recent.append(dict(item))

    def seed_disk(self, samples: Iterable[tuple[float, float]]) -> None:
        """Disk samples from history (at start), oldest first, thinned to one a minute."""
        merged = sorted([*samples, *self.disk])
        self.disk.clear()
        for t, v in merged:
            if not self.disk or t - self.disk[-1][0] >= DISK_SAMPLE_S:
                self.disk.append((t, v))
        self._forecast_at = -math.inf

    def ack(self, fp: str, by: str, at: float, starts_at: float | None = None) -> None:
        """Record an acknowledgement of the alert occurrence that started at ``starts_at``."""
        st = self.states.get(fp)
        start = starts_at if starts_at is not None else (st.active_at if st else at)
        self.acks[fp] = Ack(by=by, at=at, starts_at=start)

    def unack(self, fp: str) -> None:
        self.acks.pop(fp, None)

    def add_silence(self, s: Silence) -> None:
        self.silences[s.id] = s

    def remove_silence(self, sid: str) -> None:
        self.silences.pop(sid, None)

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate(self, view: Mapping[str, Any], now: float,
                 inputs: Mapping[str, Any] | None = None) -> Evaluation:
        """One evaluation of every rule over ``view`` at ``now``.

        ``inputs``: figures that are not in the view: ``errors_1m`` ({category: count in the last 60 s}),
        ``view_age_s`` (only where the view's absence can be seen: the notifier)."""
        inputs = inputs or {}
        ev = Evaluation(section={})
        self._walks = {}
        self._sample_disk(view, now)
        true: dict[str, tuple[Rule, Match, dict[str, str]]] = {}
        evaluated: set[str] = set()
        for metric, rules in self._by_metric.items():
            matches = self._resolve(metric, view, now, inputs)
            if matches is None:
                continue  # input not available here (view_age_s in the aggregator)
            nums: list[tuple[Match, float]] | None = None
            for rule in rules:
                evaluated.add(rule.name)
                th = rule.value
                if isinstance(th, str):
                    cmp = OPS[rule.op]
                    hits = [m for m in matches if m[0].__class__ is str and cmp(m[0], th)]
                else:
                    if nums is None:  # once per metric: the numeric matches (bool is not a number)
                        nums = [(m, m[0]) for m in matches if m[0].__class__ in _NUM]
                    hits = _compare(nums, rule.op, th)
                for m in hits:
                    fp, labels = self._fingerprint(rule, m)
                    true[fp] = (rule, m, labels)
        # condition true: new pending, pending -> firing
        for fp, (rule, m, labels) in true.items():
            st = self.states.get(fp)
            fresh = st is None
            if st is None:
                st = AlertState(fingerprint=fp, rule=rule.name, labels=labels, status="pending",
                                active_at=now, last_true=now, value=m.value, summary="")
                self.states[fp] = st
            st.last_true = now
            st.value = _round(m.value)
            fired = st.status == "pending" and now - st.active_at >= rule.for_s
            if fired:
                st.status = "firing"
                st.fired_at = now
            # The summary is formatted when the alert starts or fires and then at most every
            # REPUBLISH_VALUE_S (formatting thousands of them every tick is most of a tick's work);
            # ``value`` itself is always current.
            if fresh or fired or now - st.summary_at >= REPUBLISH_VALUE_S:
                st.summary = self._summary(rule, m)
                st.summary_at = now
        # condition false: pending dropped, firing resolved after keep_firing_s
        for fp in [fp for fp in self.states if fp not in true]:
            st = self.states[fp]
            rule_or_none = self.rules.get(st.rule)
            if rule_or_none is not None and st.rule not in evaluated:
                continue  # its input is missing this tick (view_age_s before the first view): hold
            keep = rule_or_none.keep_firing_s if rule_or_none is not None else 0.0
            if st.status == "pending":
                del self.states[fp]
                ev.changes.append(AlertChange("clear", fp, None))
            elif now - st.last_true >= keep:
                del self.states[fp]
                resolved = st.payload(ends_at=now, status="resolved")
                ev.changes.append(AlertChange("resolved", fp, resolved))
                self.recent.appendleft(resolved)
                ev.recent_changed = True
                if fp in self.acks:
                    del self.acks[fp]
                    ev.cleared_acks.append(fp)
        self._housekeeping(view, now, ev)
        for st in self.states.values():
            key = st.key()
            if key != st.published_key or (now - st.published_at >= REPUBLISH_VALUE_S):
                st.published_key = key
                st.published_at = now
                ev.changes.append(AlertChange("update", st.fingerprint, st.payload()))
        ev.section = self.section(now)
        return ev

    def _housekeeping(self, view: Mapping[str, Any], now: float, ev: Evaluation) -> None:
        """Silences that ended, acks of alerts that are gone, and ack/silence/inhibition on states."""
        for sid in [s.id for s in self.silences.values() if s.ends_at <= now]:
            del self.silences[sid]
            ev.cleared_silences.append(sid)
        for fp in [fp for fp, a in self.acks.items()
                   if fp not in self.states and now - a.at > 60]:
            del self.acks[fp]
            ev.cleared_acks.append(fp)
        while self.recent and now - float(self.recent[-1].get("ends_at") or 0) > RECENT_S:
            self.recent.pop()
            ev.recent_changed = True
        graph = view.get("graph")
        nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
        if not self.acks and not self.silences and not isinstance(nodes, Mapping):
            for st in self.states.values():  # the usual case: nothing to apply
                if st.acked_by is not None or st.silenced_until is not None or st.inhibited_by is not None:
                    st.acked_by = st.acked_at = st.silenced_until = None
                    st.inhibited_by = None
            return
        for st in self.states.values():
            ack = self.acks.get(st.fingerprint)
            if ack is not None and abs(ack.starts_at - st.active_at) < 1e-3:
                st.acked_by, st.acked_at = ack.by, ack.at
            else:
                st.acked_by = st.acked_at = None
            until = [s.ends_at for s in self.silences.values() if s.matches(st.labels, now)]
            st.silenced_until = max(until) if until else None
            st.inhibited_by = None
            if isinstance(nodes, Mapping):
                subject = st.labels.get("component") or st.labels.get("service")
                node = nodes.get(subject) if subject else None
                by = node.get("impacted_by") if isinstance(node, Mapping) else None
                if isinstance(by, list) and by and subject not in by:
                    st.inhibited_by = sorted(str(b) for b in by)

    def section(self, now: float) -> dict[str, Any]:
        """The view's ``alerts`` section: firing and pending (worst first, then oldest), recent, silences."""
        def order(st: AlertState) -> tuple[int, float, str]:
            return (_SEV_RANK.get(st.labels.get("severity", ""), 2), st.active_at, st.fingerprint)

        states = sorted(self.states.values(), key=order)
        return {
            "firing": [s.payload() for s in states if s.status == "firing"],
            "pending": [s.payload() for s in states if s.status == "pending"],
            "recent": list(self.recent),
            "silences": sorted((s.to_json() for s in self.silences.values() if s.ends_at > now),
                               key=lambda s: s["ends_at"]),
        }

    def _fingerprint(self, rule: Rule, m: Match) -> tuple[str, dict[str, str]]:
        key = (rule.name, *m.key) if m.key else None
        if key is not None:
            hit = self._fp_cache.get(key)
            if hit is not None:
                return hit
        subject = m.labels if m.labels is not None else self._labels(m.key)
        labels = {"alertname": rule.name, **subject, "severity": rule.severity}
        out = (fingerprint(labels), labels)
        if key is not None:
            if len(self._fp_cache) > FP_CACHE_MAX:  # names churn (instances come and go): start over
                self._fp_cache.clear()
            self._fp_cache[key] = out
        return out

    # -- metric resolution ----------------------------------------------------------------------------

    def _resolve(self, metric: str, view: Mapping[str, Any], now: float,
                 inputs: Mapping[str, Any]) -> list[Match] | None:
        if metric == "view_age_s":
            age = inputs.get("view_age_s")
            if age is None:
                return None
            return [Match(float(age), ("view_age_s",), {}, {"component": "aggregator"})]
        if metric == "disk_full_in_s":
            return self._forecast_matches(now)
        if metric.startswith("errors_spike:"):
            return self._spike_matches(metric.partition(":")[2], view, now, inputs)
        if ":" in metric:
            kind, _, rest = metric.partition(":")
            if kind == "capacity":
                return self._path_matches(["capacity", *rest.split(".")], view)
            svc, _, name = rest.partition(":")
            if kind == "rate":
                return self._path_matches(["metrics", "rates", svc, name], view)
            return self._gauge_matches(svc, name, view)
        parts = metric.split(".")
        if parts[0] in VIEW_SECTIONS:
            if metric == "capacity.postgres.connections_used_pct":
                return self._pg_pct(view)
            return self._path_matches(parts, view)
        series = (view.get("series") or {}).get(metric)
        if series:
            last = series[-1]
            value = last[1] if isinstance(last, (list, tuple)) and len(last) > 1 else None
            return [Match(value, ("series", metric), {}, {})]
        return []

    def _path_matches(self, parts: list[str], view: Mapping[str, Any]) -> list[Match]:
        if "*" not in parts:  # one concrete path: a chain of gets
            node: Any = view
            parent: Any = None
            for p in parts:
                if not isinstance(node, dict):
                    return []
                parent = node
                node = node.get(p, _MISSING)
                if node is _MISSING:
                    return []
            key = tuple(parts)
            return [Match(node, key, parent, self._labels(key))]
        # Labels are derived from the key only for a subject that breaks a rule (see _fingerprint).
        # The walk up to the last segment is shared by the metrics of one tick that have the same
        # prefix (services.*.instances.*.gauges.{a,b,c}: one walk, then one get per instance each).
        pid = ".".join(parts)
        prefix = tuple(parts[:-1])
        level = self._walks.get(prefix)
        if level is None:
            level = self._walks[prefix] = _walk(view, list(prefix))
        last = parts[-1]
        new = tuple.__new__  # a NamedTuple's own __new__ is a Python call: 10,000 of them show in a tick
        if last == "*":
            return [new(Match, (leaf, (pid, *wk, k), node, None)) for wk, node, _ in level
                    if isinstance(node, dict) for k, leaf in node.items()]
        return [new(Match, (node[last], (pid, *wk), node, None)) for wk, node, _ in level
                if isinstance(node, dict) and last in node]

    def _labels(self, key: tuple[str, ...]) -> dict[str, str]:
        """Labels of a concrete path, or of a wildcard key (pattern, *the keys the wildcards took)."""
        labels = self._label_cache.get(key)
        if labels is None:
            if len(self._label_cache) > FP_CACHE_MAX:
                self._label_cache.clear()
            if key and "*" in key[0]:
                wild = iter(key[1:])
                path = [next(wild) if seg == "*" else seg for seg in key[0].split(".")]
            else:
                path = list(key)
            labels = self._label_cache[key] = _label_for(path)
        return labels

    @staticmethod
    def _gauge_matches(svc: str, gauge: str, view: Mapping[str, Any]) -> list[Match]:
        services = view.get("services") or {}
        out = []
        for name, s in services.items() if svc == "*" else [(svc, services.get(svc))]:
            if not isinstance(s, Mapping):
                continue
            values = [i["gauges"][gauge] for i in (s.get("instances") or {}).values()
                      if gauge in (i.get("gauges") or {}) and i.get("status") in ("healthy", "degraded")]
            if values:
                out.append(Match(math.fsum(values), ("gauge", name, gauge), {}, {"service": name}))
        return out

    @staticmethod
    def _pg_pct(view: Mapping[str, Any]) -> list[Match]:
        pg = (view.get("capacity") or {}).get("postgres") or {}
        used, mx = pg.get("connections_used"), pg.get("connections_max")
        if not (_is_number(used) and _is_number(mx)) or mx <= 0:
            return []
        return [Match(100.0 * used / mx, ("pg_pct",), {"connections_used": used, "connections_max": mx},
                      {"component": "postgres"})]

    def _sample_disk(self, view: Mapping[str, Any], now: float) -> None:
        disk = (view.get("capacity") or {}).get("disk") or {}
        pct = disk.get("used_pct")
        if _is_number(pct) and (not self.disk or now - self.disk[-1][0] >= DISK_SAMPLE_S):
            self.disk.append((now, float(pct)))
            self._forecast_at = -math.inf

    def _forecast_matches(self, now: float) -> list[Match]:
        if self._forecast_at == -math.inf:  # recomputed once per new sample (once a minute)
            self._forecast = forecast_full(self.disk, now)
            self._forecast_at = now
        f = self._forecast
        if f is None:
            return []
        eta = max(0.0, f.eta_s - (now - self._forecast_at))
        return [Match(eta, ("forecast",), labels={"component": "disk"}, context={
            "eta": human_duration(eta), "level": f"{f.level:.1f}", "slope": f"{f.slope_per_h:+.2f}",
            "span": human_duration(f.span_s)})]

    @staticmethod
    def _spike_matches(which: str, view: Mapping[str, Any], now: float,
                       inputs: Mapping[str, Any]) -> list[Match]:
        last_min = inputs.get("errors_1m")
        if not isinstance(last_min, Mapping):
            return []
        counts = (view.get("errors") or {}).get("counts") or {}
        started = (view.get("meta") or {}).get("started_at")
        if not _is_number(started):
            return []
        observed_min = min(60.0, (now - started) / 60.0)
        if observed_min < SPIKE_MIN_BASELINE_MIN:
            return []
        out = []
        for cat in (ERROR_CATEGORIES if which == "*" else (which,)):
            m, h = last_min.get(cat), counts.get(f"{cat}_1h")
            if not (_is_number(m) and _is_number(h)):
                continue
            usual = max(0.0, h - m) / (observed_min - 1.0)
            ratio = m / max(usual, SPIKE_USUAL_FLOOR)
            out.append(Match(ratio, ("spike", cat), {"count": int(m), "usual": f"{usual:.1f}"},
                             {"category": cat}))
        return out

    def _summary(self, rule: Rule, m: Match) -> str:
        fields = self._summary_fields.get(rule.summary)
        if fields is None:
            try:
                fields = frozenset(f for _, f, _, _ in string.Formatter().parse(rule.summary) if f)
            except ValueError:
                fields = frozenset()
            self._summary_fields[rule.summary] = fields
        ctx: dict[str, Any] = {}
        for f in fields:  # only what the summary names: a parent dict may be large
            v = m.context.get(f)
            if isinstance(v, (int, float, str)) and not isinstance(v, bool):
                ctx[f] = _fmt(v)
        reason = m.context.get("reason")
        ctx["reason_suffix"] = f": {reason}" if isinstance(reason, str) and reason else ""
        ctx.update(m.labels if m.labels is not None else self._labels(m.key))
        ctx["value"] = _fmt(m.value)
        ctx["threshold"] = _fmt(rule.value)
        try:
            return rule.summary.format_map(_Default(ctx))
        except (ValueError, IndexError, KeyError, AttributeError):
            return rule.summary

    # -- views of the state -------------------------------------------------------------------------

    def active(self) -> Iterator[AlertState]:
        return iter(self.states.values())

    def next_deadline(self) -> float | None:
        """When the earliest pending alert will have held for its for_s (the aggregator ticks then,
        so an alert fires on time rather than at the next whole second)."""
        best: float | None = None
        for st in self.states.values():
            if st.status == "pending":
                rule = self.rules.get(st.rule)
                if rule is not None:
                    t = st.active_at + rule.for_s
                    if best is None or t < best:
                        best = t
        return best


class _Default(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 3) if math.isfinite(v) else None
    return v
