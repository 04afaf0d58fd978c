import { describe, expect, it } from "vitest";
import { toColumns, windowRange } from "./options";

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
