import { useLive } from "../../app/live";
import { RangedThroughput } from "./RangedThroughput";
import { rangeFor } from "./range";
import { StatusTimeline } from "./StatusTimeline";
import { useHistoryStatus } from "./useHistoryStatus";

/** Route /history: the charts over any range (24 h to start with) and every component's timeline. */
export function HistoryPage() {
  const { live } = useLive();
  const view = live.view;
  const windowS = (view?.meta?.series_len ?? 900) * (view?.meta?.tick_s ?? 1);
  const status = useHistoryStatus();
  if (status === null) return <div class="history-note" role="status">Asking the gateway about history…</div>;
  if (!status.enabled) {
    return (
      <div class="history-note" role="status" data-testid="history-off-page">
        {status.message ?? "History is off."} The live dashboard works as before; set OPSDASH_HISTORY_URL to keep
        seven days.
      </div>
    );
  }
  return (
    <div class="history-page">
      <section aria-labelledby="history-charts-title">
        <h2 class="area-title" id="history-charts-title">Throughput and latency</h2>
        <RangedThroughput view={view} windowS={windowS} initial={rangeFor("24h", Date.now() / 1000)} />
      </section>
      <StatusTimeline />
    </div>
  );
}

export default HistoryPage;
