import { impactedByText, isRoot } from "../../graph/model";
import type { View } from "../../../api/types";
import { recorderNote } from "../../history/recorderNote";
import type { LiveState } from "../../../state/live/reducer";
import {
  COMPONENTS,
  component,
  instanceCounts,
  normStatus,
  probeStaleAfterS,
  serviceAgeS,
  tileAge,
  viewStale,
  liveAge,
  sourceAgeS,
} from "../../../state/live/selectors";
import { fmtAge, fmtCount, fmtDecimal, fmtMs, fmtUsedOf } from "../../../utils/format";
import { AlertMark } from "../../alerts/AlertMark";
import { Figure } from "./Figure";
import { StatusBadge } from "./StatusBadge";

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

interface KeyFigure {
  main: string;
  value?: unknown;
  unit: string;
  sub: string | null;
}

/** The one figure that matters for each component (seed: "Key Metrics"), and a second line. */
export function keyFigure(view: View | null, id: string): KeyFigure {
  const c = component(view, id);
  const t = view?.metrics?.throughput;
  const lat = c?.latency_ms != null ? `latency ${fmtMs(c.latency_ms)}` : null;
  switch (id) {
    case "postgres": {
      const cap = view?.capacity?.postgres;
      return { main: fmtUsedOf(c?.connections ?? cap?.connections_used, c?.max_connections ?? cap?.connections_max), value: c?.connections ?? cap?.connections_used, unit: "connections", sub: lat };
    }
    case "influxdb":
      return { main: fmtCount(c?.file_count ?? view?.capacity?.influxdb?.file_count), value: c?.file_count ?? view?.capacity?.influxdb?.file_count, unit: "files", sub: lat };
    case "mqtt":
      return { main: fmtCount(c?.connected_clients), value: c?.connected_clients, unit: "clients", sub: lat };
    case "keycloak":
      return { main: fmtCount(c?.active_sessions), value: c?.active_sessions, unit: "sessions", sub: lat };
    case "ingest":
      return { main: fmtDecimal(t?.ingest_rate_per_sec ?? num(c?.messages_per_sec)), value: t?.ingest_rate_per_sec ?? num(c?.messages_per_sec), unit: "msg/s", sub: `queue ${fmtCount(c?.queue_depth)}` };
    case "evaluator":
      return { main: fmtDecimal(t?.rules_rate_per_sec ?? num(c?.rules_per_sec)), value: t?.rules_rate_per_sec ?? num(c?.rules_per_sec), unit: "rules/s", sub: `alerts ${fmtDecimal(t?.alert_rate_per_sec)}/s` };
    case "dispatcher":
      return { main: fmtDecimal(t?.routed_rate_per_sec ?? num(c?.alerts_per_sec)), value: t?.routed_rate_per_sec ?? num(c?.alerts_per_sec), unit: "alerts/s", sub: null };
    case "delivery":
      return { main: fmtCount(c?.pending_jobs), value: c?.pending_jobs, unit: "pending", sub: `sent ${fmtDecimal(t?.delivery_rate_per_sec)}/s` };
    default:
      return { main: "", unit: "", sub: null };
  }
}

/**
 * Every component of the view beyond the seed's eight, e.g. opsdash's own parts
 * (opsdash-aggregator, opsdash-probes, opsdash-gateway) or another service on the bus: a compact
 * strip, so the dashboard shows when part of opsdash itself is down.
 */
export function OtherComponents({ view }: { view: View | null }) {
  const known = new Set<string>(COMPONENTS.map((c) => c.id));
  const others = Object.entries(view?.health?.components ?? {})
    .filter(([id]) => !known.has(id))
    .sort(([a], [b]) => a.localeCompare(b));
  if (others.length === 0) return null;
  return (
    <ul class="other-components" aria-label="Other components" data-testid="other-components">
      {others.map(([id, c]) => {
        const status = normStatus(c?.status);
        const inst = c?.kind === "service" ? instanceCounts(view, id) : null;
        return (
          <li class={`ocomp st-${status}`} data-testid={`comp-${id}`} data-status={status} key={id}
              title={c?.reason ?? undefined}>
            <a class="ocomp-name" href={`/component/${encodeURIComponent(id)}`}>{id}</a>
            <AlertMark view={view} id={id} />
            <StatusBadge status={status} />
            {inst && inst.total !== null && <span class="ocomp-inst">{`${inst.healthy ?? "?"}/${inst.total}`}</span>}
            {status !== "healthy" && c?.reason && <span class="ocomp-reason">{c.reason}</span>}
            {recorderNote(view, id) && <span class="ocomp-inst" data-testid="recorder-note">{recorderNote(view, id)}</span>}
          </li>
        );
      })}
    </ul>
  );
}

export function ServiceHealthGrid({ live, now }: { live: LiveState; now: number }) {
  const view = live.view;
  return (
    <>
    <div class="health-grid" data-testid="health-grid">
      {COMPONENTS.map(({ id, label, kind }) => {
        const c = component(view, id);
        const status = normStatus(c?.status);
        const fig = keyFigure(view, id);
        let ageS: number | null;
        let stale: boolean;
        if (kind === "probe") {
          ({ ageS, stale } = tileAge(sourceAgeS(view, c), probeStaleAfterS(view?.probes?.[id]), live, now));
        } else {
          // A service's own freshness is judged by the aggregator (silence turns it down); the tile
          // greys only when the view itself is stale.
          ageS = liveAge(serviceAgeS(view, id) ?? sourceAgeS(view, c), live, now);
          stale = viewStale(live, now);
        }
        const inst = kind === "service" ? instanceCounts(view, id) : null;
        return (
          <article
            class={`hcard st-${status}${stale ? " stale" : ""}`}
            data-testid={`comp-${id}`}
            data-status={status}
            data-stale={stale}
            key={id}
          >
            <header>
              <h3 class="comp-name"><a href={`/component/${id}`}>{label}</a></h3>
              <AlertMark view={view} id={id} />
              <StatusBadge status={status} />
            </header>
            <div class="hcard-fig">
              <Figure text={fig.main} value={fig.value ?? null} class="big" testId={`comp-${id}-figure`} />
              <span class="unit">{fig.unit}</span>
            </div>
            <div class="hcard-sub">
              {inst && (
                <span class="inst" data-testid={`comp-${id}-instances`}>
                  {inst.total === null ? "instances unknown" : `${inst.healthy ?? "?"}/${inst.total} healthy`}
                </span>
              )}
              {fig.sub && <span>{fig.sub}</span>}
            </div>
            {impactedByText(view, id) && (
              <div class="impacted" data-testid={`comp-${id}-impacted`}>▲ {impactedByText(view, id)}</div>
            )}
            {isRoot(view, id) && <div class="root-mark" data-testid={`comp-${id}-root`}>◆ root cause</div>}
            {status !== "healthy" && (
              <div class="reason" data-testid={`comp-${id}-reason`} title={c?.reason ?? undefined}>
                {c?.reason ?? (c ? "no reason given" : "no data for this component")}
              </div>
            )}
            <footer>
              {stale && <span class="stale-word">‖ stale</span>}
              <span class="age" data-testid={`comp-${id}-age`}>
                {kind === "service" ? "seen" : "checked"} {fmtAge(ageS)}
              </span>
            </footer>
          </article>
        );
      })}
    </div>
    <OtherComponents view={view} />
    </>
  );
}
