"""The MQTT contract of opsdash (design.md section 2): topics and payloads as msgspec Structs.

Everything that crosses the broker is one of the Structs below, encoded as JSON so that
``mosquitto_sub -v -t '$ops/#'`` shows it. The limits on each field (name patterns, finite and
non-negative numbers, bounded sizes and counts) are what makes bad input detectable: a payload that
breaks one fails to decode, and the aggregator quarantines it with the decoder's message as reason.

Topic tree, under a configurable root (default ``$ops``)::

    <root>/v1/svc/<service>/<instance>/status    retained, QoS 1
    <root>/v1/svc/<service>/<instance>/metrics   QoS 1, once per interval (also the heartbeat)
    <root>/v1/svc/<service>/<instance>/events    QoS 1
    <root>/v1/probe/<target>                     retained, QoS 1
    <root>/v1/view/snapshot                      retained, QoS 1
    <root>/v1/view/patch                         QoS 0

New fields always get defaults, so older senders keep decoding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "METRIC_PATTERN",
    "SEGMENT_PATTERN",
    "Event",
    "Hist",
    "Metrics",
    "ProbeResult",
    "Status",
    "Topic",
    "TopicError",
    "ViewPatch",
    "ViewSnapshot",
    "check_hist",
    "check_name",
    "check_series_name",
    "decode_event",
    "decode_metrics",
    "decode_patch",
    "decode_probe",
    "decode_snapshot",
    "decode_status",
    "encode",
    "parse_topic",
    "topics",
]

SEGMENT_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
METRIC_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
#: Largest payload the aggregator accepts on any ops topic; larger ones are quarantined unread.
MAX_PAYLOAD_BYTES: Final = 256 * 1024
#: Most series (counters + gauges + histograms) one message may carry.
MAX_SERIES_PER_MESSAGE: Final = 256
#: Bucket arrays longer than this are refused (OpenTelemetry's default maximum is 160).
MAX_BUCKETS: Final = 2048
#: Most entries of a status message's ``depends_on``.
MAX_DEPENDS_ON: Final = 32

_SEGMENT_RE: Final = re.compile(SEGMENT_PATTERN)

# Bounds: 2**53 keeps every integer exact in a JavaScript double on the dashboard; 1e15 keeps
# floats finite (an out-of-range JSON number such as 1e999 decodes to inf and must be refused).
_MAX_INT: Final = 2**53
_FIN: Final = 1e15

Name = Annotated[str, msgspec.Meta(pattern=METRIC_PATTERN)]
Segment = Annotated[str, msgspec.Meta(pattern=SEGMENT_PATTERN)]
#: A series name as decoded on the hot path: only its length is checked by the decoder; the
#: aggregator checks the pattern (``check_series_name``) the first time an instance sends a name,
#: which keeps the regex off the per-message path (it cost ~40 % of decoding a metrics message).
SeriesKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_METRIC_RE: Final = re.compile(METRIC_PATTERN)
BootId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Count = Annotated[int, msgspec.Meta(ge=0, le=_MAX_INT)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=_MAX_INT)]
Finite = Annotated[float, msgspec.Meta(ge=-_FIN, le=_FIN)]
#: A figure that keeps its JSON type: a count sent as ``3001`` stays the int 3001 end to end (view,
#: REST, WebSocket, /metrics); a measurement sent as ``3.5`` (or ``3.0``) stays a float.
Number = Annotated[int, msgspec.Meta(ge=-_MAX_INT, le=_MAX_INT)] | Finite
NonNeg = Annotated[float, msgspec.Meta(ge=0, le=_FIN)]
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
ShortText = Annotated[str, msgspec.Meta(max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]


class Status(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Retained presence of one reporter instance; also its Last Will (offline/lost)."""

    state: Literal["online", "offline"]
    boot: BootId
    version: ShortText = ""
    interval_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    ts: Timestamp = 0.0
    reason: ShortText = ""
    #: Components this service needs (service or probe target names), added to the dependency
    #: graph's configured edges (design.md section 10). Optional: older senders omit it.
    depends_on: Annotated[list[Segment], msgspec.Meta(max_length=MAX_DEPENDS_ON)] = []


