/**
 * Pure read-outs of the view's `graph` section (docs/view.md): labels, root-cause sentences, which
 * edges carry an impact. No DOM: tested with vitest. The layout (dagre) is in layout.ts, loaded with
 * the graph page only, so the dashboard's bundle does not carry it.
 */
import type { GraphSection, Status, View } from "../../api/types";
import { COMPONENTS, normStatus } from "../../state/live/selectors";
import "./graph.css";

const LABELS: Record<string, string> = Object.fromEntries(COMPONENTS.map((c) => [c.id, c.label]));

/** The display name of a component ("postgres" → "PostgreSQL"); unknown names as they are. */
export function label(name: string): string {
  return LABELS[name] ?? name;
}

export const SERVICE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export interface Impact {
  component: string;
  status: Status;
  impacts: string[];
}

/** Root causes, worst first (down before degraded), as the aggregator ordered them. */
export function roots(graph: GraphSection | null | undefined): Impact[] {
  return (graph?.roots ?? []).map((r) => ({
    component: r.component,
    status: normStatus(r.status),
    impacts: [...(r.impacts ?? [])],
  }));
}

function isService(view: View | null, name: string): boolean {
  const kind = view?.health?.components?.[name]?.kind;
  return kind === "service" || (kind === undefined && view?.services?.[name] != null);
}

/**
 * The status line's sentence: "PostgreSQL down — 3 services impacted; InfluxDB degraded", or null
 * when nothing is down or degraded.
 */
export function rootCauseText(view: View | null): string | null {
  const rs = roots(view?.graph);
  if (rs.length === 0) return null;
  return rs
    .map((r) => {
      const n = r.impacts.length;
      const noun = r.impacts.every((c) => isService(view, c)) ? "service" : "component";
      return `${label(r.component)} ${r.status}${n ? ` — ${n} ${noun}${n === 1 ? "" : "s"} impacted` : ""}`;
    })
    .join("; ");
}

/** "impacted by PostgreSQL" for a component, or null. */
export function impactedByText(view: View | null, name: string): string | null {
  const by = view?.graph?.nodes?.[name]?.impacted_by ?? [];
  return by.length ? `impacted by ${by.map(label).join(", ")}` : null;
}

export function isRoot(view: View | null, name: string): boolean {
  return view?.graph?.nodes?.[name]?.root_cause === true;
}

/**
 * An edge [a, b] (a needs b) carries an impact when a is impacted by a root cause that b is, or b is
 * that root: the path the failure travels, drawn highlighted.
 */
export function edgeCarriesImpact(graph: GraphSection | null | undefined, a: string, b: string): boolean {
  const nodes = graph?.nodes ?? {};
  const from = nodes[a]?.impacted_by ?? [];
  if (from.length === 0) return false;
  const to = nodes[b];
  if (to?.root_cause) return from.includes(b);
  const toBy = to?.impacted_by ?? [];
  const st = normStatus(to?.status);
  return (st === "down" || st === "degraded") && toBy.some((r) => from.includes(r));
}

/** What the graph page shows: the graph, and health for the reasons and the header. */
export const GRAPH_SECTIONS = ["health", "graph"];
