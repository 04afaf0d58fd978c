/**
 * Pure helpers over the view's `alerts` section: what the banner, the page and the tile marks show.
 * Times are Unix seconds; `now` is passed in (components re-render on the shell's 1 s clock).
 */
import type { Alert as ViewAlert, Silence as ViewSilence, View } from "../../api/types";

export type Severity = "critical" | "warning";

/** An alert as the page uses it: the view's (all fields optional, nulls dropped) made whole. */
export interface Alert {
  fingerprint: string;
  status: "firing" | "pending" | "resolved";
  labels: Record<string, string>;
  annotations: Record<string, string>;
  value: number | string | null;
  starts_at: number;
  ends_at: number | null;
  fired_at: number | null;
  acked_by: string | null;
  acked_at: number | null;
  silenced_until: number | null;
  inhibited_by: string[] | null;
}

export interface Silence {
  id: string;
  matchers: Record<string, string>;
  starts_at: number;
  ends_at: number;
  comment: string;
  created_by: string;
}

const RANK: Record<string, number> = { critical: 0, warning: 1 };

function alertOf(a: ViewAlert | null | undefined): Alert | null {
  if (!a || !a.fingerprint || typeof a.starts_at !== "number") return null;
  return {
    fingerprint: a.fingerprint, status: a.status ?? "firing", labels: a.labels ?? {}, annotations: a.annotations ?? {},
    value: a.value ?? null, starts_at: a.starts_at, ends_at: a.ends_at ?? null, fired_at: a.fired_at ?? null,
    acked_by: a.acked_by ?? null, acked_at: a.acked_at ?? null, silenced_until: a.silenced_until ?? null,
    inhibited_by: a.inhibited_by ?? null,
  };
}

function silenceOf(s: ViewSilence | null | undefined): Silence | null {
  if (!s || !s.id || typeof s.ends_at !== "number") return null;
  return { id: s.id, matchers: s.matchers ?? {}, starts_at: s.starts_at ?? 0, ends_at: s.ends_at,
           comment: s.comment ?? "", created_by: s.created_by ?? "" };
}

function all<T, U>(list: (T | null | undefined)[] | null | undefined, f: (x: T | null | undefined) => U | null): U[] {
  return (list ?? []).map(f).filter((x): x is U => x !== null);
}

/** The view's `alerts` section, whole: every list present, every alert complete. */
export function section(view: View | null | undefined): { firing: Alert[]; pending: Alert[]; recent: Alert[]; silences: Silence[] } {
  const s = view?.alerts ?? {};
  return { firing: all(s.firing, alertOf), pending: all(s.pending, alertOf), recent: all(s.recent, alertOf),
           silences: all(s.silences, silenceOf) };
}

export function severity(a: Alert): string {
  return a.labels?.severity ?? "warning";
}

/** The worst severity among alerts, or null when there are none. */
export function worstSeverity(alerts: Alert[]): Severity | null {
  let best: Severity | null = null;
  for (const a of alerts) {
    const s = severity(a);
    if (s === "critical") return "critical";
    if (s === "warning") best = "warning";
  }
  return best;
}

/** Firing, worst first then oldest (the aggregator sends them so; sorted again for safety). */
export function sortAlerts(alerts: Alert[]): Alert[] {
  return [...alerts].sort((a, b) => (RANK[severity(a)] ?? 2) - (RANK[severity(b)] ?? 2) || a.starts_at - b.starts_at
    || a.fingerprint.localeCompare(b.fingerprint));
}

/** What the alert is about: component, service/instance, category, or nothing. */
export function subject(a: Alert): string {
  const l = a.labels ?? {};
  if (l.component) return l.component;
  if (l.service) return l.instance ? `${l.service}/${l.instance}` : l.service;
  if (l.category) return l.category;
  return "";
}

/** Is the alert held back from notification, and why (silence, inhibition)? */
export function quietReason(a: Alert, now: number): string | null {
  if (a.inhibited_by && a.inhibited_by.length) return `inhibited by ${a.inhibited_by.join(", ")}`;
  if (typeof a.silenced_until === "number" && a.silenced_until > now) return "silenced";
  return null;
}

/** Firing alerts per component/service name: the marks on the dashboard's tiles. */
export function alertsBySubject(view: View | null | undefined): Map<string, Alert[]> {
  const out = new Map<string, Alert[]>();
  for (const a of section(view).firing) {
    const key = a.labels?.component ?? a.labels?.service;
    if (!key) continue;
    const list = out.get(key) ?? [];
    list.push(a);
    out.set(key, list);
  }
  return out;
}

/** The matchers a "silence this" button uses: every label but severity. */
export function silenceMatchers(a: Alert): Record<string, string> {
  const m: Record<string, string> = {};
  for (const [k, v] of Object.entries(a.labels ?? {})) if (k !== "severity") m[k] = v;
  return m;
}

/** The alert's value for display: numbers rounded, strings as they are, unknown as "–". */
export function fmtValue(v: unknown): string {
  if (typeof v === "number" && Number.isFinite(v)) {
    return Math.abs(v) >= 100 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
  }
  if (typeof v === "string") return v;
  return "–";
}
