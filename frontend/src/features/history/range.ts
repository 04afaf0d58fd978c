/** The time ranges of the range picker (pure). Live is pushed; every other range is read from history. */

export type RangeKey = "live" | "1h" | "6h" | "24h" | "7d";

export interface RangeChoice {
  key: RangeKey;
  label: string;
  seconds: number;
}

export const RANGES: RangeChoice[] = [
  { key: "live", label: "Live 15 min", seconds: 900 },
  { key: "1h", label: "1 h", seconds: 3600 },
  { key: "6h", label: "6 h", seconds: 6 * 3600 },
  { key: "24h", label: "24 h", seconds: 86400 },
  { key: "7d", label: "7 d", seconds: 7 * 86400 },
];

/** What the charts show: the live stream, or a fixed window of the past [from, to] (Unix s). */
export type TimeRange = { kind: "live" } | { kind: "past"; key: RangeKey | "zoom"; from: number; to: number };

export const LIVE: TimeRange = { kind: "live" };

export function rangeFor(key: RangeKey, nowS: number): TimeRange {
  if (key === "live") return LIVE;
  const r = RANGES.find((x) => x.key === key) ?? RANGES[0]!;
  return { kind: "past", key, from: nowS - r.seconds, to: nowS };
}

/** A drag over a chart zooms to [a, b]; a drag narrower than 10 s is a click, not a zoom. */
export function zoomTo(a: number, b: number): TimeRange | null {
  const from = Math.min(a, b);
  const to = Math.max(a, b);
  if (!(to - from >= 10)) return null;
  return { kind: "past", key: "zoom", from, to };
}

/** The share of [from, to] covered by each status, and the segments of a status bar. */
export interface Segment {
  status: string;
  from: number;
  to: number;
  reason: string | null;
}

export function segments(
  intervals: { status: string; from: number; to: number | null; reason: string | null }[],
  from: number,
  to: number,
): Segment[] {
  const out: Segment[] = [];
  for (const iv of intervals) {
    const a = Math.max(from, iv.from);
    const b = Math.min(to, iv.to ?? to);
    if (b > a) out.push({ status: iv.status, from: a, to: b, reason: iv.reason });
  }
  return out;
}

export function fmtAvailability(a: number | null | undefined): string {
  if (a === null || a === undefined || !Number.isFinite(a)) return "–";
  if (a >= 1) return "100 %";
  return `${(Math.floor(a * 10000) / 100).toFixed(2)} %`;
}

export function fmtWhen(ts: number): string {
  const d = new Date(ts * 1000);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
