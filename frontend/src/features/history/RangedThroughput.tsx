import { useState } from "preact/hooks";
import type { View } from "../../api/types";
import { useLive } from "../../app/live";
import { ThroughputChart } from "../operator/components/ThroughputChart";
import { HistoryCharts } from "./HistoryCharts";
import "./history.css";
import { RangePicker } from "./RangePicker";
import { useHistoryStatus } from "./useHistoryStatus";
import { LIVE, type RangeKey, rangeFor, type TimeRange, zoomTo } from "./range";

/** The throughput and latency charts with a range picker: live (pushed) or a past range (history). */
export function RangedThroughput({ view, windowS, initial = LIVE }: { view: View | null; windowS: number; initial?: TimeRange }) {
  const status = useHistoryStatus();
  const off = status && !status.enabled ? (status.message ?? "history is off") : null;
  const [range, setRange] = useState<TimeRange>(initial);
  // while replaying, the past ranges end at the moment shown, not at the wall's now
  const { replayAt } = useLive();
  const pick = (key: RangeKey) => setRange(rangeFor(key, replayAt ?? Date.now() / 1000));
  const zoom = (a: number, b: number) => {
    const z = zoomTo(a, b);
    if (z && !off) setRange(z);
  };
  return (
    <div class="ranged">
      <RangePicker range={off ? LIVE : range} onPick={pick} off={off} replay={replayAt !== null} />
      {range.kind === "live" || off ? (
        <ThroughputChart view={view} windowS={windowS} onZoom={zoom} />
      ) : (
        <HistoryCharts from={range.from} to={range.to} onZoom={zoom} />
      )}
    </div>
  );
}
