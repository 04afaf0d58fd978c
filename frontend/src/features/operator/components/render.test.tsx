import { render } from "preact";
import { afterEach, describe, expect, it } from "vitest";
import type { View } from "../../../api/types";
import { initialState, type LiveState } from "../../../state/live/reducer";
import { CapacityGauges } from "./CapacityGauges";
import { ErrorFeed } from "./ErrorFeed";
import { ServiceHealthGrid } from "./ServiceHealthGrid";
import { ThroughputChart } from "./ThroughputChart";

const NOW = 1_800_000_000_000;
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

const view: View = {
  meta: { seq: 5, series_len: 900, tick_s: 1, generated_at: 1764236400 },
  health: {
    status: "degraded",
    components: {
      postgres: { kind: "probe", status: "healthy", connections: 15, max_connections: 100, ts: 1764236399 },
      delivery: { kind: "service", status: "down", reason: "delivery-1: lost (Last Will)", instances_healthy: 0, instances_total: 1 },
      ingest: { kind: "service", status: "healthy", instances_healthy: 2, instances_total: 2 },
    },
  },
  metrics: { throughput: { ingest_rate_per_sec: 0 }, latency: { influx_write_p99_ms: 45.2, relative_error: 0.006 } },
  capacity: { disk: { used_pct: 91, total_volume_bytes: 100e9 } },
  errors: {
    errors: [
      { ts: 100, service: "ingest", type: "parse_error", message: "older" },
      { ts: 200, service: "delivery", type: "webhook_timeout", message: "newer", severity: "error" },
    ],
    counts: { delivery_failures_1h: 12 },
  },
  series: { ingest_rate: [[1, 5], [2, null]] },
};

const live: LiveState = { ...initialState, phase: "live", view, seq: 5, receivedAt: NOW };

describe("rendering", () => {
  it("shows status as icon + word, the reason, instance counts; unknown as unknown, 0 as 0", () => {
    const el = mount(<ServiceHealthGrid live={live} now={NOW + 500} />);
    const delivery = el.querySelector('[data-testid="comp-delivery"]')!;
    expect(delivery.getAttribute("data-status")).toBe("down");
    expect(delivery.textContent).toContain("✖");
    expect(delivery.textContent).toContain("Down");
    expect(delivery.querySelector('[data-testid="comp-delivery-reason"]')?.textContent).toContain("Last Will");
    expect(delivery.querySelector('[data-testid="comp-delivery-instances"]')?.textContent).toBe("0/1 healthy");
    // keycloak is absent from the view: unknown status, unknown figure, never 0
    const kc = el.querySelector('[data-testid="comp-keycloak"]')!;
    expect(kc.getAttribute("data-status")).toBe("unknown");
    expect(kc.querySelector('[data-testid="comp-keycloak-figure"]')?.textContent).toBe("unknown");
    // ingest rate really is 0
    expect(el.querySelector('[data-testid="comp-ingest-figure"]')?.textContent).toBe("0");
    expect(el.querySelector('[data-testid="comp-postgres-figure"]')?.textContent).toBe("15 / 100");
  });

  it("shows components beyond the seed's eight, such as opsdash's own parts", () => {
    const withOwn: View = {
      ...view,
      health: {
        ...view.health,
        components: {
          ...view.health!.components,
          "opsdash-aggregator": { kind: "service", status: "down", reason: "agg-1: lost (Last Will)", instances_healthy: 0, instances_total: 1 },
          "opsdash-gateway": { kind: "service", status: "healthy", instances_healthy: 1, instances_total: 1 },
        },
      },
    };
    const el = mount(<ServiceHealthGrid live={{ ...live, view: withOwn }} now={NOW + 500} />);
    const agg = el.querySelector('[data-testid="comp-opsdash-aggregator"]')!;
    expect(agg.getAttribute("data-status")).toBe("down");
    expect(agg.textContent).toContain("✖");
    expect(agg.textContent).toContain("Down");
    expect(agg.textContent).toContain("0/1");
    expect(agg.textContent).toContain("Last Will");
    expect(el.querySelector('[data-testid="comp-opsdash-gateway"]')?.textContent).toContain("Healthy");
    // the seed's eight are not repeated in the strip
    expect(el.querySelectorAll('[data-testid="comp-postgres"]').length).toBe(1);
  });

  it("greys tiles when the view is stale", () => {
    const el = mount(<ServiceHealthGrid live={live} now={NOW + 60_000} />);
    expect(el.querySelector('[data-testid="comp-ingest"]')?.getAttribute("data-stale")).toBe("true");
    expect(el.textContent).toContain("stale");
  });

  it("lists errors newest first with the 1-hour counts", () => {
    const el = mount(<ErrorFeed view={view} limit={10} />);
    const rows = [...el.querySelectorAll('[data-testid="error-row"]')].map((r) => r.textContent ?? "");
    expect(rows[0]).toContain("newer");
    expect(rows[1]).toContain("older");
    expect(el.querySelector('[data-testid="count-delivery_failures_1h"]')?.textContent).toContain("12");
    expect(el.querySelector('[data-testid="count-auth_failures_1h"]')?.textContent).toContain("unknown");
  });

  it("shows gauges with threshold level in words", () => {
    const el = mount(<CapacityGauges view={view} />);
    const disk = el.querySelector('[data-testid="gauge-disk"]')!;
    expect(disk.getAttribute("data-level")).toBe("down");
    expect(disk.textContent).toContain("critical");
    expect(el.querySelector('[data-testid="gauge-pgconn-value"]')?.textContent).toBe("unknown / unknown");
  });

  it("renders the charts and the latency with its error bound", () => {
    const el = mount(<ThroughputChart view={view} windowS={900} />);
    expect(el.querySelectorAll(".chart").length).toBe(4);
    expect(el.querySelector('[data-testid="latency-p99"]')?.textContent).toBe("45.2 ms");
    expect(el.querySelector('[data-testid="latency-p50"]')?.textContent).toBe("unknown");
    expect(el.querySelector('[data-testid="latency-bound"]')?.textContent).toContain("±0.6 %");
    expect(el.querySelector('[data-testid="rate-ingest-value"]')?.textContent).toBe("0");
    expect(el.querySelector('[data-testid="rate-alert-value"]')?.textContent).toBe("unknown");
  });
});
