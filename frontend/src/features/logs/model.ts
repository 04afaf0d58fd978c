/**
 * The log page's pure parts: its URL (every filter is in the query string, so a search can be shared
 * and survives a reload), the API and tail parameters it implies, and the list reducer that merges
 * pages and live-tail frames without duplicates.
 */
import type { EventItem } from "../../api/events";

export const SEVERITIES = ["debug", "info", "warning", "error", "critical"] as const;

/** Icon and word for each severity: never colour alone. */
export const SEVERITY_ICON: Record<string, string> = {
  critical: "‼", // h18: not ⛔, which no font on these machines has (it drew a box)
  error: "✖",
  warning: "▲",
  info: "ℹ",
  debug: "·",
};

export const RANGES = [
  ["-15m", "last 15 minutes"],
  ["-1h", "last hour"],
  ["-6h", "last 6 hours"],
  ["-24h", "last 24 hours"],
  ["-7d", "last 7 days"],
] as const;

export interface LogsQuery {
  /** As the API takes them: Unix seconds, ISO 8601, now or relative (-1h). `to` empty: now (open). */
  from: string;
  to: string;
  service: string;
  instance: string;
  /** That severity or worse; empty: any. */
  severity: string;
  type: string;
  q: string;
  tail: boolean;
}

export const DEFAULT_QUERY: LogsQuery = {
  from: "-1h",
  to: "",
  service: "",
  instance: "",
  severity: "",
  type: "",
  q: "",
  tail: true,
};

export function parseQuery(search: URLSearchParams): LogsQuery {
  const get = (k: string) => (search.get(k) ?? "").trim();
  const to = get("to");
  return {
    from: get("from") || DEFAULT_QUERY.from,
    to,
    service: get("service"),
    instance: get("instance"),
    severity: (SEVERITIES as readonly string[]).includes(get("severity")) ? get("severity") : "",
    type: get("type"),
    q: search.get("q") ?? "",
    // a range that ends in the past has nothing to tail; otherwise tail unless switched off
    tail: to === "" && get("tail") !== "off",
  };
}

/** The page's own URL query (defaults left out, so links stay short). */
export function toSearch(q: LogsQuery): URLSearchParams {
  const p = new URLSearchParams();
  if (q.from !== DEFAULT_QUERY.from) p.set("from", q.from);
  if (q.to) p.set("to", q.to);
  for (const k of ["service", "instance", "severity", "type"] as const) if (q[k]) p.set(k, q[k]);
  if (q.q.trim()) p.set("q", q.q);
  if (!q.tail && !q.to) p.set("tail", "off");
  return p;
}

export const PAGE = 100;

/** GET /operator/system/events parameters for a page (`before`: the previous page's `next`). */
export function apiParams(q: LogsQuery, before: string | null = null): URLSearchParams {
  const p = new URLSearchParams();
  p.set("from", q.from);
  if (q.to) p.set("to", q.to);
  for (const k of ["service", "instance", "severity", "type"] as const) if (q[k]) p.set(k, q[k]);
  if (q.q.trim()) p.set("q", q.q.trim());
  p.set("limit", String(PAGE));
  if (before) p.set("before", before);
  return p;
}

export function countsParams(q: LogsQuery): URLSearchParams {
  const p = new URLSearchParams();
  p.set("from", q.from);
  if (q.to) p.set("to", q.to);
  if (q.service) p.set("service", q.service);
  return p;
}

/** The live tail's filter (docs/websocket.md): the same filters as the page, none of the range. */
export function tailFilter(q: LogsQuery): Record<string, unknown> {
  const f: Record<string, unknown> = {};
  if (q.service) f.service = q.service.split(",").filter(Boolean);
  if (q.instance) f.instance = q.instance.split(",").filter(Boolean);
  if (q.type) f.type = q.type.split(",").filter(Boolean);
  if (q.severity) f.severity = q.severity;
  if (q.q.trim()) f.q = q.q.trim();
  return f;
}

/** The log page around `ts` (± 1 minute), for one service when given: what every error links to. */
export function logsAround(ts: number, service?: string | null, instance?: string | null): string {
  const p = new URLSearchParams();
  p.set("from", String(Math.floor(ts - 60)));
  p.set("to", String(Math.ceil(ts + 60)));
  if (service) p.set("service", service);
  if (instance) p.set("instance", instance);
  p.set("at", String(ts));
  return `/logs?${p.toString()}`;
}

// -- the list -----------------------------------------------------------------------------------

export interface LogsList {
  events: EventItem[];
  /** Cursor of the next (older) page; null: no more. */
  next: string | null;
  loading: boolean;
  error: string | null;
  /** The first page has arrived. */
  loaded: boolean;
  /** Events the gateway did not send to this tail (over its rate), since the search started. */
  tailDropped: number;
  /** Events that arrived by the tail since the search started. */
  tailed: number;
}

export const emptyList: LogsList = {
  events: [],
  next: null,
  loading: false,
  error: null,
  loaded: false,
  tailDropped: 0,
  tailed: 0,
};

export type ListAction =
  | { type: "reset" }
  | { type: "loading" }
  | { type: "page"; events: EventItem[]; next: string | null; append: boolean }
  | { type: "tail"; events: EventItem[]; dropped: number }
  | { type: "error"; message: string };

/** What makes an event the same whether it came by the tail (no id yet) or from the store. */
export function eventKey(e: EventItem): string {
  return `${e.ts.toFixed(6)}|${e.service}|${e.instance ?? ""}|${e.type}|${e.message}`;
}

/** Most events the page keeps (the tail adds at the top; the oldest go past this). */
export const MAX_EVENTS = 5000;

export function listReducer(s: LogsList, a: ListAction): LogsList {
  switch (a.type) {
    case "reset":
      return { ...emptyList, loading: true };
    case "loading":
      return { ...s, loading: true, error: null };
    case "error":
      return { ...s, loading: false, error: a.message };
    case "page": {
      if (!a.append) {
        // the first page; tail events that arrived while it loaded stay on top (dropped if stored)
        const keys = new Set(a.events.map(eventKey));
        const early = s.events.filter((e) => !keys.has(eventKey(e)));
        return { ...s, events: [...early, ...a.events], next: a.next, loading: false, loaded: true, error: null };
      }
      const keys = new Set(s.events.map(eventKey));
      const older = a.events.filter((e) => !keys.has(eventKey(e)));
      return { ...s, events: [...s.events, ...older], next: a.next, loading: false, error: null };
    }
    case "tail": {
      const keys = new Set(s.events.slice(0, 500).map(eventKey));
      const fresh = a.events.filter((e) => !keys.has(eventKey(e)));
      if (fresh.length === 0 && a.dropped === 0) return s;
      fresh.sort((x, y) => y.ts - x.ts);
      let events = [...fresh, ...s.events];
      let next = s.next;
      if (events.length > MAX_EVENTS) {
        events = events.slice(0, MAX_EVENTS);
        next = null; // the page no longer holds a contiguous tail of the range: search to see more
      }
      return { ...s, events, next, tailDropped: s.tailDropped + a.dropped, tailed: s.tailed + fresh.length };
    }
  }
}
