import { useEffect, useState } from "preact/hooks";
import { fetchHistory, type HistorySeries } from "./api";
import { HistoryChart } from "./HistoryChart";
import { fmtWhen } from "./range";

const RATES = [
  { id: "ingest", title: "Ingestion", series: "ingest_rate", unit: "msg/s", color: "#4ea1ff" },
  { id: "alert", title: "Alerts created", series: "alert_rate", unit: "alerts/s", color: "#f0b429" },
  { id: "delivery", title: "Deliveries", series: "delivery_rate", unit: "sent/s", color: "#3ecf8e" },
] as const;
const LATENCY = [
  { label: "p50", series: "write_p50", color: "#8ab4f8", unit: "ms" },
  { label: "p95", series: "write_p95", color: "#c58af9", unit: "ms" },
  { label: "p99", series: "write_p99", color: "#f28b82", unit: "ms" },
];
const NAMES = [...RATES.map((r) => r.series), ...LATENCY.map((l) => l.series)];

function mean(points: [number, number | null][] | undefined): number | null {
  const vs = (points ?? []).map((p) => p[1]).filter((v): v is number => typeof v === "number");
  return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : null;
}

function fmtStep(s: number): string {
  return s % 86400 === 0 ? `${s / 86400} d` : s % 3600 === 0 ? `${s / 3600} h` : s % 60 === 0 ? `${s / 60} min` : `${s} s`;
}

type Load = { state: "loading" } | { state: "error"; message: string } | { state: "ok"; data: HistorySeries };

/** The throughput and latency charts over a past range, read from the history API. */
export function HistoryCharts({ from, to, onZoom }: { from: number; to: number; onZoom: (a: number, b: number) => void }) {
  const [load, setLoad] = useState<Load>({ state: "loading" });
  useEffect(() => {
    let gone = false;
    setLoad({ state: "loading" });
    fetchHistory(NAMES, from, to)
      .then((data) => !gone && setLoad({ state: "ok", data }))
      .catch((e: unknown) => !gone && setLoad({ state: "error", message: e instanceof Error ? e.message : String(e) }));
    return () => {
      gone = true;
    };
  }, [from, to]);

  if (load.state === "error") {
    return <div class="history-note" data-testid="history-error" role="status">History unavailable: {load.message}</div>;
  }
  if (load.state === "loading") {
    return <div class="history-note" data-testid="history-loading" role="status">Loading {fmtWhen(from)} – {fmtWhen(to)} …</div>;
  }
  const d = load.data;
  const bound = d.relative_error?.write_p99;
  return (
    <div class="charts" data-testid="history-charts" data-from={d.from} data-to={d.to}>
      {RATES.map((r) => {
        const avg = mean(d.series[r.series]);
        return (
          <div class="chart-card" key={r.id}>
            <div class="chart-head">
              <span class="chart-title">
                <span class="swatch" style={{ background: r.color }} />
                {r.title}
              </span>
              <span class="chart-now">
                <span class="fig huge">{avg === null ? "–" : avg.toFixed(avg >= 100 ? 0 : 1)}</span>
                <span class="unit">{r.unit}</span>
              </span>
            </div>
            <div class="chart-note">avg over the range · {fmtStep(d.step)} points</div>
            <HistoryChart
              series={[d.series[r.series]]}
              lines={[{ label: r.title, color: r.color, unit: r.unit }]}
              from={from}
              to={to}
              onZoom={onZoom}
              testId={`history-chart-${r.id}`}
              label={`${r.title} per second, ${fmtWhen(from)} to ${fmtWhen(to)}`}
            />
          </div>
        );
      })}
      <div class="chart-card">
        <div class="chart-head">
          <span class="chart-title">InfluxDB write latency</span>
        </div>
        <div class="chart-note">
          quantiles of all samples per {fmtStep(d.step)} (merged histograms)
          {bound !== undefined && ` · error bound ±${(bound * 100).toFixed(2)} %`}
        </div>
        <HistoryChart
          series={LATENCY.map((l) => d.series[l.series])}
          lines={LATENCY}
          from={from}
          to={to}
          onZoom={onZoom}
          testId="history-chart-latency"
          label={`Write latency p50, p95, p99, ${fmtWhen(from)} to ${fmtWhen(to)}`}
        />
      </div>
    </div>
  );
}