class Hist(msgspec.Struct, frozen=True, kw_only=True):
    """A base-2 exponential histogram delta (OpenTelemetry / Prometheus native scheme).

    ``counts[k]`` counts values in (base**(offset+k), base**(offset+k+1)] with
    base = 2**(2**-scale); values <= 0 go to ``zero_count``.
    """

    scale: Annotated[int, msgspec.Meta(ge=-10, le=20)]
    zero_count: Count = 0
    offset: Annotated[int, msgspec.Meta(ge=-(2**24), le=2**24)] = 0
    #: Non-negative; checked by the aggregator with one ``min()`` rather than per element here.
    counts: Annotated[list[int], msgspec.Meta(max_length=MAX_BUCKETS)] = []
    count: Count = 0
    sum: Finite = 0.0
    min: Finite | None = None
    max: Finite | None = None


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """One reporting interval of one instance: heartbeat, counter deltas, totals, gauges, histograms."""

    boot: BootId
    seq: Seq
    t0: Timestamp = 0.0
    t1: Timestamp = 0.0
    health: Literal["ok", "degraded", "down"] = "ok"
    detail: Text = ""
    counters: Annotated[dict[SeriesKey, Count], msgspec.Meta(max_length=MAX_SERIES_PER_MESSAGE)] = {}
    totals: Annotated[dict[SeriesKey, Count], msgspec.Meta(max_length=MAX_SERIES_PER_MESSAGE)] = {}
    gauges: Annotated[dict[SeriesKey, Number], msgspec.Meta(max_length=MAX_SERIES_PER_MESSAGE)] = {}
    hist: Annotated[dict[SeriesKey, Hist], msgspec.Meta(max_length=64)] = {}
    interval_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Something notable that happened in a service (an error, a rate limit, a quarantined message)."""

    boot: BootId
    seq: Seq = 0
    ts: Timestamp = 0.0
    kind: Name
    severity: Literal["debug", "info", "warning", "error", "critical"] = "error"
    message: Text = ""
    attrs: Annotated[dict[Annotated[str, msgspec.Meta(max_length=64)], ShortText],
                     msgspec.Meta(max_length=32)] = {}


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """Result of one active check of a platform component (retained on ``<root>/v1/probe/<target>``).

    ``metrics`` holds flat numbers (``null`` when unknown); ``details`` holds structured extras such as
    the largest tables or the container list. ``period_s`` lets the aggregator tell a stale result
    (older than 3 x period) from a fresh one.
    """

    ts: Timestamp
    status: Literal["healthy", "degraded", "down", "unknown"]
    latency_ms: NonNeg | None = None
    metrics: Annotated[dict[Name, Number | None], msgspec.Meta(max_length=MAX_SERIES_PER_MESSAGE)] = {}
    error: Text | None = None
    period_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 10.0
    details: Annotated[dict[Name, Any], msgspec.Meta(max_length=64)] = {}


class ViewSnapshot(msgspec.Struct, kw_only=True):
    """The whole view (design.md section 4), retained on ``<root>/v1/view/snapshot``."""

    seq: int
    ts: float
    state: dict[str, Any]


class ViewPatch(msgspec.Struct, kw_only=True):
    """One tick's change: an RFC 7396 merge patch of the view, the series points to append, and the
    new error-feed entries (newest first) to put in front of ``errors.errors`` (docs/view.md)."""

    seq: int
    base: int
    ts: float
    patch: dict[str, Any]
    append: dict[str, list[Any]] = {}
    errors: list[dict[str, Any]] = []


_encoder: Final = msgspec.json.Encoder()
_status_decoder: Final = msgspec.json.Decoder(Status)
_metrics_decoder: Final = msgspec.json.Decoder(Metrics)
_event_decoder: Final = msgspec.json.Decoder(Event)
_probe_decoder: Final = msgspec.json.Decoder(ProbeResult)
_snapshot_decoder: Final = msgspec.json.Decoder(ViewSnapshot)
_patch_decoder: Final = msgspec.json.Decoder(ViewPatch)


T = TypeVar("T")


def _guarded(decoder: msgspec.json.Decoder[T]) -> Callable[[bytes], T]:
    """``decoder.decode``, but deep nesting is a DecodeError like any other bad payload: msgspec
    raises RecursionError for ~1,000 nested arrays (a 2 KB message), even inside a field it skips,
    and that must quarantine the message, not stop the loop that read it."""
    decode = decoder.decode

    def guarded(data: bytes) -> T:
        try:
            return decode(data)
        except RecursionError:
            raise msgspec.DecodeError("JSON nested too deeply") from None
    return guarded


decode_status = _guarded(_status_decoder)
decode_metrics = _guarded(_metrics_decoder)
decode_event = _guarded(_event_decoder)
decode_probe = _guarded(_probe_decoder)
decode_snapshot = _guarded(_snapshot_decoder)
decode_patch = _guarded(_patch_decoder)
#: Any JSON value from the bus (alert state, the view's second record), deep nesting refused the same way.
decode_json_value: Final[Callable[[bytes], Any]] = _guarded(msgspec.json.Decoder())


def encode(obj: object) -> bytes:
    """Encode any contract Struct (or plain JSON value) to compact JSON bytes."""
    return _encoder.encode(obj)


class TopicError(ValueError):
    """A topic that is not of the contract's shape (the reason says which part is wrong)."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed ops topic. ``kind`` is status/metrics/events for services, probe, or snapshot/patch."""

    kind: Literal["status", "metrics", "events", "probe", "snapshot", "patch"]
    service: str = ""
    instance: str = ""
    target: str = ""


