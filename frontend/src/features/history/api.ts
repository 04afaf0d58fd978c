/** Client of the history endpoints (docs/history.md): series over a range and state timelines. */
import { getToken } from "../../api/auth";
import type { SeriesPoint, Status } from "../../api/types";

export interface HistorySeries {
  from: number;
  to: number;
  step: number;
  series: Record<string, SeriesPoint[]>;
  relative_error?: Record<string, number>;
}

export interface StateInterval {
  status: Status;
  from: number;
  to: number | null;
  reason: string | null;
}

export interface HistoryStates {
  components: Record<string, StateInterval[]>;
  availability: Record<string, number | null>;
}

/** A failed history request, with the gateway's reason (e.g. "history is off: ..."). */
export class HistoryError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function get<T>(path: string, params: Record<string, string>): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = await getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const qs = new URLSearchParams(params).toString();
  const res = await fetch(`${path}${qs ? `?${qs}` : ""}`, { headers, credentials: "same-origin" });
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      const body = (await res.json()) as { message?: string };
      if (body.message) message = body.message;
    } catch {
      /* not JSON: keep the status */
    }
    throw new HistoryError(res.status, message);
  }
  return (await res.json()) as T;
}

export function fetchHistory(series: string[], from: number, to: number, step?: number): Promise<HistorySeries> {
  const p: Record<string, string> = { series: series.join(","), from: from.toFixed(3), to: to.toFixed(3) };
  if (step !== undefined) p.step = String(step);
  return get("/operator/system/history", p);
}

export function fetchStates(from: number, to: number): Promise<HistoryStates> {
  return get("/operator/system/history/states", { from: from.toFixed(3), to: to.toFixed(3) });
}

export interface HistoryStatus {
  enabled: boolean;
  message: string | null;
  retention_days: number | null;
}

let statusOnce: Promise<HistoryStatus> | null = null;

/** Whether history is on (asked once per page load; a failure is retried next time). */
export function fetchHistoryStatus(): Promise<HistoryStatus> {
  if (!statusOnce) {
    statusOnce = get<HistoryStatus>("/operator/system/history/status", {}).catch((e: unknown) => {
      statusOnce = null;
      throw e;
    });
  }
  return statusOnce;
}
