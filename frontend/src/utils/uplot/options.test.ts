import { describe, expect, it } from "vitest";
import { buildOptions, tickSpace, toColumns, windowRange, withAlpha } from "./options";

describe("uPlot data", () => {
  it("aligns series on the first one's timestamps and keeps unknown as null", () => {
    const cols = toColumns([
      [[1, 10], [2, null], [3, 30]],
      [[1, 1], [3, 3]],
      undefined,
    ]);
    expect(cols).toEqual([[1, 2, 3], [10, null, 30], [1, null, 3], [null, null, null]]);
  });
  it("slides a fixed window that ends at the newest point", () => {
    expect(windowRange(1000, 900, 5000)).toEqual([100, 1000]);
    expect(windowRange(null, 900, 5000)).toEqual([4100, 5000]);
  });
});

describe("axes", () => {
  it("space ticks by label size, wider on a narrow chart", () => {
    expect(tickSpace("x", 800, 11)).toBeCloseTo(60.5);
    expect(tickSpace("x", 250, 11)).toBeCloseTo(90.75);
    expect(tickSpace("x", 1600, 30)).toBe(165);
    // a 280 px phone chart with 11 px labels: at most 3 time labels
    expect(Math.floor(280 / tickSpace("x", 280, 11))).toBeLessThanOrEqual(3);
    // a short phone chart still gets a scale: at least 0 and one more label on a 70 px plot
    expect(tickSpace("y", 70, 11)).toBeLessThan(35);
  });
  it("scale labels and axis size with the font, in the theme colour", () => {
    const o = buildOptions({ width: 400, height: 100, lines: [], windowS: 900, markers: () => [], latestX: () => null, nowS: () => 0, fontPx: 30, axisColor: "#57606a" });
    expect(o.axes?.[0]?.font).toBe("30px system-ui, sans-serif");
    expect(o.axes?.[0]?.size).toBe(75);
    expect(o.axes?.[1]?.stroke).toBe("#57606a");
    expect(withAlpha("#57606a", 0.5)).toBe("rgba(87,96,106,0.5)");
    expect(withAlpha("red", 0.5)).toBe("red");
  });
});
