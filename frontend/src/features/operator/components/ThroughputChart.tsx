import type { View } from "../../../api/types";
import { chartForService } from "../../../state/live/selectors";
import { fmtCount, fmtDecimal, fmtMs, fmtRelErr, isoToTs } from "../../../utils/format";
import { logsAround } from "../../logs/model";
import { Figure } from "./Figure";
import { LiveChart, type MarkerLink } from "./LiveChart";

const RATES = [
  { id: "ingest", title: "Ingestion", series: "ingest_rate", field: "ingest_rate_per_sec", unit: "msg/s", color: "#4ea1ff" },
  { id: "alert", title: "Alerts created", series: "alert_rate", field: "alert_rate_per_sec", unit: "alerts/s", color: "#f0b429" },
  { id: "delivery", title: "Deliveries", series: "delivery_rate", field: "delivery_rate_per_sec", unit: "sent/s", color: "#3ecf8e" },
] as const;

const LATENCY_LINES = [
  { label: "p50", color: "#8ab4f8", unit: "ms" },
  { label: "p95", color: "#c58af9", unit: "ms" },
  { label: "p99", color: "#f28b82", unit: "ms" },
];

/** Error events (severity error/critical) as chart markers, grouped by the chart they belong to. */
export function errorMarkers(view: View | null): Record<"ingest" | "alert" | "delivery", number[]> {
  const out = { ingest: [] as number[], alert: [] as number[], delivery: [] as number[] };
  for (const e of view?.errors?.errors ?? []) {
    if (e.severity && e.severity !== "error" && e.severity !== "critical") continue;
    const chart = chartForService(e.service);
    const ts = typeof e.ts === "number" ? e.ts : isoToTs(e.timestamp);
    if (chart && ts !== null) out[chart].push(ts);
  }
  return out;
}

/** The same markers as links to the log page: the events around each one (± 1 min, its service). */
export function errorMarkerLinks(view: View | null): Record<"ingest" | "alert" | "delivery", MarkerLink[]> {
  const out = { ingest: [] as MarkerLink[], alert: [] as MarkerLink[], delivery: [] as MarkerLink[] };
  for (const e of view?.errors?.errors ?? []) {
    if (e.severity && e.severity !== "error" && e.severity !== "critical") continue;
    const chart = chartForService(e.service);
    const ts = typeof e.ts === "number" ? e.ts : isoToTs(e.timestamp);
    if (!chart || ts === null) continue;
    const at = typeof e.reporter_ts === "number" ? e.reporter_ts : ts;
    out[chart].push({
      ts,
      href: logsAround(at, e.service),
      label: `${e.service ?? "?"} ${e.type ?? "error"} at ${new Date(ts * 1000).toLocaleTimeString()}: the events around it`,
    });
  }
  return out;
}

export function ThroughputChart({ view, windowS, onZoom }: { view: View | null; windowS: number; onZoom?: (a: number, b: number) => void }) {
  const t = view?.metrics?.throughput;
  const lat = view?.metrics?.latency;
  const markers = errorMarkers(view);
  const links = errorMarkerLinks(view);
  const period = view?.metrics?.window_s ?? 60;
  return (
    <div class="charts">
      {RATES.map((r) => (
        <div class="chart-card" key={r.id} data-testid={`rate-${r.id}`}>
          <div class="chart-head">
            <span class="chart-title">
              <span class="swatch" style={{ background: r.color }} />
              {r.title}
            </span>
            <span class="chart-now">
              <Figure text={fmtDecimal(t?.[r.field])} value={t?.[r.field] ?? null} class="huge" testId={`rate-${r.id}-value`} />
              <span class="unit">{r.unit}</span>
            </span>
          </div>
          <div class="chart-note">
            avg over {period} s
            {markers[r.id].length > 0 && <span class="marker-note"> · ▼ {markers[r.id].length} error event(s)</span>}
          </div>
          <LiveChart
            series={[view?.series?.[r.series]]}
            lines={[{ label: r.title, color: r.color, unit: r.unit }]}
            markers={markers[r.id]}
            markerLinks={links[r.id]}
            windowS={windowS}
            onZoom={onZoom}
            testId={`chart-${r.id}`}
            label={`${r.title} per second, last 15 minutes`}
          />
        </div>
      ))}
      <div class="chart-card" data-testid="latency">
        <div class="chart-head">
          <span class="chart-title">InfluxDB write latency</span>
        </div>
        <div class="latency-figs">
          {(["p50", "p95", "p99"] as const).map((q, i) => (
            <span class="lat" key={q}>
              <span class="swatch" style={{ background: LATENCY_LINES[i]?.color }} />
              <span class="q">{q}</span>
              <Figure text={fmtMs(lat?.[`influx_write_${q}_ms`])} value={lat?.[`influx_write_${q}_ms`] ?? null} class="big" testId={`latency-${q}`} />
            </span>
          ))}
        </div>
        <div class="chart-note" data-testid="latency-bound">
          error bound {fmtRelErr(lat?.relative_error)} · {fmtCount(lat?.samples)} samples in {period} s
        </div>
        <LiveChart
          series={[view?.series?.write_p50, view?.series?.write_p95, view?.series?.write_p99]}
          lines={LATENCY_LINES}
          markers={[]}
          windowS={windowS}
          onZoom={onZoom}
          testId="chart-latency"
          label="Write latency p50, p95, p99, last 15 minutes"
        />
      </div>
    </div>
  );
}
