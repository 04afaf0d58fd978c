/** Pure helpers of the time bar (features/replay/TimeBar.tsx): its range and positions on it. */

export const SPANS = [
  { key: "1h", label: "1 h", seconds: 3600 },
  { key: "6h", label: "6 h", seconds: 6 * 3600 },
  { key: "24h", label: "24 h", seconds: 86400 },
  { key: "7d", label: "7 d", seconds: 7 * 86400 },
] as const;
export type SpanKey = (typeof SPANS)[number]["key"];

/**
 * The range the bar shows, ending now: the chosen span, or the smallest longer one that holds the
 * moment shown (a link to yesterday opens on the 24 h or 7 d bar, with its moment on it).
 */
export function barRange(chosen: SpanKey, shownS: number | null, nowS: number): { key: SpanKey; from: number; to: number } {
  const start = SPANS.findIndex((s) => s.key === chosen);
  for (const s of SPANS.slice(Math.max(0, start))) {
    if (shownS === null || shownS >= nowS - s.seconds) return { key: s.key, from: nowS - s.seconds, to: nowS };
  }
  const last = SPANS[SPANS.length - 1]!;
  return { key: last.key, from: nowS - last.seconds, to: nowS };
}

/** The moment at `x` px of a bar `width` px wide over [from, to], inside the bar (never after `to`). */
export function timeAt(x: number, width: number, from: number, to: number): number {
  if (!(width > 0)) return to;
  const f = Math.min(1, Math.max(0, x / width));
  return from + f * (to - from);
}

/** Where `t` sits on the bar, in percent (clamped to the bar). */
export function pctOf(t: number, from: number, to: number): number {
  if (!(to > from)) return 100;
  return Math.min(100, Math.max(0, ((t - from) / (to - from)) * 100));
}

/** Keyboard steps on the bar: arrows a 120th of the range, Page keys a 12th. */
export function keyStep(key: string, span: number): number | "start" | "end" | null {
  switch (key) {
    case "ArrowLeft": case "ArrowDown": return -span / 120;
    case "ArrowRight": case "ArrowUp": return span / 120;
    case "PageDown": return -span / 12;
    case "PageUp": return span / 12;
    case "Home": return "start";
    case "End": return "end";
    default: return null;
  }
}
