/** Pure builders for uPlot: the data columns from view series, and the chart options. */
import type uPlot from "uplot";
import type { SeriesPoint } from "../../api/types";

export interface Line {
  label: string;
  color: string;
  unit: string;
}

/**
 * Columns for uPlot (`[xs, ys1, ys2, ...]`) from `[ts, value]` series, aligned on the first series'
 * timestamps; a missing or null value stays null (a gap in the line, never a drop to 0).
 */
export function toColumns(series: (SeriesPoint[] | null | undefined)[]): [number[], ...(number | null)[][]] {
  const first = series[0] ?? [];
  const xs = first.map((p) => p[0]);
  const cols: (number | null)[][] = series.map((s, i) => {
    if (i === 0) return first.map((p) => (typeof p[1] === "number" && Number.isFinite(p[1]) ? p[1] : null));
    const byTs = new Map<number, number | null>();
    for (const p of s ?? []) byTs.set(p[0], p[1]);
    return xs.map((x) => {
      const v = byTs.get(x);
      return typeof v === "number" && Number.isFinite(v) ? v : null;
    });
  });
  return [xs, ...cols];
}

/** The x range: a fixed-length window ending at the newest point (the window slides, never jumps). */
export function windowRange(maxX: number | null, windowS: number, nowS: number): [number, number] {
  const end = maxX ?? nowS;
  return [end - windowS, end];
}

export interface ChartOpts {
  width: number;
  height: number;
  lines: Line[];
  windowS: number;
  /** Read at draw time: timestamps (s) of error markers, and the x range's end. */
  markers: () => number[];
  latestX: () => number | null;
  nowS: () => number;
  /** Axis label size (px): the page's root size decides, so wall screens get large labels. */
  fontPx?: number;
  /** Axis label and grid colour (the theme's muted text colour). */
  axisColor?: string;
  /** Drag over the chart selects [a, b] (Unix s): zoom into history (features/history). */
  onSelect?: (a: number, b: number) => void;
}

/** `#rrggbb` with an alpha, as canvas understands it; other colour strings are returned as they are. */
export function withAlpha(hex: string, alpha: number): string {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) return hex;
  return `rgba(${parseInt(m[1]!, 16)},${parseInt(m[2]!, 16)},${parseInt(m[3]!, 16)},${alpha})`;
}

/**
 * Minimum pixels between ticks: fewer, wider-spaced ticks on a narrow (phone) chart and for large
 * labels, so they never crowd or overlap.
 */
export function tickSpace(axis: "x" | "y", plotDimPx: number, fontPx: number): number {
  // y: a label's height apart (charts are short: a wider spacing would leave one tick, "0");
  // x: the width of a time label, and half again on a narrow (phone) chart.
  if (axis === "y") return 2.2 * fontPx;
  const base = 5.5 * fontPx;
  return plotDimPx < 320 ? base * 1.5 : base;
}

export function buildOptions(o: ChartOpts): uPlot.Options {
  const px = o.fontPx ?? 11;
  const color = o.axisColor ?? "#8b949e";
  const font = `${px}px system-ui, sans-serif`;
  const AXIS = { stroke: color, grid: { stroke: withAlpha(color, 0.14), width: 1 }, ticks: { show: false } };
  return {
    width: Math.max(100, o.width),
    height: Math.max(60, o.height),
    legend: { show: false },
    cursor: { drag: { x: !!o.onSelect, y: false, setScale: false }, points: { size: 6 } },
    padding: [8, 18, 0, 0],
    scales: {
      x: { time: true, range: () => windowRange(o.latestX(), o.windowS, o.nowS()) },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] },
    },
    axes: [
      {
        ...AXIS, size: Math.round(px * 2.5), font, values: "{HH}:{mm}" as unknown as uPlot.Axis.Values,
        space: (_u: uPlot, _i: number, _min: number, _max: number, dim: number) => tickSpace("x", dim, px),
      },
      {
        ...AXIS, size: Math.round(px * 4), font,
        space: (_u: uPlot, _i: number, _min: number, _max: number, dim: number) => tickSpace("y", dim, px),
      },
    ],
    series: [
      {},
      ...o.lines.map((l) => ({
        label: l.label,
        stroke: l.color,
        width: 2,
        fill: o.lines.length === 1 ? `${l.color}22` : undefined,
        spanGaps: false,
        points: { show: false },
      })),
    ],
    hooks: {
      setSelect: [
        (u: uPlot) => {
          if (!o.onSelect || !(u.select.width > 0)) return;
          const a = u.posToVal(u.select.left, "x");
          const b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          o.onSelect(a, b);
        },
      ],
      draw: [
        (u: uPlot) => {
          const ts = o.markers();
          if (!ts.length) return;
          const { ctx } = u;
          const top = u.bbox.top;
          const bottom = top + u.bbox.height;
          const [min, max] = [u.scales.x?.min ?? 0, u.scales.x?.max ?? 0];
          ctx.save();
          ctx.strokeStyle = "rgba(248,81,73,0.9)";
          ctx.fillStyle = "rgba(248,81,73,0.95)";
          ctx.lineWidth = Math.max(1, devicePixelRatio);
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          for (const t of ts) {
            if (t < min || t > max) continue;
            const x = Math.round(u.valToPos(t, "x", true));
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, bottom);
            ctx.stroke();
            const s = 5 * devicePixelRatio;
            ctx.beginPath();
            ctx.moveTo(x - s, top);
            ctx.lineTo(x + s, top);
            ctx.lineTo(x, top + s * 1.4);
            ctx.closePath();
            ctx.fill();
          }
          ctx.restore();
        },
      ],
    },
  };
}