def _check_segment(what: str, value: str) -> str:
    if not _SEGMENT_RE.match(value):
        raise TopicError(f"{what} {value[:80]!r} does not match {SEGMENT_PATTERN}")
    return value


def parse_topic(topic: str, root: str) -> Topic:
    """Parse ``topic`` under ``root``; raise TopicError naming the offending part."""
    prefix = root + "/v1/"
    if not topic.startswith(prefix):
        raise TopicError(f"topic is not under {prefix!r}")
    parts = topic[len(prefix):].split("/")
    match parts:
        case ["svc", service, instance, ("status" | "metrics" | "events") as kind]:
            return Topic(kind=kind, service=_check_segment("service", service),
                         instance=_check_segment("instance", instance))
        case ["probe", target]:
            return Topic(kind="probe", target=_check_segment("target", target))
        case ["view", ("snapshot" | "patch") as kind]:
            return Topic(kind=kind)
        case _:
            raise TopicError("unknown topic shape (expected svc/<service>/<instance>/"
                             "{status,metrics,events}, probe/<target> or view/{snapshot,patch})")


class topics:
    """Builders for the topic names of the tree, all under a given root."""

    @staticmethod
    def svc(root: str, service: str, instance: str, kind: str) -> str:
        return f"{root}/v1/svc/{service}/{instance}/{kind}"

    @staticmethod
    def status(root: str, service: str, instance: str) -> str:
        return topics.svc(root, service, instance, "status")

    @staticmethod
    def metrics(root: str, service: str, instance: str) -> str:
        return topics.svc(root, service, instance, "metrics")

    @staticmethod
    def events(root: str, service: str, instance: str) -> str:
        return topics.svc(root, service, instance, "events")

    @staticmethod
    def probe(root: str, target: str) -> str:
        return f"{root}/v1/probe/{target}"

    @staticmethod
    def snapshot(root: str) -> str:
        return f"{root}/v1/view/snapshot"

    @staticmethod
    def patch(root: str) -> str:
        return f"{root}/v1/view/patch"


def check_series_name(name: str) -> str | None:
    """Why ``name`` is not a valid metric/series name, or None when it is."""
    if _METRIC_RE.match(name):
        return None
    return f"series name {name[:80]!r} does not match {METRIC_PATTERN}"


def check_hist(name: str, h: Hist) -> str | None:
    """Why a decoded histogram is inconsistent, or None when it is sound."""
    if h.counts and min(h.counts) < 0:
        return f"histogram {name!r}: negative bucket count"
    if h.count != h.zero_count + sum(h.counts):
        return f"histogram {name!r}: count {h.count} != zero_count + sum(counts)"
    if h.min is not None and h.max is not None and h.min > h.max:
        return f"histogram {name!r}: min {h.min} > max {h.max}"
    return None


def check_name(what: str, value: str) -> str:
    """Validate a service/instance/target name at construction time (reporter side)."""
    return _check_segment(what, value)


def to_builtins(obj: Any) -> Any:
    """A Struct as plain dicts/lists (for the view)."""
    return msgspec.to_builtins(obj)
