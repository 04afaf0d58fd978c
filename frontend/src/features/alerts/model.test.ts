import { describe, expect, it } from "vitest";
import type { View } from "../../api/types";
import { type Alert, alertsBySubject, fmtValue, quietReason, silenceMatchers, sortAlerts, subject, worstSeverity } from "./model";

function alert(fp: string, labels: Record<string, string>, extra: Partial<Alert> = {}): Alert {
  return { fingerprint: fp, status: "firing", labels, annotations: {}, value: null, starts_at: 100, ends_at: null,
           fired_at: null, acked_by: null, acked_at: null, silenced_until: null, inhibited_by: null, ...extra };
}

describe("alerts model", () => {
  const crit = alert("a", { alertname: "component_down", component: "postgres", severity: "critical" }, { starts_at: 200 });
  const warn = alert("b", { alertname: "instance_down", service: "ingest", instance: "i-2", severity: "warning" });
  it("finds the worst severity", () => {
    expect(worstSeverity([])).toBeNull();
    expect(worstSeverity([warn])).toBe("warning");
    expect(worstSeverity([warn, crit])).toBe("critical");
  });
  it("sorts worst first then oldest", () => {
    const older = alert("c", { alertname: "x", severity: "critical" }, { starts_at: 50 });
    expect(sortAlerts([warn, crit, older]).map((a) => a.fingerprint)).toEqual(["c", "a", "b"]);
  });
  it("names the subject", () => {
    expect(subject(crit)).toBe("postgres");
    expect(subject(warn)).toBe("ingest/i-2");
    expect(subject(alert("d", { alertname: "e", category: "auth_failures" }))).toBe("auth_failures");
  });
  it("groups firing alerts per tile", () => {
    const view: View = { alerts: { firing: [crit, warn], pending: [alert("p", { component: "postgres" })] } };
    const m = alertsBySubject(view);
    expect(m.get("postgres")?.map((a) => a.fingerprint)).toEqual(["a"]);
    expect(m.get("ingest")?.length).toBe(1);
    expect(alertsBySubject(null).size).toBe(0);
  });
  it("says why an alert is quiet", () => {
    expect(quietReason(crit, 0)).toBeNull();
    expect(quietReason({ ...crit, inhibited_by: ["mqtt"] }, 0)).toBe("inhibited by mqtt");
    expect(quietReason({ ...crit, silenced_until: 500 }, 400)).toBe("silenced");
    expect(quietReason({ ...crit, silenced_until: 500 }, 600)).toBeNull();
  });
  it("silences by every label but severity", () => {
    expect(silenceMatchers(crit)).toEqual({ alertname: "component_down", component: "postgres" });
  });
  it("formats values", () => {
    expect(fmtValue(91.456)).toBe("91.5");
    expect(fmtValue(34560)).toBe("34560");
    expect(fmtValue("down")).toBe("down");
    expect(fmtValue(null)).toBe("–");
  });
});
