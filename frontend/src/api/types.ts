/**
 * The view document (docs/view.md) and the live protocol (docs/websocket.md), as the page reads them.
 *
 * Every figure is optional: null and missing mean the same thing, "unknown", and the page shows it as
 * unknown, never as 0. Times are Unix seconds unless the name ends in `_iso` or is one of the seed's
 * string timestamps (`checked_at`, `timestamp`).
 */

export type Status = "healthy" | "degraded" | "down" | "unknown";
export type Num = number | null | undefined;
export type SeriesPoint = [number, number | null];

export interface Completeness {
  ratio?: Num;
  received_intervals?: Num;
  missing_intervals?: Num;
}

export interface Meta {
  seq?: number;
  generated_at?: Num;
  aggregator?: string | null;
  tick_s?: Num;
  window_s?: Num;
  series_len?: Num;
  errors_len?: Num;
  started_at?: Num;
  completeness?: Completeness | null;
  folded?: Num;
  duplicates?: Num;
  quarantined?: Num;
}

export interface Component {
  kind?: "probe" | "service" | string;
  status?: Status | string | null;
  reason?: string | null;
  latency_ms?: Num;
  age_s?: Num;
  ts?: Num;
  since?: Num;
  // probe figures
  connections?: Num;
  max_connections?: Num;
  db_size_bytes?: Num;
  file_count?: Num;
  connected_clients?: Num;
  active_sessions?: Num;
  // service figures
  queue_depth?: Num;
  pending_jobs?: Num;
  instances_healthy?: Num;
  instances_total?: Num;
  [extra: string]: unknown;
}

export interface Health {
  status?: Status | string | null;
  checked_at?: string | null;
  components?: Record<string, Component | null | undefined> | null;
}

export interface Throughput {
  ingest_rate_per_sec?: Num;
  alert_rate_per_sec?: Num;
  delivery_rate_per_sec?: Num;
  write_rate_per_sec?: Num;
  rules_rate_per_sec?: Num;
  routed_rate_per_sec?: Num;
  delivery_failed_rate_per_sec?: Num;
}

export interface Latency {
  influx_write_p50_ms?: Num;
  influx_write_p95_ms?: Num;
  influx_write_p99_ms?: Num;
  relative_error?: Num;
  samples?: Num;
}

export interface MetricsSection {
  throughput?: Throughput | null;
  latency?: Latency | null;
  period?: string | null;
  window_s?: Num;
}

export interface Aged {
  status?: Status | string | null;
  ts?: Num;
  age_s?: Num;
  reason?: string | null;
}

export interface Container {
  name?: string;
  service?: string | null;
  state?: string | null;
  cpu_pct?: Num;
  mem_bytes?: Num;
  mem_limit_bytes?: Num;
}

export interface Capacity {
  disk?: (Aged & {
    postgres_data_bytes?: Num;
    influxdb_data_bytes?: Num;
    total_volume_bytes?: Num;
    used_volume_bytes?: Num;
    used_pct?: Num;
  }) | null;
  postgres?: (Aged & {
    db_size_bytes?: Num;
    connections_used?: Num;
    connections_max?: Num;
    largest_tables?: { name?: string; bytes?: Num }[] | null;
  }) | null;
  influxdb?: (Aged & { file_count?: Num; file_limit?: Num; data_bytes?: Num }) | null;
  memory?: (Aged & { available?: boolean | null; containers?: Container[] | null }) | null;
}

export interface Aggregates extends Aged {
  tenants?: { active?: Num; suspended?: Num; deleted?: Num; total?: Num } | null;
  devices?: { registered?: Num; online?: Num; stale?: Num } | null;
  alerts?: { open?: Num; closed_today?: Num; triggered_today?: Num } | null;
  integrations?: { total?: Num; active?: Num; webhook?: Num; email?: Num; sms?: Num } | null;
}

export interface ErrorEvent {
  /** Stable id of the entry (increases with every entry the aggregator adds). */
  id?: Num;
  timestamp?: string | null;
  ts?: Num;
  service?: string | null;
  instance?: string | null;
  type?: string | null;
  severity?: string | null;
  message?: string | null;
  topic?: string | null;
}

export interface ErrorsSection {
  errors?: ErrorEvent[] | null;
  counts?: Record<string, Num> | null;
}

export interface Instance {
  status?: Status | string | null;
  reason?: string | null;
  since?: Num;
  boot?: string | null;
  version?: string | null;
  seq?: Num;
  received_intervals?: Num;
  skew_s?: Num;
  health?: string | null;
  detail?: string | null;
  last_seen?: Num;
  age_s?: Num;
  interval_s?: Num;
  restarts?: Num;
  missing_intervals?: Num;
  gauges?: Record<string, Num> | null;
  totals?: Record<string, Num> | null;
}

export interface ServiceEntry {
  status?: Status | string | null;
  reason?: string | null;
  expected?: boolean | null;
  /** the summary (default stream); `instances` only with `services/<name>` in sections */
  since?: Num;
  instances_total?: Num;
  instances_by_status?: Record<string, Num> | null;
  versions?: Record<string, Num> | null;
  restarts?: Num;
  missing_intervals?: Num;
  last_seen?: Num;
  instances?: Record<string, Instance | null | undefined> | null;
}

export interface ProbeEntry {
  status?: Status | string | null;
  ts?: Num;
  age_s?: Num;
  latency_ms?: Num;
  period_s?: Num;
  error?: string | null;
  metrics?: Record<string, unknown> | null;
}

export interface View {
  meta?: Meta | null;
  health?: Health | null;
  metrics?: MetricsSection | null;
  capacity?: Capacity | null;
  aggregates?: Aggregates | null;
  errors?: ErrorsSection | null;
  series?: Record<string, SeriesPoint[] | null | undefined> | null;
  services?: Record<string, ServiceEntry | null | undefined> | null;
  probes?: Record<string, ProbeEntry | null | undefined> | null;
  graph?: GraphSection | null;
}

/** The dependency graph (docs/view.md, section `graph`). Edges are [dependent, dependency]. */
export interface GraphNode {
  status?: Status | string | null;
  impacted_by?: string[] | null;
  root_cause?: boolean | null;
}

export interface GraphSection {
  nodes?: Record<string, GraphNode | null | undefined> | null;
  edges?: [string, string][] | null;
  roots?: { component: string; status: string; impacts?: string[] | null }[] | null;
  summary?: string | null;
  ignored?: { edge: [string, string]; reason: string }[] | null;
}

// ---- the live protocol (server → client) --------------------------------------------------------

export interface SnapshotMsg {
  type: "snapshot";
  seq: number;
  state: View;
}

export interface PatchMsg {
  type: "patch";
  seq: number;
  base: number;
  ts?: number;
  patch: Record<string, unknown>;
  append?: Record<string, SeriesPoint> | null;
  /** New error-feed entries, newest first: they go in front of `errors.errors` (docs/websocket.md). */
  errors?: ErrorEvent[] | null;
}

export interface MetaMsg {
  type: "meta";
  stale?: boolean;
  age_s?: Num;
  gateway?: string | null;
}

export interface ErrorMsg {
  type: "error";
  code?: string;
  message?: string;
}

export type ServerMsg = SnapshotMsg | PatchMsg | MetaMsg | ErrorMsg;

export type AuthMode = "none" | "token" | "oidc";

export interface AuthInfo {
  mode: AuthMode | "unknown";
  issuer?: string | null;
  client_id?: string | null;
  scope?: string | null;
}
