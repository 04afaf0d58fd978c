import { describe, expect, it } from "vitest";
import type { View } from "../../api/types";
import { recorderNote } from "./recorderNote";

describe("recorderNote", () => {
  it("shows lag, buffer, rows/s, drops and size of the recorder only", () => {
    const view = {
      services: { "opsdash-recorder": { instances: { r1: { gauges: { lag_s: 0.25, buffer: 3, db_size_mb: 2048 } } } } },
      metrics: { rates: { "opsdash-recorder": { rows_written: 52.4, drops: 0.5 } } },
    } as unknown as View;
    expect(recorderNote(view, "opsdash-recorder")).toBe("lag 0.3 s · buffer 3 · 52 rows/s · 30 dropped/min · 2.0 GB");
    expect(recorderNote(view, "opsdash-gateway")).toBeNull();
    expect(recorderNote(null, "opsdash-recorder")).toBeNull();
  });
});
