/**
 * The dependency graph (route "/graph"): every component as a layered diagram (dagre), coloured by
 * state with icon + word, the edges a failure travels highlighted, live. A click (or Enter) on a
 * node opens its page, /component/<name>.
 */
import { useMemo } from "preact/hooks";
import { useLive } from "../../app/live";
import { navigate } from "../../app/router";
import { normStatus, viewStale } from "../../state/live/selectors";
import { STATUS_ICON } from "../operator/components/StatusBadge";
import { layout, layoutKey, NODE_H, nodeWidth } from "./layout";
import { edgeCarriesImpact, label, rootCauseText, roots } from "./model";

function path(points: { x: number; y: number }[]): string {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

export function GraphPage() {
  const { live, now } = useLive();
  const view = live.view;
  const graph = view?.graph;
  const names = Object.keys(graph?.nodes ?? {});
  const edges = (graph?.edges ?? []) as [string, string][];
  const key = layoutKey(names, edges);
  // The layout changes only when components or edges do; states recolour the same picture.
  // one width for all boxes: the longest name, and "impacted by <longest name> +N" below it
  const longest = Math.max(0, ...names.map((n) => label(n).length));
  const width = Math.max(nodeWidth("x".repeat(longest)), Math.ceil((longest + 16) * 7.2 + 24));
  const laid = useMemo(() => layout(names, edges, () => width), [key, width]);
  const stale = viewStale(live, now);
  const summary = rootCauseText(view);

  if (!graph) {
    return (
      <section class="graph-page" data-testid="graph-page" data-state="empty">
        <h2>Components and what they depend on</h2>
        <p class="muted">{view ? "This view has no dependency graph (an older aggregator?)." : "Waiting for the view…"}</p>
      </section>
    );
  }
  return (
    <section class={`graph-page${stale ? " stale" : ""}`} data-testid="graph-page" data-state="ready" aria-labelledby="graph-title">
      <h2 id="graph-title">Components and what they depend on</h2>
      <p class={`graph-summary${summary ? ` bad st-${roots(graph)[0]?.status ?? "unknown"}` : ""}`} data-testid="graph-summary" role="status">
        {summary ?? "✔ No root cause: nothing is down or degraded."}
      </p>
      <p class="muted graph-help">
        An arrow points from a component to one it needs. A <strong>root cause</strong> is down or degraded while all it
        needs is healthy; highlighted arrows show where its failure travels. Click a component for its page.
      </p>
      {/* h18: focusable, so a keyboard can scroll it where it is wider than a phone (axe) */}
      <div class="graph-scroll" tabIndex={0} role="region" aria-label="Dependency graph (scrolls sideways on a narrow screen)">
        <svg
          class="graph-svg"
          width={laid.width}
          height={laid.height}
          viewBox={`0 0 ${laid.width} ${laid.height}`}
          role="group"
          aria-label="Dependency graph"
          data-testid="graph-svg"
        >
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="arrow-head" />
            </marker>
            <marker id="arrow-hot" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="arrow-head hot" />
            </marker>
          </defs>
          {laid.edges.map((e) => {
            const hot = edgeCarriesImpact(graph, e.from, e.to);
            return (
              <path
                key={`${e.from}>${e.to}`}
                d={path(e.points)}
                class={`gedge${hot ? " hot" : ""}`}
                marker-end={`url(#${hot ? "arrow-hot" : "arrow"})`}
                data-testid={`edge-${e.from}-${e.to}`}
                data-impact={hot ? "true" : "false"}
              />
            );
          })}
          {laid.nodes.map((n) => {
            const node = graph.nodes?.[n.id];
            const status = normStatus(node?.status);
            const by = node?.impacted_by ?? [];
            const root = node?.root_cause === true;
            const reason = view?.health?.components?.[n.id]?.reason;
            const open = () => navigate(`/component/${encodeURIComponent(n.id)}`);
            // the visible second line, whole (its width is reserved by nodeWidth): the accessible name
            // starts with exactly what is visible, the details follow
            const sub = root ? "root cause" : by.length ? `impacted by ${label(by[0]!)}${by.length > 1 ? ` +${by.length - 1}` : ""}` : status;
            return (
              <g
                key={n.id}
                class={`gnode st-${status}${root ? " root" : ""}${by.length ? " impacted" : ""}`}
                transform={`translate(${n.x - n.width / 2},${n.y - NODE_H / 2})`}
                role="link"
                tabIndex={0}
                aria-describedby={`gdesc-${n.id}`}
                data-testid={`gnode-${n.id}`}
                data-status={status}
                data-root={root ? "true" : "false"}
                data-impacted-by={by.join(",")}
                onClick={open}
                onKeyDown={(ev) => {
                  if (ev.key === "Enter" || ev.key === " ") {
                    ev.preventDefault();
                    open();
                  }
                }}
              >
                <desc id={`gdesc-${n.id}`}>
                  {`${status}${reason ? `: ${reason}` : ""}${by.length > 1 ? `; impacted by ${by.map(label).join(", ")}` : ""}`}
                </desc>
                <rect width={n.width} height={NODE_H} rx="8" ry="8" class="gnode-box" />
                <text x="12" y="23" class="gnode-title">
                  <tspan class="gnode-icon" aria-hidden="true">{STATUS_ICON[status]}</tspan> {label(n.id)}
                </text>
                <text x="12" y="43" class="gnode-sub">{sub}</text>
              </g>
            );
          })}
        </svg>
      </div>
      {(graph.ignored ?? []).length > 0 && (
        <details class="graph-ignored" data-testid="graph-ignored">
          <summary>{graph.ignored!.length} declared dependencies left out</summary>
          <ul>
            {graph.ignored!.map((i) => (
              <li key={i.edge.join(">")}>
                <code>{i.edge[0]} → {i.edge[1]}</code>: {i.reason}
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}

export default GraphPage;
