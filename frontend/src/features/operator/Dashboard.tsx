import { useLayoutEffect, useRef } from "preact/hooks";
import type { View } from "../../api/types";
import { useLive } from "../../app/live";
import type { LiveState } from "../../state/live/reducer";
import { probeStaleAfterS, sourceAgeS, tileAge, type TileAge } from "../../state/live/selectors";
import { CapacityGauges } from "./components/CapacityGauges";
import { ErrorFeed } from "./components/ErrorFeed";
import { PlatformTotals } from "./components/PlatformTotals";
import { ServiceHealthGrid } from "./components/ServiceHealthGrid";
import { RangedThroughput } from "../history/RangedThroughput";
import { Tile } from "./components/Tile";

/** The capacity panel is as old as its oldest source, and stale when any source is. */
function capacityAge(view: View | null, live: LiveState, now: number): TileAge {
  const cap = view?.capacity;
  const parts = [
    tileAge(sourceAgeS(view, cap?.disk), probeStaleAfterS(view?.probes?.disk), live, now),
    tileAge(sourceAgeS(view, cap?.postgres), probeStaleAfterS(view?.probes?.postgres), live, now),
    tileAge(sourceAgeS(view, cap?.influxdb), probeStaleAfterS(view?.probes?.influxdb), live, now),
  ];
  const ages = parts.map((p) => p.ageS).filter((a): a is number => a !== null);
  return { ageS: ages.length ? Math.max(...ages) : null, stale: parts.some((p) => p.stale) };
}

/**
 * On a wall (which never scrolls) a gauge or a platform total that does not fit whole in its tile is
 * hidden rather than cut in half (the error feed does the same for its rows); re-checked after
 * every render, so they come back when there is room again (fewer alerts firing).
 */
function useWholeItems(ref: { current: HTMLElement | null }, on: boolean): void {
  useLayoutEffect(() => {
    const root = ref.current;
    if (!root) return;
    for (const body of root.querySelectorAll<HTMLElement>(".area-cap .tile-body, .area-tot .tile-body")) {
      const items = Array.from(body.querySelectorAll<HTMLElement>(".gauge, .mem, .total"));
      for (const it of items) it.style.visibility = "";
      if (!on) continue;
      const bottom = body.getBoundingClientRect().bottom;
      for (const it of items) {
        if (it.getBoundingClientRect().bottom > bottom + 0.5) it.style.visibility = "hidden";
      }
    }
  });
}

/** Today's dashboard (route "/"): the seed's five sections from the shell's live view. */
export function Dashboard() {
  const { live, now, wall } = useLive();
  const view = live.view;
  const viewAge = tileAge(undefined, Infinity, live, now);
  const capAge = capacityAge(view, live, now);
  const aggAge = tileAge(sourceAgeS(view, view?.aggregates), probeStaleAfterS(view?.probes?.platform), live, now);
  const windowS = (view?.meta?.series_len ?? 900) * (view?.meta?.tick_s ?? 1);
  const ref = useRef<HTMLDivElement>(null);
  useWholeItems(ref, wall);
  return (
    <div class="grid dash" ref={ref}>
      <section class="area-health" aria-labelledby="health-title">
        <h2 class="area-title" id="health-title">Service health</h2>
        <ServiceHealthGrid live={live} now={now} />
      </section>
      <Tile title="Throughput · last 15 min" ageS={viewAge.ageS} stale={viewAge.stale} class="area-tp" testId="tile-throughput">
        <RangedThroughput view={view} windowS={windowS} />
      </Tile>
      <Tile title="Capacity" ageS={capAge.ageS} stale={capAge.stale} class="area-cap" testId="tile-capacity">
        <CapacityGauges view={view} />
      </Tile>
      <Tile title="Platform totals" ageS={aggAge.ageS} stale={aggAge.stale} class="area-tot" testId="tile-totals">
        <PlatformTotals view={view} />
      </Tile>
      <Tile title="Recent errors" ageS={viewAge.ageS} stale={viewAge.stale} class="area-err" testId="tile-errors">
        <ErrorFeed view={view} limit={12} fit={wall} />
      </Tile>
    </div>
  );
}

export default Dashboard;
