import { render } from "preact";
import { afterEach, describe, expect, it } from "vitest";
import type { View } from "../../api/types";
import { initialState, type LiveState } from "../../state/live/reducer";
import { Header } from "../operator/components/Header";
import { ServiceHealthGrid } from "../operator/components/ServiceHealthGrid";

let root: HTMLElement;
function mount(node: preact.ComponentChild): HTMLElement {
  root = document.createElement("div");
  document.body.appendChild(root);
  render(node, root);
  return root;
}
afterEach(() => {
  render(null, root);
  root.remove();
});

const view = {
  meta: { seq: 3, generated_at: 1000 },
  health: {
    status: "down",
    components: {
      postgres: { kind: "probe", status: "down", reason: "connection refused" },
      dispatcher: { kind: "service", status: "degraded", reason: "postgres unreachable" },
      delivery: { kind: "service", status: "healthy" },
      ingest: { kind: "service", status: "healthy" },
    },
  },
  graph: {
    nodes: {
      postgres: { status: "down", impacted_by: [], root_cause: true },
      dispatcher: { status: "degraded", impacted_by: ["postgres"] },
      delivery: { status: "healthy", impacted_by: ["postgres"] },
      ingest: { status: "healthy", impacted_by: [] },
    },
    edges: [["dispatcher", "postgres"], ["delivery", "postgres"]],
    roots: [{ component: "postgres", status: "down", impacts: ["delivery", "dispatcher"] }],
  },
} as unknown as View;

const live: LiveState = { ...initialState, phase: "live", view, seq: 3, receivedAt: 1_000_000 };

describe("root causes on the dashboard", () => {
  it("tiles say what they are impacted by, and which is the root", () => {
    const el = mount(<ServiceHealthGrid live={live} now={1_000_500} />);
    expect(el.querySelector('[data-testid="comp-delivery-impacted"]')?.textContent).toBe("▲ impacted by PostgreSQL");
    expect(el.querySelector('[data-testid="comp-dispatcher-impacted"]')?.textContent).toBe("▲ impacted by PostgreSQL");
    expect(el.querySelector('[data-testid="comp-ingest-impacted"]')).toBeNull();
    expect(el.querySelector('[data-testid="comp-postgres-root"]')?.textContent).toBe("◆ root cause");
  });

  it("the status line names the root causes", () => {
    const el = mount(<Header live={live} now={1_000_500} wall={false} title="x" controls={null} />);
    const line = el.querySelector('[data-testid="root-cause"]');
    expect(line?.textContent).toBe("PostgreSQL down — 2 services impacted");
    expect(line?.getAttribute("href")).toBe("/graph");
  });
});
