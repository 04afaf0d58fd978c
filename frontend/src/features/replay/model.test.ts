import { describe, expect, it } from "vitest";
import { barRange, keyStep, pctOf, timeAt } from "./model";

const NOW = 1_796_025_600;

describe("time bar model", () => {
  it("shows the chosen span, or the smallest longer one holding the moment", () => {
    expect(barRange("1h", null, NOW)).toEqual({ key: "1h", from: NOW - 3600, to: NOW });
    expect(barRange("1h", NOW - 600, NOW).key).toBe("1h");
    expect(barRange("1h", NOW - 2 * 3600, NOW).key).toBe("6h");
    expect(barRange("6h", NOW - 30 * 3600, NOW).key).toBe("7d");
    expect(barRange("1h", NOW - 30 * 86400, NOW).key).toBe("7d"); // beyond retention: the longest
  });
  it("maps pixels to moments and back, inside the bar", () => {
    expect(timeAt(50, 200, 1000, 2000)).toBe(1250);
    expect(timeAt(-5, 200, 1000, 2000)).toBe(1000);
    expect(timeAt(500, 200, 1000, 2000)).toBe(2000);
    expect(timeAt(5, 0, 1000, 2000)).toBe(2000);
    expect(pctOf(1250, 1000, 2000)).toBe(25);
    expect(pctOf(900, 1000, 2000)).toBe(0);
    expect(pctOf(2100, 1000, 2000)).toBe(100);
  });
  it("steps by keys", () => {
    expect(keyStep("ArrowLeft", 3600)).toBe(-30);
    expect(keyStep("PageUp", 3600)).toBe(300);
    expect(keyStep("Home", 3600)).toBe("start");
    expect(keyStep("a", 3600)).toBeNull();
  });
});
