import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { SeriesPoint } from "../../../api/types";
import { buildOptions, type Line, toColumns } from "../../../utils/uplot/options";

/** A marker that is also a link (to the log page around it). */
export interface MarkerLink {
  ts: number;
  href: string;
  label: string;
}

export interface LiveChartProps {
  series: (SeriesPoint[] | null | undefined)[];
  lines: Line[];
  markers: number[];
  /** Clickable markers: links placed over the chart at their times (drawn at every redraw). */
  markerLinks?: MarkerLink[];
  windowS: number;
  testId?: string;
  label: string;
  /** Drag to zoom into history (features/history); without it the chart does not select. */
  onZoom?: (a: number, b: number) => void;
}

/** Axis labels at 0.8 of the root size (11 px on a laptop, ~15 px on a 1080p wall, ~31 px in 4K). */
function axisStyle(): { fontPx: number; axisColor: string } {
  const cs = getComputedStyle(document.documentElement);
  const root = parseFloat(cs.fontSize) || 14;
  return { fontPx: Math.max(11, Math.round(root * 0.8)), axisColor: cs.getPropertyValue("--muted").trim() || "#8b949e" };
}

/**
 * A uPlot line chart created once, fed with `setData` on every update (no re-creation, no flicker),
 * resized with its box, destroyed on unmount.
 */
/** Markers closer than this (CSS px) share one link, so two links never overlap. */
const MARKER_GAP_PX = 14;

/** Put the marker links in view over the plot (inside uPlot's overlay, so they move with it). */
function placeMarkerLinks(u: uPlot, links: MarkerLink[]): void {
  let layer = u.over.querySelector<HTMLDivElement>(".chart-marker-links");
  if (!layer) {
    layer = document.createElement("div");
    layer.className = "chart-marker-links";
    u.over.appendChild(layer);
  }
  const [min, max] = [u.scales.x?.min ?? 0, u.scales.x?.max ?? 0];
  const placed = links
    .filter((m) => m.ts >= min && m.ts <= max)
    .map((m) => ({ m, x: u.valToPos(m.ts, "x") }))
    .sort((a, b) => a.x - b.x);
  // one link per cluster: the newest marker of markers closer than MARKER_GAP_PX
  const groups: { m: MarkerLink; x: number; n: number }[] = [];
  for (const p of placed) {
    const last = groups[groups.length - 1];
    if (last && p.x - last.x < MARKER_GAP_PX) {
      last.n += 1;
      if (p.m.ts >= last.m.ts) last.m = p.m;
    } else {
      groups.push({ ...p, n: 1 });
    }
  }
  const shown = groups.slice(-60);
  const want = shown.map((g) => `${g.m.href}@${Math.round(g.x)}#${g.n}`).join(" ");
  if (layer.dataset.key === want) return;
  layer.dataset.key = want;
  layer.replaceChildren(
    ...shown.map((g) => {
      const a = document.createElement("a");
      a.className = "chart-marker";
      a.href = g.m.href;
      a.textContent = "▼";
      const label = g.n > 1 ? `${g.m.label} (and ${g.n - 1} more close by)` : g.m.label;
      a.title = label;
      a.setAttribute("aria-label", label);
      a.dataset.testid = "chart-marker";
      a.style.left = `${g.x}px`;
      return a;
    }),
  );
}

export function LiveChart({ series, lines, markers, markerLinks, windowS, testId, label, onZoom }: LiveChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const markersRef = useRef<number[]>(markers);
  const linksRef = useRef<MarkerLink[]>(markerLinks ?? []);
  linksRef.current = markerLinks ?? [];
  const latestRef = useRef<number | null>(null);
  const zoomRef = useRef(onZoom);
  zoomRef.current = onZoom;
  const data = toColumns(series);
  markersRef.current = markers;
  latestRef.current = data[0].length ? (data[0][data[0].length - 1] ?? null) : null;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts = buildOptions({
      width: el.clientWidth,
      height: el.clientHeight,
      lines,
      windowS,
      markers: () => markersRef.current,
      latestX: () => latestRef.current,
      nowS: () => Date.now() / 1000,
      ...axisStyle(),
      onSelect: onZoom ? (a, b) => zoomRef.current?.(a, b) : undefined,
    });
    if (markerLinks) {
      opts.hooks = { ...opts.hooks, draw: [...(opts.hooks?.draw ?? []), (p: uPlot) => placeMarkerLinks(p, linksRef.current)] };
    }
    const u = new uPlot(opts, toColumns(series) as uPlot.AlignedData, el);
    plot.current = u;
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
      plot.current = null;
    };
    // Created once: later data goes through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  });

  // An image, unless it holds marker links: an img's children are hidden from assistive technology
  // (axe: nested-interactive), so then it is a labelled group whose links can be reached.
  return <div class="chart" ref={box} data-testid={testId} role={markerLinks ? "group" : "img"} aria-label={label} />;
}
