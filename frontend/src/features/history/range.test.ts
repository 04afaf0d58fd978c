import { describe, expect, it } from "vitest";
import { fmtAvailability, rangeFor, segments, zoomTo } from "./range";

describe("range", () => {
  it("past ranges end now", () => {
    expect(rangeFor("6h", 100000)).toEqual({ kind: "past", key: "6h", from: 100000 - 21600, to: 100000 });
    expect(rangeFor("live", 5)).toEqual({ kind: "live" });
  });
  it("a drag zooms; a click does not", () => {
    expect(zoomTo(200, 100)).toEqual({ kind: "past", key: "zoom", from: 100, to: 200 });
    expect(zoomTo(100, 105)).toBeNull();
  });
  it("segments are clipped to the range; the current interval runs to the end", () => {
    const ivs = [
      { status: "healthy", from: 0, to: 50, reason: null },
      { status: "down", from: 50, to: 60, reason: "probe failed" },
      { status: "healthy", from: 60, to: null, reason: null },
    ];
    expect(segments(ivs, 40, 100)).toEqual([
      { status: "healthy", from: 40, to: 50, reason: null },
      { status: "down", from: 50, to: 60, reason: "probe failed" },
      { status: "healthy", from: 60, to: 100, reason: null },
    ]);
  });
  it("availability never rounds up to 100 %", () => {
    expect(fmtAvailability(0.99999)).toBe("99.99 %");
    expect(fmtAvailability(1)).toBe("100 %");
    expect(fmtAvailability(null)).toBe("–");
  });
});
