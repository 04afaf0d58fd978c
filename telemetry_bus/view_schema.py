"""The view (docs/view.md) and the WebSocket frames (docs/websocket.md) as msgspec Structs: one schema.

- ``python -m telemetry_bus.view_schema`` writes ``frontend/src/api/view.schema.json`` (JSON Schema
  draft-07 from these Structs); the frontend build turns it into TypeScript (``npm run gen``), so a
  renamed field breaks the build, not the page. A test keeps the committed file equal to the Structs.
- ``check_view(view)``, ``check_frame(frame)`` decode a plain JSON value against the Structs and raise
  ``msgspec.ValidationError`` naming the path: a float where a count (``int``) belongs, a renamed or
  unknown member, a wrong type. The contract tests (tests/contract/) run every REST answer, the
  WebSocket frames and ``/metrics`` through them.

Rules: every member is optional (null and missing mean "unknown"); counts are ``int``, measurements
``float`` (an int is accepted where a float is declared, never the reverse); sizes are ``int`` bytes.

Adding a section (docs/view.md "Adding a section"): write its Struct(s) here, add the member to
``View``, run ``python -m telemetry_bus.view_schema``, and the generated TypeScript has it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

__all__ = ["FRAME_TYPES", "REST_ANSWERS", "SCHEMA_PATH", "View", "check_frame", "check_rest", "check_view",
           "schema", "write_schema"]

SCHEMA_PATH: Final = Path(__file__).resolve().parent.parent / "frontend" / "src" / "api" / "view.schema.json"

Status = Literal["healthy", "degraded", "down", "unknown"]
Count = Annotated[int, msgspec.Meta(ge=0, description="a count (integer)")]
Bytes = Annotated[int, msgspec.Meta(ge=0, description="bytes (integer)")]
Seconds = Annotated[float, msgspec.Meta(description="Unix seconds")]
#: A series point: [ts, value], the value null when unknown.
SeriesPoint = tuple[float, float | None]


class _S(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Base: every member optional, unknown members refused (a renamed field is an error)."""


# -- meta --------------------------------------------------------------------------------------------

class Completeness(_S):
    ratio: float | None = None
    received_intervals: Count | None = None
    missing_intervals: Count | None = None


class ShardInfo(_S):
    """One aggregator shard, in a view merged from shards (telemetry_bus/shards.py)."""

    shard: str | None = None
    aggregator: str | None = None
    status: Literal["online", "offline", "unknown"] | None = None
    reason: str | None = None
    seq: Count | None = None
    generated_at: Seconds | None = None


class Meta(_S):
    seq: Count | None = None
    generated_at: Seconds | None = None
    aggregator: str | None = None
    tick_s: float | None = None
    window_s: Count | None = None
    series_len: Count | None = None
    errors_len: Count | None = None
    started_at: Seconds | None = None
    completeness: Completeness | None = None
    folded: Count | None = None
    duplicates: Count | None = None
    quarantined: Count | None = None
    quarantine_reasons: dict[str, Count] | None = None
    #: only with aggregator shards: each shard by its index
    shards: dict[str, ShardInfo] | None = None


# -- health ------------------------------------------------------------------------------------------

class Component(_S):
    """A cell of the health grid: a probe target or a service, with the figures its card shows."""

    kind: Literal["probe", "service"] | None = None
    status: Status | None = None
    reason: str | None = None
    since: Seconds | None = None
    ts: Seconds | None = None
    latency_ms: float | None = None
    # probe figures
    connections: Count | None = None
    max_connections: Count | None = None
    db_size_bytes: Bytes | None = None
    file_count: Count | None = None
    file_limit: Count | None = None
    connected_clients: Count | None = None
    canary_rtt_ms: float | None = None
    active_sessions: Count | None = None
    # service figures (gauges named in [aggregator.thresholds.gauges] appear as members too)
    instances_healthy: Count | None = None
    instances_total: Count | None = None
    queue_depth: Count | None = None
    pending_jobs: Count | None = None
    messages_per_sec: float | None = None
    rules_per_sec: float | None = None
    alerts_per_sec: float | None = None
    webhooks_per_sec: float | None = None


class Health(_S):
    status: Status | None = None
    checked_at: str | None = None
    components: dict[str, Component] | None = None


# -- metrics -----------------------------------------------------------------------------------------

class Throughput(_S):
    ingest_rate_per_sec: float | None = None
    alert_rate_per_sec: float | None = None
    delivery_rate_per_sec: float | None = None
    write_rate_per_sec: float | None = None
    rules_rate_per_sec: float | None = None
    routed_rate_per_sec: float | None = None
    delivery_failed_rate_per_sec: float | None = None


