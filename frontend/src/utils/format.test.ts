import { describe, expect, it } from "vitest";
import {
  fmtAge, fmtBytes, fmtCompact, fmtCount, fmtDecimal, fmtDuration, fmtMs, fmtPct, fmtRate,
  fmtRatio, fmtRelErr, fmtUsedOf, humanize, isoToTs, pctOf, UNKNOWN,
} from "./format";

const unknowns = [null, undefined, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

describe("unknown is never 0", () => {
  const fns = [fmtAge, fmtBytes, fmtCompact, fmtCount, fmtDecimal, fmtDuration, fmtMs, fmtPct, fmtRatio, fmtRelErr];
  it.each(fns.map((f) => [f.name, f] as const))("%s", (_name, f) => {
    for (const v of unknowns) expect(f(v)).toBe(UNKNOWN);
    expect(f(0)).not.toBe(UNKNOWN);
  });
  it("rate and used/limit", () => {
    expect(fmtRate(null, "msg")).toBe(UNKNOWN);
    expect(fmtUsedOf(15, null)).toBe(`15 / ${UNKNOWN}`);
    expect(pctOf(15, null)).toBeNull();
    expect(pctOf(15, 0)).toBeNull();
  });
});

describe("numbers", () => {
  it("counts with separators", () => {
    expect(fmtCount(0)).toBe("0");
    expect(fmtCount(1234567)).toBe("1,234,567");
    expect(fmtCount(12.6)).toBe("13");
  });
  it("compact counts", () => {
    expect(fmtCompact(950)).toBe("950");
    expect(fmtCompact(12500)).toBe("12.5k");
    expect(fmtCompact(3_000_000)).toBe("3M");
    expect(fmtCompact(250_000)).toBe("250k");
  });
  it("decimals by size", () => {
    expect(fmtDecimal(0)).toBe("0");
    expect(fmtDecimal(0.0123)).toBe("0.012");
    expect(fmtDecimal(2.3)).toBe("2.30");
    expect(fmtDecimal(45.67)).toBe("45.7");
    expect(fmtDecimal(125.5)).toBe("126");
    expect(fmtDecimal(12345.4)).toBe("12,345");
    expect(fmtDecimal(-3.5)).toBe("-3.50");
    expect(fmtRate(125.5, "msg")).toBe("126 msg/s");
  });
  it("milliseconds", () => {
    expect(fmtMs(0.42)).toBe("0.42 ms");
    expect(fmtMs(3.01)).toBe("3.01 ms");
    expect(fmtMs(45.2)).toBe("45.2 ms");
    expect(fmtMs(1250)).toBe("1.25 s");
  });
  it("percentages and error bounds", () => {
    expect(fmtPct(57.74)).toBe("57.7 %");
    expect(fmtPct(100)).toBe("100 %");
    expect(fmtPct(0)).toBe("0.0 %");
    expect(fmtRatio(0.998)).toBe("99.8 %");
    expect(fmtRelErr(0.0054)).toBe("±0.54 %");
    expect(fmtRelErr(0.006)).toBe("±0.6 %");
    expect(pctOf(15, 100)).toBe(15);
  });
});

describe("durations", () => {
  it("two units at most", () => {
    expect(fmtDuration(0)).toBe("0 s");
    expect(fmtDuration(0.4)).toBe("0.4 s");
    expect(fmtDuration(3.45)).toBe("3.5 s");
    expect(fmtDuration(12)).toBe("12 s");
    expect(fmtDuration(59.6)).toBe("1 m 00 s");
    expect(fmtDuration(185)).toBe("3 m 05 s");
    expect(fmtDuration(7380)).toBe("2 h 03 m");
    expect(fmtDuration(273600)).toBe("3 d 04 h");
    expect(fmtDuration(-12)).toBe("-12 s");
  });
  it("ages", () => {
    expect(fmtAge(0.3)).toBe("now");
    expect(fmtAge(4.9)).toBe("4 s ago");
    expect(fmtAge(185)).toBe("3 m 05 s ago");
  });
});

describe("bytes", () => {
  it("binary units", () => {
    expect(fmtBytes(0)).toBe("0 B");
    expect(fmtBytes(512)).toBe("512 B");
    expect(fmtBytes(1536)).toBe("1.5 KiB");
    expect(fmtBytes(104857600)).toBe("100 MiB");
    expect(fmtBytes(536870912)).toBe("512 MiB");
    expect(fmtBytes(1.5 * 1024 ** 3)).toBe("1.5 GiB");
    expect(fmtBytes(1024 ** 6)).toBe("1,024 PiB");
  });
});

describe("text", () => {
  it("humanizes identifiers and parses ISO times", () => {
    expect(humanize("webhook_timeout")).toBe("webhook timeout");
    expect(humanize(null)).toBe(UNKNOWN);
    expect(isoToTs("2026-11-27T10:02:15Z")).toBe(Date.UTC(2026, 10, 27, 10, 2, 15) / 1000);
    expect(isoToTs("nonsense")).toBeNull();
  });
});
