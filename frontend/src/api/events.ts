/**
 * REST client of the stored events (design.md section 11): GET /operator/system/events and
 * /operator/system/events/counts. Errors carry the gateway's message (a 400 names the parameter).
 */

export type Severity = "debug" | "info" | "warning" | "error" | "critical";

/** One event as the API and the live tail give it (`id` is null for a tailed event not yet stored). */
export interface EventItem {
  id: number | null;
  ts: number;
  timestamp: string;
  service: string;
  instance: string | null;
  type: string;
  severity: Severity | string;
  message: string;
  attrs: Record<string, string>;
}

export interface EventsPage {
  events: EventItem[];
  next: string | null;
}

export interface ErrorCounts {
  from: number;
  to: number;
  total: number;
  by_service: Record<string, number>;
  by_type: Record<string, number>;
  by_severity: Record<string, number>;
}

export class EventsApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly parameter: string | null = null,
  ) {
    super(message);
  }
}

async function getJson<T>(url: string, token: string | null, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, { headers, credentials: "same-origin", signal });
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    let parameter: string | null = null;
    try {
      const body = (await res.json()) as { message?: string; reason?: string; parameter?: string };
      message = body.message ?? body.reason ?? message;
      parameter = body.parameter ?? null;
    } catch {
      /* not JSON */
    }
    throw new EventsApiError(res.status, message, parameter);
  }
  return (await res.json()) as T;
}

export function fetchEvents(params: URLSearchParams, token: string | null, signal?: AbortSignal): Promise<EventsPage> {
  return getJson(`/operator/system/events?${params.toString()}`, token, signal);
}

export function fetchErrorCounts(params: URLSearchParams, token: string | null, signal?: AbortSignal): Promise<ErrorCounts> {
  return getJson(`/operator/system/events/counts?${params.toString()}`, token, signal);
}

/**
 * Whether the gateway has a history database (`history.enabled` of /healthz, always served): without
 * one the page says so instead of asking for events (a 404 the browser would log as an error).
 * Unknown (an older gateway, no answer): assume on and let the endpoints answer.
 */
export async function historyEnabled(): Promise<boolean> {
  try {
    const res = await fetch("/healthz", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) return true;
    const body = (await res.json()) as { history?: { enabled?: boolean } };
    return body.history?.enabled !== false;
  } catch {
    return true;
  }
}