class Latency(_S):
    influx_write_p50_ms: float | None = None
    influx_write_p95_ms: float | None = None
    influx_write_p99_ms: float | None = None
    relative_error: float | None = None
    samples: Count | None = None


class Metrics(_S):
    throughput: Throughput | None = None
    latency: Latency | None = None
    period: str | None = None
    window_s: Count | None = None
    #: service -> counter -> per second over the window
    rates: dict[str, dict[str, float | None]] | None = None


# -- capacity ----------------------------------------------------------------------------------------

class Disk(_S):
    postgres_data_bytes: Bytes | None = None
    influxdb_data_bytes: Bytes | None = None
    total_volume_bytes: Bytes | None = None
    used_volume_bytes: Bytes | None = None
    used_pct: float | None = None
    status: Status | None = None
    reason: str | None = None
    ts: Seconds | None = None


class Table(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    bytes: Bytes | None = None


class PostgresCapacity(_S):
    db_size_bytes: Bytes | None = None
    connections_used: Count | None = None
    connections_max: Count | None = None
    largest_tables: list[Table] | None = None
    status: Status | None = None
    reason: str | None = None
    ts: Seconds | None = None


class InfluxCapacity(_S):
    file_count: Count | None = None
    file_limit: Count | None = None
    data_bytes: Bytes | None = None
    status: Status | None = None
    reason: str | None = None
    ts: Seconds | None = None


class Container(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One container of the docker probe (extra members, e.g. ``status``, are allowed)."""

    name: str | None = None
    service: str | None = None
    state: str | None = None
    status: str | None = None
    cpu_pct: float | None = None
    mem_bytes: Bytes | None = None
    mem_limit_bytes: Bytes | None = None


class Memory(_S):
    available: bool | None = None
    reason: str | None = None
    #: Where the rows come from: ``docker`` (the docker probe) or ``processes`` (cgroup / /proc).
    source: str | None = None
    containers: list[Container] | None = None
    running: Count | None = None
    total: Count | None = None
    status: Status | None = None
    ts: Seconds | None = None


class Capacity(_S):
    disk: Disk | None = None
    postgres: PostgresCapacity | None = None
    influxdb: InfluxCapacity | None = None
    memory: Memory | None = None


# -- aggregates --------------------------------------------------------------------------------------

class Tenants(_S):
    active: Count | None = None
    suspended: Count | None = None
    deleted: Count | None = None
    total: Count | None = None


class Devices(_S):
    registered: Count | None = None
    online: Count | None = None
    stale: Count | None = None


class PlatformAlerts(_S):
    open: Count | None = None
    closed_today: Count | None = None
    triggered_today: Count | None = None


class Integrations(_S):
    total: Count | None = None
    active: Count | None = None
    webhook: Count | None = None
    email: Count | None = None
    sms: Count | None = None


class Aggregates(_S):
    tenants: Tenants | None = None
    devices: Devices | None = None
    alerts: PlatformAlerts | None = None
    integrations: Integrations | None = None
    status: Status | None = None
    reason: str | None = None
    ts: Seconds | None = None


# -- errors ------------------------------------------------------------------------------------------

class ErrorEntry(_S):
    id: Count | None = None
    timestamp: str | None = None
    ts: Seconds | None = None
    service: str | None = None
    instance: str | None = None
    type: str | None = None
    severity: Literal["debug", "info", "warning", "error", "critical"] | None = None
    message: str | None = None
    topic: str | None = None
    reporter_ts: Seconds | None = None
    attrs: dict[str, str] | None = None


class ErrorCounts(_S):
    ingest_failures_1h: Count | None = None
    delivery_failures_1h: Count | None = None
    auth_failures_1h: Count | None = None
    rate_limited_1h: Count | None = None
    quarantined_1h: Count | None = None


class Errors(_S):
    errors: list[ErrorEntry] | None = None
    counts: ErrorCounts | None = None


# -- services and probes -----------------------------------------------------------------------------

class InstanceEntry(_S):
    status: Status | None = None
    reason: str | None = None
    since: Seconds | None = None
    boot: str | None = None
    #: when the current boot started (reporter clock), for the uptime
    boot_at: Seconds | None = None
    version: str | None = None
    interval_s: float | None = None
    last_seen: Seconds | None = None
    seq: Count | None = None
    restarts: Count | None = None
    missing_intervals: Count | None = None
    received_intervals: Count | None = None
    skew_s: float | None = None
    totals: dict[str, Count] | None = None
    gauges: dict[str, int | float] | None = None
    health: Literal["ok", "degraded", "down"] | None = None
    detail: str | None = None
    depends_on: list[str] | None = None


class ServiceEntry(_S):
    status: Status | None = None
    reason: str | None = None
    expected: bool | None = None
    since: Seconds | None = None
    instances_total: Count | None = None
    instances_by_status: dict[str, Count] | None = None
    versions: dict[str, Count] | None = None
    restarts: Count | None = None
    missing_intervals: Count | None = None
    #: log records the instances' log handlers dropped over their rate (since the aggregator saw them)
    log_records_dropped: Count | None = None
    last_seen: Seconds | None = None
    #: per instance; only with ``services/<name>`` in a WebSocket hello's sections (docs/websocket.md)
    instances: dict[str, InstanceEntry] | None = None


class ProbeEntry(_S):
    status: Status | None = None
    reported_status: Status | None = None
    reason: str | None = None
    ts: Seconds | None = None
    probe_ts: Seconds | None = None
    latency_ms: float | None = None
    #: as the probe sent them: counts ints, measurements floats (docs/probes.md)
    metrics: dict[str, int | float | None] | None = None
    details: dict[str, Any] | None = None
    error: str | None = None
    period_s: float | None = None


# -- graph (telemetry_bus/graph.py) --------------------------------------------------------------------

class GraphNode(_S):
    status: Status | None = None
    impacted_by: list[str] | None = None
    root_cause: bool | None = None


class GraphRoot(_S, kw_only=True):
    component: str
    status: Status | None = None
    impacts: list[str] | None = None


class IgnoredEdge(_S, kw_only=True):
    edge: tuple[str, str]
    reason: str


class Graph(_S):
    nodes: dict[str, GraphNode] | None = None
    #: [dependent, dependency]
    edges: list[tuple[str, str]] | None = None
    roots: list[GraphRoot] | None = None
    summary: str | None = None
    ignored: list[IgnoredEdge] | None = None


# -- alerts (alerts/engine.py) -----------------------------------------------------------------------

class Alert(_S):
    fingerprint: str | None = None
    status: Literal["pending", "firing", "resolved"] | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    #: the figure the rule compared (a number, or a status such as "degraded")
    value: float | str | None = None
    starts_at: Seconds | None = None
    ends_at: Seconds | None = None
    fired_at: Seconds | None = None
    acked_by: str | None = None
    acked_at: Seconds | None = None
    silenced_until: Seconds | None = None
    inhibited_by: list[str] | None = None


class Silence(_S):
    id: str | None = None
    matchers: dict[str, str] | None = None
    starts_at: Seconds | None = None
    ends_at: Seconds | None = None
    comment: str | None = None
    created_by: str | None = None


class Alerts(_S):
    firing: list[Alert] | None = None
    pending: list[Alert] | None = None
    recent: list[Alert] | None = None
    silences: list[Silence] | None = None


# -- the view ----------------------------------------------------------------------------------------

class View(_S):
    """The whole view, as a snapshot carries it (docs/view.md)."""

    meta: Meta | None = None
    health: Health | None = None
    graph: Graph | None = None
    metrics: Metrics | None = None
    capacity: Capacity | None = None
    aggregates: Aggregates | None = None
    errors: Errors | None = None
    alerts: Alerts | None = None
    services: dict[str, ServiceEntry] | None = None
    probes: dict[str, ProbeEntry] | None = None
    #: [ts, value] points, oldest first
    series: dict[str, list[SeriesPoint]] | None = None


# -- REST answers (gateway/rest.py): the view's sections with the seed's fields ------------------------

class RestDisk(Disk):
    """The seed's decimal GB (10^9 bytes) beside the view's bytes."""

    postgres_data_gb: float | None = None
    influxdb_data_gb: float | None = None
    total_volume_gb: float | None = None
    used_volume_gb: float | None = None


class RestPostgres(PostgresCapacity):
    db_size_mb: float | None = None  # decimal MB (10^6 bytes)


class RestInflux(InfluxCapacity):
    data_gb: float | None = None


class RestCapacity(_S):
    disk: RestDisk | None = None
    postgres: RestPostgres | None = None
    influxdb: RestInflux | None = None
    memory: Memory | None = None


class SeriesAnswer(_S):
    series: dict[str, list[SeriesPoint]]
    since: float | None = None
    series_len: Count | None = None


#: ``GET /operator/system/<name>`` -> the Struct its answer decodes as.
REST_ANSWERS: Final[dict[str, type[msgspec.Struct]]] = {
    "health": Health, "metrics": Metrics, "capacity": RestCapacity, "aggregates": Aggregates,
    "errors": Errors, "series": SeriesAnswer,
}


def check_rest(name: str, body: Any) -> msgspec.Struct:
    """Decode a REST answer of ``/operator/system/<name>``."""
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return msgspec.json.decode(raw, type=REST_ANSWERS[name])


# -- WebSocket frames, server -> client (docs/websocket.md) --------------------------------------------

class SnapshotFrame(_S, tag="snapshot", tag_field="type", kw_only=True):
    seq: Count
    ts: Seconds | None = None
    state: View
    #: true on the frames of a replay of the past (docs/websocket.md "Replay"), absent on live ones
    replay: bool | None = None


class PatchFrame(_S, tag="patch", tag_field="type", kw_only=True):
    """``patch`` is an RFC 7396 merge patch of the view (its members are checked by applying it)."""

    seq: Count
    base: Count
    ts: Seconds | None = None
    patch: dict[str, Any]
    append: dict[str, SeriesPoint] | None = None
    #: new error-feed entries, newest first
    errors: list[ErrorEntry] | None = None
    #: coalesced frames (hello ``max_rate``): every series point since ``base``, and how many
    #: patches the frame stands for
    appends: dict[str, list[SeriesPoint]] | None = None
    coalesced: Count | None = None
    #: true on the frames of a replay of the past (docs/websocket.md "Replay"), absent on live ones
    replay: bool | None = None


class MetaFrame(_S, tag="meta", tag_field="type", kw_only=True):
    stale: bool
    age_s: float | None = None
    gateway: str | None = None


class ErrorFrame(_S, tag="error", tag_field="type", kw_only=True):
    code: str
    message: str | None = None


class ReplayFrame(_S, tag="replay", tag_field="type", kw_only=True):
    """The answer to a client's ``replay`` (docs/websocket.md "Replay"), and its end."""

    ok: bool
    #: accepted: where it starts (the moment asked, the tick found) and at what speed
    from_: Seconds | None = msgspec.field(default=None, name="from")
    speed: float | None = None
    seq: Count | None = None
    ts: Seconds | None = None
    #: "caught_up": the replay reached the present; the live snapshot follows
    ended: str | None = None
    #: refused: bad_request, not_recorded, history_off, history_unavailable, too_many_replays
    code: str | None = None
    message: str | None = None
    field: str | None = None
    oldest: Seconds | None = None


ServerFrame = SnapshotFrame | PatchFrame | MetaFrame | ErrorFrame | ReplayFrame
FRAME_TYPES: Final = ("snapshot", "patch", "meta", "error", "replay")

_view_decoder: Final = msgspec.json.Decoder(View)
_frame_decoder: Final = msgspec.json.Decoder(ServerFrame)


def check_view(view: Any) -> View:
    """Decode a view (a JSON value or its bytes); raises ``msgspec.ValidationError`` naming the path."""
    return _view_decoder.decode(view if isinstance(view, bytes) else msgspec.json.encode(view))


def check_frame(frame: Any) -> SnapshotFrame | PatchFrame | MetaFrame | ErrorFrame | ReplayFrame:
    """Decode a server -> client WebSocket frame (a JSON value or its bytes)."""
    return _frame_decoder.decode(frame if isinstance(frame, bytes) else msgspec.json.encode(frame))  # type: ignore[no-any-return]


def _tuples_as_items(node: Any) -> Any:
    """msgspec writes a tuple as 2020-12 ``prefixItems``; json-schema-to-typescript reads the draft-07
    form (``items`` as a list), which every validator also accepts: write that."""
    if isinstance(node, list):
        return [_tuples_as_items(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tuples_as_items(v) for k, v in node.items()}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
    return out


def schema() -> dict[str, Any]:
    """JSON Schema (draft-07) of the view and of the server frames; definitions in ``$defs``."""
    (view_s, frame_s), components = msgspec.json.schema_components(
        [View, ServerFrame], ref_template="#/$defs/{name}")
    out: dict[str, Any] = _tuples_as_items({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://opsdash.example/schema/view.json",
        "title": "ViewSchema",
        "description": "The opsdash view (root) and WebSocket frames ($defs.ServerFrame); generated by "
                       "telemetry_bus/view_schema.py (python -m telemetry_bus.view_schema). Do not edit.",
        **view_s,
        "$defs": {**components, "ServerFrame": frame_s},
    })
    return out


def schema_text() -> str:
    return json.dumps(schema(), indent=1, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> bool:
    """Write the schema file; True when it changed."""
    text = schema_text()
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


if __name__ == "__main__":
    changed = write_schema()
    print(f"{SCHEMA_PATH}: {'written' if changed else 'up to date'}", file=sys.stderr)
