import { describe, expect, it } from "vitest";
import { formatAt, parseAt, replayLabel, withAt } from "./at";

const NOW = 1796025600; // 2026-11-30T08:00:00Z

describe("parseAt: the formats of the history endpoints", () => {
  it("reads Unix seconds, with a fraction", () => {
    expect(parseAt("1796025600", NOW)).toBe(1796025600);
    expect(parseAt("1796025600.25", NOW)).toBe(1796025600.25);
  });
  it("reads ISO 8601 with Z, with an offset, and without one (UTC)", () => {
    expect(parseAt("2026-11-30T08:00:00Z", NOW)).toBe(1796025600);
    expect(parseAt("2026-11-30t08:00:00z", NOW)).toBe(1796025600);
    expect(parseAt("2026-11-30T09:30:00+01:30", NOW)).toBe(1796025600);
    expect(parseAt("2026-11-30T06:00:00-02:00", NOW)).toBe(1796025600);
    expect(parseAt("2026-11-30T08:00:00", NOW)).toBe(1796025600);
    expect(parseAt("2026-11-30", NOW)).toBe(1796025600 - 8 * 3600);
    expect(parseAt("2026-11-30T08:00:00.125Z", NOW)).toBeCloseTo(1796025600.125, 6);
  });
  it("reads now and times relative to now", () => {
    expect(parseAt("now", NOW)).toBe(NOW);
    expect(parseAt("-15m", NOW)).toBe(NOW - 900);
    expect(parseAt("-6h", NOW)).toBe(NOW - 6 * 3600);
    expect(parseAt("-7d", NOW)).toBe(NOW - 7 * 86400);
    expect(parseAt("-1w", NOW)).toBe(NOW - 7 * 86400);
  });
  it("says null for nothing and for what is not a time", () => {
    for (const bad of [null, undefined, "", "  ", "yesterday", "2026-02-30T00:00:00Z", "2026-11-30T25:00:00Z",
      "-15x", "12:00", "-5", "NaN", "1e9", "2026-11-30T08:00:00+0x:00"]) {
      expect(parseAt(bad, NOW), String(bad)).toBeNull();
    }
  });
});

describe("formatAt and withAt: the moment in a link", () => {
  it("writes UTC ISO 8601, milliseconds only when there are some, and reads back the same moment", () => {
    expect(formatAt(1796025600)).toBe("2026-11-30T08:00:00Z");
    expect(formatAt(1796025605.5)).toBe("2026-11-30T08:00:05.500Z");
    for (const t of [0, 1796025600, 1796025605.5, 1796025605.123]) {
      expect(parseAt(formatAt(t), NOW)).toBeCloseTo(t, 3);
    }
  });
  it("sets at first, keeps the other parameters, leaves the colons readable, and removes it", () => {
    const q = new URLSearchParams("wall=1&x=a b");
    expect(withAt(q, 1796025600)).toBe("?at=2026-11-30T08:00:00Z&wall=1&x=a+b");
    expect(withAt(new URLSearchParams("at=-5m&wall=1"), null)).toBe("?wall=1");
    expect(withAt(new URLSearchParams("at=now"), null)).toBe("");
    expect(new URLSearchParams(withAt(q, 1796025605.5)).get("at")).toBe("2026-11-30T08:00:05.500Z");
  });
});

describe("replayLabel", () => {
  it("is the local time alone today, with the local date on another day", () => {
    const d = new Date(2026, 10, 30, 3, 12, 5); // local time
    const t = d.getTime() / 1000;
    expect(replayLabel(t, t + 3600)).toBe("03:12:05");
    expect(replayLabel(t, t + 86400)).toBe("2026-11-30 03:12:05");
  });
});
