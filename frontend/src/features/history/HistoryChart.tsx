import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { SeriesPoint } from "../../api/types";
import { type Line, toColumns } from "../../utils/uplot/options";

export interface HistoryChartProps {
  series: (SeriesPoint[] | null | undefined)[];
  lines: Line[];
  from: number;
  to: number;
  /** Drag over the chart: zoom to [a, b] (Grafana-style). */
  onZoom: (a: number, b: number) => void;
  testId?: string;
  label: string;
}

const AXIS = { stroke: "#8b949e", grid: { stroke: "rgba(139,148,158,0.12)", width: 1 }, ticks: { show: false } };

function fmtValue(v: number | null | undefined, unit: string): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "no data";
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${unit}`;
}

/** uPlot options of a past range: fixed x range, hover legend (time and values), drag to zoom. */
export function historyOptions(width: number, height: number, lines: Line[], from: number, to: number,
                               onZoom: (a: number, b: number) => void): uPlot.Options {
  return {
    width: Math.max(100, width),
    height: Math.max(60, height),
    legend: { show: true, live: true },
    cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 6 } },
    select: { show: true, left: 0, top: 0, width: 0, height: 0 },
    padding: [8, 18, 0, 0],
    scales: {
      x: { time: true, range: () => [from, to] },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] },
    },
    axes: [
      { ...AXIS, size: 28, font: "11px system-ui, sans-serif" },
      { ...AXIS, size: 44, font: "11px system-ui, sans-serif" },
    ],
    series: [
      { label: "time" },
      ...lines.map((l) => ({
        label: l.label,
        stroke: l.color,
        width: 1.5,
        fill: lines.length === 1 ? `${l.color}22` : undefined,
        spanGaps: false,
        points: { show: false },
        value: (_u: uPlot, v: number | null) => fmtValue(v, l.unit),
      })),
    ],
    hooks: {
      setSelect: [
        (u: uPlot) => {
          const w = u.select.width;
          if (w > 0) {
            const a = u.posToVal(u.select.left, "x");
            const b = u.posToVal(u.select.left + w, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onZoom(a, b);
          }
        },
      ],
    },
  };
}

/** A past range of one or more series: created per range (a new range is a new chart), hover shows
 * the time and the values, a drag zooms in. */
export function HistoryChart({ series, lines, from, to, onZoom, testId, label }: HistoryChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  const data = toColumns(series);
  const points = data.slice(1).reduce((n, col) => n + col.filter((v) => v !== null).length, 0);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const u = new uPlot(historyOptions(el.clientWidth, el.clientHeight, lines, from, to,
                                       (a, b) => zoom.current(a, b)), data as uPlot.AlignedData, el);
    let ro: ResizeObserver | null = null;
    if (typeof ResizeObserver !== "undefined") {
      ro = new ResizeObserver(() => {
        const w = el.clientWidth;
        const h = el.clientHeight;
        if (w > 0 && h > 0 && (w !== u.width || h !== u.height)) u.setSize({ width: w, height: h });
      });
      ro.observe(el);
    }
    return () => {
      ro?.disconnect();
      u.destroy();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [from, to, JSON.stringify(data)]);

  return (
    <div class="chart history-chart" ref={box} data-testid={testId} data-points={points} role="img"
      aria-label={label} />
  );
}
