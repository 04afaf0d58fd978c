/** The layered layout of the dependency graph (dagre), loaded with the graph page only. */
import dagre from "@dagrejs/dagre";

export interface LaidNode {
  id: string;
  x: number; // centre
  y: number;
  width: number;
  height: number;
}

export interface LaidEdge {
  from: string;
  to: string;
  points: { x: number; y: number }[];
}

export interface Layout {
  width: number;
  height: number;
  nodes: LaidNode[];
  edges: LaidEdge[];
}

export const NODE_W = 168;
export const NODE_H = 56;

/**
 * The layered layout: dependents above their dependencies (rank direction top → bottom), computed by
 * dagre. Depends only on the node names and edges, so callers memoise it on those.
 */
export function layout(names: string[], edges: [string, string][], widthOf: (id: string) => number = () => NODE_W): Layout {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 64, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of [...names].sort()) g.setNode(n, { width: widthOf(n), height: NODE_H });
  for (const [a, b] of edges) {
    if (!g.hasNode(a)) g.setNode(a, { width: widthOf(a), height: NODE_H });
    if (!g.hasNode(b)) g.setNode(b, { width: widthOf(b), height: NODE_H });
    g.setEdge(a, b);
  }
  dagre.layout(g);
  const info = g.graph();
  return {
    width: Math.ceil(info.width ?? 0),
    height: Math.ceil(info.height ?? 0),
    nodes: g.nodes().map((id) => {
      const n = g.node(id);
      return { id, x: n.x, y: n.y, width: n.width, height: n.height };
    }),
    edges: g.edges().map((e) => ({ from: e.v, to: e.w, points: (g.edge(e).points ?? []).map((p: { x: number; y: number }) => ({ x: p.x, y: p.y })) })),
  };
}

/** The key the layout is memoised on: node names and edges, sorted. */
export function layoutKey(names: string[], edges: [string, string][]): string {
  return JSON.stringify([[...names].sort(), edges.map((e) => `${e[0]}>${e[1]}`).sort()]);
}

/** A box wide enough for the title ("✔ " + label at ~8.6 px per character of 14 px type). */
export function nodeWidth(title: string): number {
  return Math.max(NODE_W, Math.ceil(title.length * 8.6 + 48));
}
