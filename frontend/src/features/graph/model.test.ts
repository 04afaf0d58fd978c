import { describe, expect, it } from "vitest";
import type { View } from "../../api/types";
import { layout, layoutKey } from "./layout";
import { edgeCarriesImpact, impactedByText, isRoot, label, rootCauseText } from "./model";

const EDGES: [string, string][] = [
  ["ingest", "mqtt"], ["ingest", "influxdb"], ["evaluator", "influxdb"],
  ["evaluator", "postgres"], ["dispatcher", "postgres"], ["delivery", "postgres"],
];

function view(): View {
  const svc = (status: string) => ({ kind: "service", status });
  const probe = (status: string) => ({ kind: "probe", status });
  return {
    health: {
      components: {
        postgres: probe("down"), influxdb: probe("healthy"), mqtt: probe("healthy"),
        ingest: svc("healthy"), evaluator: svc("degraded"), dispatcher: svc("down"), delivery: svc("healthy"),
      },
    },
    graph: {
      nodes: {
        postgres: { status: "down", impacted_by: [], root_cause: true },
        influxdb: { status: "healthy", impacted_by: [] },
        mqtt: { status: "healthy", impacted_by: [] },
        ingest: { status: "healthy", impacted_by: [] },
        evaluator: { status: "degraded", impacted_by: ["postgres"] },
        dispatcher: { status: "down", impacted_by: ["postgres"] },
        delivery: { status: "healthy", impacted_by: ["postgres"] },
      },
      edges: EDGES,
      roots: [{ component: "postgres", status: "down", impacts: ["delivery", "dispatcher", "evaluator"] }],
    },
  } as View;
}

describe("graph model", () => {
  it("names root causes in the status line", () => {
    expect(rootCauseText(view())).toBe("PostgreSQL down — 3 services impacted");
    const v = view();
    v.graph!.roots = [
      { component: "postgres", status: "down", impacts: ["delivery"] },
      { component: "influxdb", status: "degraded", impacts: [] },
    ];
    expect(rootCauseText(v)).toBe("PostgreSQL down — 1 service impacted; InfluxDB degraded");
    v.graph!.roots = [];
    expect(rootCauseText(v)).toBeNull();
    expect(rootCauseText(null)).toBeNull();
  });

  it("says what a tile is impacted by", () => {
    expect(impactedByText(view(), "delivery")).toBe("impacted by PostgreSQL");
    expect(impactedByText(view(), "ingest")).toBeNull();
    expect(isRoot(view(), "postgres")).toBe(true);
    expect(isRoot(view(), "dispatcher")).toBe(false);
    expect(label("billing")).toBe("billing");
  });

  it("highlights the edges the failure travels", () => {
    const g = view().graph;
    expect(edgeCarriesImpact(g, "delivery", "postgres")).toBe(true);
    expect(edgeCarriesImpact(g, "evaluator", "postgres")).toBe(true);
    expect(edgeCarriesImpact(g, "evaluator", "influxdb")).toBe(false);
    expect(edgeCarriesImpact(g, "ingest", "mqtt")).toBe(false);
  });

  it("lays out dependents above their dependencies", () => {
    const names = ["postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator", "dispatcher", "delivery"];
    const l = layout(names, EDGES);
    const y = Object.fromEntries(l.nodes.map((n) => [n.id, n.y]));
    expect(l.nodes).toHaveLength(8);
    for (const [a, b] of EDGES) expect(y[a]!).toBeLessThan(y[b]!);
    expect(l.edges).toHaveLength(EDGES.length);
    for (const e of l.edges) expect(e.points.length).toBeGreaterThanOrEqual(2);
    const xs = l.nodes.map((n) => `${n.x},${n.y}`);
    expect(new Set(xs).size).toBe(8); // no two nodes on top of each other
    expect(l.width).toBeGreaterThan(0);
    expect(layoutKey(names, EDGES)).toBe(layoutKey([...names].reverse(), [...EDGES].reverse()));
  });
});
