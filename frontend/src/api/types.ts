/**
 * The view document (docs/view.md) and the live protocol (docs/websocket.md), as the page reads them.
 *
 * The shapes come from one schema: `view.schema.json`, written by `python -m telemetry_bus.view_schema`
 * from the Python Structs the contract tests check every REST answer and WebSocket frame against.
 * `npm run gen` (part of `npm run build` and `npm run typecheck`) turns it into `view.gen.ts`; a renamed
 * field therefore breaks the build, not the page. Nothing here is hand-kept but aliases.
 *
 * Every figure is optional: null and missing mean the same thing, "unknown", and the page shows it as
 * unknown, never as 0. Counts are integers, sizes integer bytes; times are Unix seconds unless the name
 * ends in `_iso` or is one of the seed's string timestamps (`checked_at`, `timestamp`).
 */
import type {
  Component as GenComponent,
  ErrorEntry,
  PatchFrame,
  ServerFrame,
  SnapshotFrame,
  ViewSchema,
} from "./view.gen";

export type {
  Aggregates,
  Alert,
  Alerts,
  Capacity,
  Container,
  Graph as GraphSection,
  GraphNode,
  Health,
  InstanceEntry as Instance,
  Meta,
  Metrics as MetricsSection,
  ProbeEntry,
  ServiceEntry,
  Silence,
} from "./view.gen";

export type View = ViewSchema;
export type Component = GenComponent;
export type Status = NonNullable<GenComponent["status"]>;
export type Num = number | null | undefined;
export type SeriesPoint = [number, number | null];
export type ErrorEvent = ErrorEntry;

export type SnapshotMsg = SnapshotFrame;
export type PatchMsg = PatchFrame;
export type ServerMsg = ServerFrame;

// ---- not the view: the gateway's /healthz auth answer ------------------------------------------------

export type AuthMode = "none" | "token" | "oidc";

export interface AuthInfo {
  mode: AuthMode | "unknown";
  issuer?: string | null;
  client_id?: string | null;
  scope?: string | null;
}
