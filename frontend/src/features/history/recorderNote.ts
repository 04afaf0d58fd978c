/** The recorder's own figures for the dashboard's strip of opsdash parts (docs/history.md):
 * lag, buffer, drops, rows/s and database size, from its self-report in the view. */
import type { View } from "../../api/types";

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

export function recorderNote(view: View | null, id: string): string | null {
  if (id !== "opsdash-recorder" || !view) return null;
  const svc = (view.services as Record<string, { instances?: Record<string, { gauges?: Record<string, unknown> }> }> | undefined)?.[id];
  const gauges = Object.values(svc?.instances ?? {})[0]?.gauges ?? {};
  const rates = (view.metrics?.rates as Record<string, Record<string, unknown>> | undefined)?.[id] ?? {};
  const parts: string[] = [];
  const lag = num(gauges.lag_s);
  if (lag !== null) parts.push(`lag ${lag < 10 ? lag.toFixed(1) : Math.round(lag)} s`);
  const buffer = num(gauges.buffer);
  if (buffer !== null) parts.push(`buffer ${Math.round(buffer)}`);
  const rows = num(rates.rows_written);
  if (rows !== null) parts.push(`${rows < 10 ? rows.toFixed(1) : Math.round(rows)} rows/s`);
  const drops = num(rates.drops);
  if (drops !== null && drops > 0) parts.push(`${(drops * 60).toFixed(0)} dropped/min`);
  const size = num(gauges.db_size_mb);
  if (size !== null) parts.push(size >= 1024 ? `${(size / 1024).toFixed(1)} GB` : `${Math.round(size)} MB`);
  return parts.length ? parts.join(" · ") : null;
}
