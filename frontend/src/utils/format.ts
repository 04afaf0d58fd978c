/**
 * Formatting of figures for display. Every function takes a possibly unknown value (null, undefined,
 * NaN, ±Infinity) and returns the word `UNKNOWN` for it: an unknown figure is never shown as 0.
 */

export const UNKNOWN = "unknown";

export type Maybe = number | null | undefined;

export function known(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

const groupFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function fixed(v: number, digits: number): string {
  return new Intl.NumberFormat("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(v);
}

/** An integer count with thousands separators: 1234567 → "1,234,567". */
export function fmtCount(v: Maybe): string {
  return known(v) ? groupFmt.format(Math.round(v)) : UNKNOWN;
}

/** A compact count for small spaces: 950 → "950", 12500 → "12.5k", 3400000 → "3.4M". */
export function fmtCompact(v: Maybe): string {
  if (!known(v)) return UNKNOWN;
  const a = Math.abs(v);
  const units: [number, string][] = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, suffix] of units) {
    if (a >= size) {
      const x = v / size;
      return `${Math.abs(x) >= 100 ? fixed(x, 0) : trimZeros(fixed(x, 1))}${suffix}`;
    }
  }
  return groupFmt.format(Math.round(v));
}

function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/**
 * A rate or other measured decimal with precision that fits its size: 3 significant figures at most
 * below 100, whole numbers above: 0 → "0", 0.0123 → "0.012", 2.3 → "2.30", 45.67 → "45.7", 125.5 → "126".
 */
export function fmtDecimal(v: Maybe): string {
  if (!known(v)) return UNKNOWN;
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 100) return groupFmt.format(Math.round(v));
  if (a >= 10) return fixed(v, 1);
  if (a >= 1) return fixed(v, 2);
  if (a >= 0.01) return fixed(v, 3).replace(/0$/, "");
  return v.toExponential(1);
}

/** Per-second rate with its unit: fmtRate(125.5, "msg") → "126 msg/s". */
export function fmtRate(v: Maybe, unit = ""): string {
  if (!known(v)) return UNKNOWN;
  return `${fmtDecimal(v)} ${unit ? `${unit}/s` : "/s"}`;
}

/** Milliseconds: 0.42 → "0.42 ms", 3.01 → "3.01 ms", 45.2 → "45.2 ms", 1250 → "1.25 s". */
export function fmtMs(v: Maybe): string {
  if (!known(v)) return UNKNOWN;
  if (Math.abs(v) >= 1000) return `${fmtDecimal(v / 1000)} s`;
  return `${fmtDecimal(v)} ms`;
}

/**
 * A duration in seconds, two units at most: 0.4 → "0.4 s", 12 → "12 s", 185 → "3 m 05 s",
 * 7380 → "2 h 03 m", 273600 → "3 d 04 h".
 */
export function fmtDuration(seconds: Maybe): string {
  if (!known(seconds)) return UNKNOWN;
  const neg = seconds < 0;
  let s = Math.abs(seconds);
  const sign = neg ? "-" : "";
  if (s < 10) return `${sign}${trimZeros(fixed(s, 1))} s`;
  s = Math.round(s);
  if (s < 60) return `${sign}${s} s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 3600) return `${sign}${Math.floor(s / 60)} m ${pad(s % 60)} s`;
  if (s < 86400) return `${sign}${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} m`;
  return `${sign}${Math.floor(s / 86400)} d ${pad(Math.floor((s % 86400) / 3600))} h`;
}

/** Data age: 0.3 → "now", 4.2 → "4 s ago", 185 → "3 m 05 s ago". */
export function fmtAge(seconds: Maybe): string {
  if (!known(seconds)) return UNKNOWN;
  if (seconds < 1) return "now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  return `${fmtDuration(seconds)} ago`;
}

/** Bytes in binary units: 512 → "512 B", 1536 → "1.5 KiB", 104857600 → "100 MiB". */
export function fmtBytes(v: Maybe): string {
  if (!known(v)) return UNKNOWN;
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let x = Math.abs(v);
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i += 1;
  }
  const sign = v < 0 ? "-" : "";
  if (i === 0) return `${sign}${Math.round(x)} B`;
  return `${sign}${x >= 100 ? fixed(x, 0) : trimZeros(fixed(x, 1))} ${units[i]}`;
}

/** A percentage value (already in percent): 57.74 → "57.7 %", 100 → "100 %". */
export function fmtPct(v: Maybe): string {
  if (!known(v)) return UNKNOWN;
  return `${Math.abs(v) >= 100 ? fixed(v, 0) : fixed(v, 1)} %`;
}

/** A relative error bound (a fraction): 0.0054 → "±0.54 %", 0.006 → "±0.6 %". */
export function fmtRelErr(v: Maybe): string {
  if (!known(v)) return UNKNOWN;
  return `±${trimZeros(fixed(v * 100, 2))} %`;
}

/** A ratio (0..1) as a percentage: 0.998 → "99.8 %". */
export function fmtRatio(v: Maybe): string {
  return known(v) ? fmtPct(v * 100) : UNKNOWN;
}

/** Used/limit as "15 / 100". */
export function fmtUsedOf(used: Maybe, limit: Maybe): string {
  return `${fmtCount(used)} / ${fmtCount(limit)}`;
}

/** Percent of used in limit, or null when either is unknown or the limit is not positive. */
export function pctOf(used: Maybe, limit: Maybe): number | null {
  if (!known(used) || !known(limit) || limit <= 0) return null;
  return (used / limit) * 100;
}

/** A Unix time (s) as local wall-clock time: "10:02:15". */
export function fmtClock(ts: Maybe): string {
  if (!known(ts)) return UNKNOWN;
  const d = new Date(ts * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Parse an ISO timestamp (the seed's `timestamp`, `checked_at`) into Unix seconds, or null. */
export function isoToTs(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

/** snake_case identifiers to words: "webhook_timeout" → "webhook timeout". */
export function humanize(id: string | null | undefined): string {
  return id ? id.replace(/_/g, " ") : UNKNOWN;
}
