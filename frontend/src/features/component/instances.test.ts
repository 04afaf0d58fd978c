import { describe, expect, it } from "vitest";
import type { View } from "../../api/types";
import { parseSort, rows, sortParam, sortRows } from "./instances";

const view = {
  meta: { generated_at: 1000 },
  services: {
    delivery: {
      status: "degraded",
      instances: {
        "delivery-10": { status: "healthy", version: "2.4.1", boot_at: 400, last_seen: 999.5, restarts: 0, skew_s: 0.1, missing_intervals: 0, gauges: { pending_jobs: 3 } },
        "delivery-2": { status: "down", reason: "lost (Last Will)", version: "2.4.0", boot_at: 900, last_seen: 950, restarts: 2, skew_s: -3, missing_intervals: 4 },
        "delivery-1": { status: "degraded", reason: "pending_jobs 73 > 50", version: "2.4.1", last_seen: 999.8, restarts: 1, gauges: { pending_jobs: 73 } },
        "delivery-3": { status: "healthy", version: "2.4.1", boot_at: 100, last_seen: 999.9, restarts: 0, skew_s: 0 },
      },
    },
  },
} as unknown as View;

describe("instances table", () => {
  it("reads every figure, with uptime and ages on the aggregator's clock", () => {
    const r = rows(view, "delivery")!;
    const d2 = r.find((x) => x.name === "delivery-2")!;
    expect(d2).toMatchObject({ status: "down", reason: "lost (Last Will)", uptimeS: 100, lastSeenAgeS: 50, restarts: 2, skewS: -3, missing: 4 });
    expect(r.find((x) => x.name === "delivery-1")!.uptimeS).toBeNull(); // unknown, never 0
    expect(r.find((x) => x.name === "delivery-10")!.gauges).toEqual([["pending_jobs", 3]]);
    expect(rows(view, "ingest")).toBeNull();
  });

  it("puts the bad ones first by default, then by name (numeric)", () => {
    const names = sortRows(rows(view, "delivery")!).map((x) => x.name);
    expect(names).toEqual(["delivery-2", "delivery-1", "delivery-3", "delivery-10"]);
  });

  it("sorts by any column, unknowns last", () => {
    const r = rows(view, "delivery")!;
    expect(sortRows(r, "uptime", true).map((x) => x.name)).toEqual(["delivery-3", "delivery-10", "delivery-2", "delivery-1"]);
    expect(sortRows(r, "uptime", false).map((x) => x.name)).toEqual(["delivery-2", "delivery-10", "delivery-3", "delivery-1"]);
    expect(sortRows(r, "skew", true)[0]!.name).toBe("delivery-2");
    expect(sortRows(r, "name", false).map((x) => x.name)).toEqual(["delivery-1", "delivery-10", "delivery-2", "delivery-3"]);
  });

  it("keeps the sort in the URL", () => {
    expect(parseSort(null)).toEqual({ key: "status", desc: true });
    expect(parseSort("-uptime")).toEqual({ key: "uptime", desc: true });
    expect(parseSort("restarts")).toEqual({ key: "restarts", desc: false });
    expect(parseSort("bogus")).toEqual({ key: "status", desc: true });
    expect(sortParam("uptime", true)).toBe("-uptime");
  });
});
