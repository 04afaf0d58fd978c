/**
 * Pure read-outs of the live state for the components: status words, data ages, staleness.
 * `now` is a parameter (ms), so the components re-render from a 1 s clock and the tests drive it.
 */
import type { Component, ProbeEntry, Status, View } from "../../api/types";
import type { LiveState } from "./reducer";

export const STATUSES: readonly Status[] = ["healthy", "degraded", "down", "unknown"];

export function normStatus(s: unknown): Status {
  return typeof s === "string" && (STATUSES as readonly string[]).includes(s) ? (s as Status) : "unknown";
}

/** The view is stale when it is older than this (the aggregator ticks every second). */
export const VIEW_STALE_AFTER_S = 5;

/** Seconds since the last snapshot or patch was applied, or null before the first. */
export function sinceUpdateS(state: LiveState, now: number): number | null {
  return state.receivedAt === null ? null : Math.max(0, (now - state.receivedAt) / 1000);
}

/**
 * Age of the whole view: the aggregator's own age for the view when the gateway reports one (meta),
 * else the time since the last update reached the page.
 */
export function viewAgeS(state: LiveState, now: number): number | null {
  const since = sinceUpdateS(state, now);
  if (since === null) return null;
  return state.gatewayStale && state.gatewayAgeS !== null ? Math.max(since, state.gatewayAgeS) : since;
}

export function viewStale(state: LiveState, now: number): boolean {
  if (state.view === null) return true;
  if (state.phase !== "live") return true;
  if (state.gatewayStale) return true;
  const age = viewAgeS(state, now);
  return age === null || age > VIEW_STALE_AFTER_S;
}

/** An `age_s` carried in the view, advanced by the time since the view arrived. */
export function liveAge(ageS: unknown, state: LiveState, now: number): number | null {
  if (typeof ageS !== "number" || !Number.isFinite(ageS)) return null;
  return ageS + (sinceUpdateS(state, now) ?? 0);
}

/**
 * Age (s) of a piece of the view at the moment the view was generated: `generated_at - ts` (or
 * `- last_seen`), both on the aggregator's clock, so the browser's clock never enters into it. Null
 * when unknown.
 */
export function sourceAgeS(view: View | null, obj: { ts?: unknown; last_seen?: unknown } | null | undefined): number | null {
  if (!obj) return null;
  const gen = view?.meta?.generated_at;
  const t = typeof obj.ts === "number" ? obj.ts : typeof obj.last_seen === "number" ? obj.last_seen : null;
  if (typeof gen !== "number" || t === null || !Number.isFinite(t)) return null;
  return Math.max(0, gen - t);
}

/** A probe's data is stale after three missed periods (at least 15 s). */
export function probeStaleAfterS(probe: ProbeEntry | null | undefined): number {
  const p = probe?.period_s;
  return Math.max(15, typeof p === "number" && Number.isFinite(p) ? 3 * p : 15);
}

export interface TileAge {
  ageS: number | null;
  stale: boolean;
}

/** Age and staleness of one data source: stale if the view is, or if its own age is past `limitS`. */
export function tileAge(ageS: unknown, limitS: number, state: LiveState, now: number): TileAge {
  const age = liveAge(ageS, state, now);
  const base = viewStale(state, now);
  if (age === null) return { ageS: viewAgeS(state, now), stale: base };
  return { ageS: age, stale: base || age > limitS };
}

/** Age of a service's freshest instance (its last heartbeat), or null when none was seen. */
export function serviceAgeS(view: View | null, name: string): number | null {
  const entry = view?.services?.[name];
  // the default stream carries the service's summary (its freshest last_seen), not its instances
  if (typeof entry?.last_seen === "number") return sourceAgeS(view, entry);
  const instances = entry?.instances;
  if (!instances) return null;
  let best: number | null = null;
  for (const inst of Object.values(instances)) {
    const a = sourceAgeS(view, inst);
    if (a !== null && (best === null || a < best)) best = a;
  }
  return best;
}

export const COMPONENTS = [
  { id: "postgres", label: "PostgreSQL", kind: "probe" },
  { id: "influxdb", label: "InfluxDB", kind: "probe" },
  { id: "mqtt", label: "MQTT broker", kind: "probe" },
  { id: "keycloak", label: "Keycloak", kind: "probe" },
  { id: "ingest", label: "Ingest", kind: "service" },
  { id: "evaluator", label: "Evaluator", kind: "service" },
  { id: "dispatcher", label: "Dispatcher", kind: "service" },
  { id: "delivery", label: "Delivery worker", kind: "service" },
] as const;

export type ComponentId = (typeof COMPONENTS)[number]["id"];

export function component(view: View | null, id: string): Component | null {
  return view?.health?.components?.[id] ?? null;
}

/** Instance counts of a service: from the health component, else counted from `services`. */
export function instanceCounts(view: View | null, id: string): { healthy: number | null; total: number | null } {
  const c = component(view, id);
  const h = c?.instances_healthy;
  const t = c?.instances_total;
  if (typeof h === "number" && typeof t === "number") return { healthy: h, total: t };
  const instances = view?.services?.[id]?.instances;
  if (!instances) return { healthy: null, total: null };
  const all = Object.values(instances);
  return { healthy: all.filter((i) => normStatus(i?.status) === "healthy").length, total: all.length };
}

/** Which chart an error event belongs on, by the service that reported it. */
export function chartForService(service: string | null | undefined): "ingest" | "alert" | "delivery" | null {
  switch (service) {
    case "ingest":
      return "ingest";
    case "evaluator":
    case "dispatcher":
      return "alert";
    case "delivery":
      return "delivery";
    default:
      return null;
  }
}

/** Status of a used/limit figure by threshold: < warn healthy, < crit degraded, else down. */
export function thresholdLevel(pct: number | null, warn = 75, crit = 90): Status {
  if (pct === null) return "unknown";
  if (pct >= crit) return "down";
  if (pct >= warn) return "degraded";
  return "healthy";
}
