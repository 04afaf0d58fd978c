/**
 * The instances table of a service's page: rows from `services.<name>.instances` (streamed only to
 * a client that asked for `services/<name>`), sorted by a column; by default the bad ones first.
 * Pure: tested with vitest.
 */
import type { Instance, Status, View } from "../../api/types";
import { normStatus } from "../../state/live/selectors";

/** Badness, as the aggregator ranks it (telemetry_bus/health.py): down, unknown, degraded, healthy. */
export const RANK: Record<Status, number> = { healthy: 0, degraded: 1, unknown: 2, down: 3 };

export interface Row {
  name: string;
  status: Status;
  reason: string | null;
  version: string | null;
  boot: string | null;
  uptimeS: number | null;
  restarts: number | null;
  lastSeenAgeS: number | null;
  skewS: number | null;
  missing: number | null;
  received: number | null;
  gauges: [string, number | null][];
  health: string | null;
}

export const SORT_KEYS = ["status", "name", "version", "uptime", "restarts", "last_seen", "skew", "missing"] as const;
export type SortKey = (typeof SORT_KEYS)[number];

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

export function rows(view: View | null, service: string): Row[] | null {
  const instances = view?.services?.[service]?.instances;
  if (!instances) return null;
  const gen = num(view?.meta?.generated_at);
  return Object.entries(instances).map(([name, i]: [string, Instance | null | undefined]) => {
    const bootAt = num(i?.boot_at);
    const lastSeen = num(i?.last_seen);
    return {
      name,
      status: normStatus(i?.status),
      reason: i?.reason ?? null,
      version: i?.version ?? null,
      boot: i?.boot ?? null,
      uptimeS: gen !== null && bootAt !== null ? Math.max(0, gen - bootAt) : null,
      restarts: num(i?.restarts),
      lastSeenAgeS: gen !== null && lastSeen !== null ? Math.max(0, gen - lastSeen) : null,
      skewS: num(i?.skew_s),
      missing: num(i?.missing_intervals),
      received: num(i?.received_intervals),
      gauges: Object.entries(i?.gauges ?? {}).map(([k, v]) => [k, num(v)] as [string, number | null]).sort(),
      health: i?.health ?? null,
    };
  });
}

function value(r: Row, key: SortKey): number | string | null {
  switch (key) {
    case "status": return RANK[r.status];
    case "name": return r.name;
    case "version": return r.version;
    case "uptime": return r.uptimeS;
    case "restarts": return r.restarts;
    case "last_seen": return r.lastSeenAgeS;
    case "skew": return r.skewS === null ? null : Math.abs(r.skewS);
    case "missing": return r.missing;
  }
}

/**
 * Sorted rows. `desc` for "status" puts the worst first (the default view). Unknown values (null)
 * always go last; ties keep the bad ones first, then by name.
 */
export function sortRows(input: Row[], key: SortKey = "status", desc = true): Row[] {
  const dir = desc ? -1 : 1;
  return [...input].sort((a, b) => {
    const va = value(a, key);
    const vb = value(b, key);
    if (va === null && vb !== null) return 1;
    if (vb === null && va !== null) return -1;
    if (va !== null && vb !== null && va !== vb) {
      const c = typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb));
      if (c !== 0) return c * dir;
    }
    return RANK[b.status] - RANK[a.status] || a.name.localeCompare(b.name, undefined, { numeric: true });
  });
}

/** "status" / "-uptime" in the URL's ?sort= ↔ (key, desc). Status sorts worst-first by default. */
export function parseSort(raw: string | null): { key: SortKey; desc: boolean } {
  if (!raw) return { key: "status", desc: true };
  const desc = raw.startsWith("-");
  const key = (desc ? raw.slice(1) : raw) as SortKey;
  if (!(SORT_KEYS as readonly string[]).includes(key)) return { key: "status", desc: true };
  return { key, desc };
}

export function sortParam(key: SortKey, desc: boolean): string {
  return `${desc ? "-" : ""}${key}`;
}
