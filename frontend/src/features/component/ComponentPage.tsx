/**
 * A component's page (route "/component/<name>"): its state and what it depends on, its figures now
 * and over time (history API), its state timeline, its alerts, its recent errors, and for a service
 * every instance live (streamed to this page only: `services/<name>` in the WebSocket's sections).
 * The sort of the instances table and the time range live in the URL (?sort=, ?range=).
 */
import { useEffect, useState } from "preact/hooks";
import { getToken } from "../../api/auth";
import type { SeriesPoint, View } from "../../api/types";
import { useLive } from "../../app/live";
import { navigate, useLocation, useParams } from "../../app/router";
import { normStatus, viewStale } from "../../state/live/selectors";
import { fmtAge, fmtClock, fmtDecimal, fmtDuration, fmtPct, fmtRate } from "../../utils/format";
import { LiveChart } from "../operator/components/LiveChart";
import { STATUS_ICON, StatusBadge } from "../operator/components/StatusBadge";
import { label, SERVICE_NAME } from "../graph/model";
import { parseSort, rows, type SortKey, sortParam, sortRows } from "./instances";

/** What this page needs from the WebSocket: `services/<name>` only for a valid service name. */
export function componentSections(name: string | undefined): string[] {
  const base = ["health", "graph", "metrics", "probes", "alerts", "errors"];
  return name && SERVICE_NAME.test(name) ? [...base, `services/${name}`] : base;
}

const RANGES: Record<string, number> = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };

async function getJson<T>(url: string): Promise<{ status: number; body: T | null; message: string | null }> {
  const token = await getToken();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const res = await fetch(url, { headers, credentials: "same-origin" });
    const body = (await res.json().catch(() => null)) as (T & { message?: string }) | null;
    return { status: res.status, body: res.ok ? body : null, message: res.ok ? null : body?.message ?? `HTTP ${res.status}` };
  } catch (e) {
    return { status: 0, body: null, message: String(e) };
  }
}

interface HistoryState {
  phase: "loading" | "off" | "error" | "ready";
  message: string | null;
  series: Record<string, SeriesPoint[]>;
  states: { status: string; from: number; to: number | null; reason?: string | null }[];
  availability: number | null;
  from: number;
  to: number;
}

/** The history series of a component: rates/gauges of a service, capacity figures of a probe. */
export function seriesFor(catalogue: string[], name: string): string[] {
  return catalogue
    .filter((s) => s.startsWith(`rate:${name}:`) || s.startsWith(`gauge:${name}:`) || s.startsWith(`capacity:${name}.`))
    .sort()
    .slice(0, 8);
}

/** `endS`: the range ends there (a replayed moment, time travel) instead of now. */
function useHistory(name: string, rangeS: number, tick: number, endS: number | null = null): HistoryState {
  const [st, setSt] = useState<HistoryState>({ phase: "loading", message: null, series: {}, states: [], availability: null, from: 0, to: 0 });
  useEffect(() => {
    let cancelled = false;
    void (async () => {
      // /healthz (public) says whether history is on: a page that asks only then has no 404 in its console
      const hz = await getJson<{ history?: { enabled?: boolean } }>("/healthz");
      if (cancelled) return;
      if (hz.body?.history?.enabled === false) {
        setSt((s) => ({ ...s, phase: "off", message: "History is off (OPSDASH_HISTORY_URL is not set)" }));
        return;
      }
      const cat = await getJson<{ series: string[] }>("/operator/system/history");
      if (cancelled) return;
      if (!cat.body) {
        setSt((s) => ({ ...s, phase: cat.status === 404 ? "off" : "error", message: cat.message }));
        return;
      }
      const names = seriesFor(cat.body.series ?? [], name);
      const span = endS === null ? `from=-${rangeS}s` : `from=${(endS - rangeS).toFixed(3)}&to=${endS.toFixed(3)}`;
      const [hist, states] = await Promise.all([
        names.length
          ? getJson<{ from: number; to: number; series: Record<string, SeriesPoint[]> }>(
            `/operator/system/history?series=${encodeURIComponent(names.join(","))}&${span}`)
          : Promise.resolve({ status: 200, body: { from: 0, to: 0, series: {} }, message: null }),
        getJson<{ components: Record<string, HistoryState["states"]>; availability: Record<string, number> }>(
          `/operator/system/history/states?${span}`),
      ]);
      if (cancelled) return;
      const now = endS ?? Date.now() / 1000;
      setSt({
        phase: hist.body && states.body ? "ready" : "error",
        message: hist.message ?? states.message,
        series: hist.body?.series ?? {},
        states: states.body?.components?.[name] ?? [],
        availability: states.body?.availability?.[name] ?? null,
        from: now - rangeS,
        to: now,
      });
    })();
    return () => {
      cancelled = true;
    };
  }, [name, rangeS, tick, endS]);
  return st;
}

function Timeline({ hist }: { hist: HistoryState }) {
  const span = Math.max(1, hist.to - hist.from);
  if (hist.states.length === 0) return <p class="muted">No state changes recorded in this range.</p>;
  return (
    <div class="timeline" data-testid="state-timeline" role="img" aria-label="State over time">
      {hist.states.map((s, i) => {
        const from = Math.max(hist.from, s.from);
        const to = Math.min(hist.to, s.to ?? hist.to);
        if (to <= from) return null;
        const st = normStatus(s.status);
        return (
          <span
            key={i}
            class={`tl-seg st-${st}`}
            style={{ left: `${((from - hist.from) / span) * 100}%`, width: `${((to - from) / span) * 100}%` }}
            title={`${st} from ${fmtClock(s.from)}${s.to ? ` to ${fmtClock(s.to)}` : " (now)"}${s.reason ? `: ${s.reason}` : ""}`}
          >
            <span class="tl-icon" aria-hidden="true">{STATUS_ICON[st]}</span>
          </span>
        );
      })}
    </div>
  );
}

function LiveFigures({ view, name }: { view: View | null; name: string }) {
  const comp = view?.health?.components?.[name];
  const rates = view?.metrics?.rates?.[name] ?? {};
  const probe = view?.probes?.[name];
  const items: [string, string][] = [];
  for (const [k, v] of Object.entries(rates)) items.push([`${k} /s`, fmtRate(typeof v === "number" ? v : null)]);
  if (comp) {
    for (const [k, v] of Object.entries(comp)) {
      if (["kind", "status", "reason", "since", "ts", "instances_healthy", "instances_total"].includes(k)) continue;
      if (typeof v === "number") items.push([k, fmtDecimal(v)]);
    }
  }
  for (const [k, v] of Object.entries(probe?.metrics ?? {})) {
    if (typeof v === "number") items.push([k, fmtDecimal(v)]);
  }
  if (items.length === 0) return <p class="muted">No figures for this component in the live view.</p>;
  return (
    <dl class="figures" data-testid="live-figures">
      {items.map(([k, v]) => (
        <div key={k}><dt>{k}</dt><dd>{v}</dd></div>
      ))}
    </dl>
  );
}

function Alerts({ view, name }: { view: View | null; name: string }) {
  const a = (view as { alerts?: { firing?: AlertEntry[]; pending?: AlertEntry[] } } | null)?.alerts;
  if (!a) return <p class="muted">Alerts are not in this view.</p>;
  const mine = [...(a.firing ?? []), ...(a.pending ?? [])].filter(
    (x) => x.labels?.component === name || x.labels?.service === name,
  );
  if (mine.length === 0) return <p class="muted" data-testid="alerts-none">No alert on {label(name)}.</p>;
  return (
    <ul class="alerts-list" data-testid="component-alerts">
      {mine.map((x) => (
        <li key={x.fingerprint} class={`alert sev-${x.labels?.severity ?? "warning"}${x.inhibited_by?.length ? " inhibited" : ""}`}>
          <strong>{x.status}</strong> {x.labels?.alertname}: {x.annotations?.summary ?? ""}
          {x.inhibited_by?.length ? <em> — inhibited by {x.inhibited_by.map(label).join(", ")}</em> : null}
        </li>
      ))}
    </ul>
  );
}

interface AlertEntry {
  fingerprint: string;
  status: string;
  labels?: Record<string, string>;
  annotations?: { summary?: string };
  inhibited_by?: string[] | null;
}

interface EventRow {
  id: string | number;
  ts?: number | null;
  instance?: string | null;
  type?: string | null;
  severity?: string | null;
  message?: string | null;
}

/** The component's recent events from the events API (history on), else null (use the live feed). */
function useStoredEvents(name: string, enabled: boolean, tick: number): EventRow[] | null {
  const [rows, setRows] = useState<EventRow[] | null>(null);
  useEffect(() => {
    if (!enabled || !SERVICE_NAME.test(name)) {
      setRows(null);
      return;
    }
    let cancelled = false;
    void (async () => {
      const got = await getJson<{ events: EventRow[] }>(
        `/operator/system/events?service=${encodeURIComponent(name)}&from=-24h&limit=20`);
      if (!cancelled) setRows(got.body ? got.body.events : null);
    })();
    return () => {
      cancelled = true;
    };
  }, [name, enabled, tick]);
  return rows;
}

function Events({ view, name, stored }: { view: View | null; name: string; stored: EventRow[] | null }) {
  const live = (view?.errors?.errors ?? []).filter((e) => e?.service === name).slice(0, 15);
  const evs: EventRow[] = stored ?? live.map((e, i) => ({ ...e, id: e.id ?? `feed-${i}` }));
  return (
    <>
      <p class="muted">{stored ? "Last 24 h, stored (newest first)" : "From the live error feed"}</p>
      {evs.length === 0 ? (
        <p class="muted">No recent event from {label(name)}.</p>
      ) : (
        <ul class="events" data-testid="component-events" data-source={stored ? "history" : "feed"}>
          {evs.map((e) => (
            <li key={e.id}>
              <span class="ev-time">{fmtClock(e.ts)}</span> <span class={`sev sev-${e.severity}`}>{e.severity}</span>{" "}
              <code>{e.type}</code> {e.instance ? <span class="muted">{e.instance}</span> : null} {e.message}
            </li>
          ))}
        </ul>
      )}
      <p><a href={`/logs?service=${encodeURIComponent(name)}`}>All events of {label(name)} →</a></p>
    </>
  );
}

const COLUMNS: [SortKey | null, string][] = [
  ["name", "Instance"], ["status", "State"], ["version", "Version / boot"], ["uptime", "Uptime"],
  ["restarts", "Restarts"], ["last_seen", "Last seen"], ["skew", "Clock skew"], ["missing", "Missing"], [null, "Gauges"],
];

function Instances({ view, name, sortRaw }: { view: View | null; name: string; sortRaw: string | null }) {
  const loc = useLocation();
  const all = rows(view, name);
  if (all === null) return <p class="muted" data-testid="instances-waiting">Waiting for the instances of {label(name)}…</p>;
  const { key, desc } = parseSort(sortRaw);
  const sorted = sortRows(all, key, desc);
  const setSort = (k: SortKey) => {
    const nd = k === key ? !desc : k === "status";
    const q = new URLSearchParams(loc.query);
    q.set("sort", sortParam(k, nd));
    navigate(`${loc.path}?${q.toString()}`, { replace: true });
  };
  return (
    <div class="table-scroll">
      <table class="instances" data-testid="instances" data-sort={sortParam(key, desc)}>
        <thead>
          <tr>
            {COLUMNS.map(([k, text]) => (
              <th key={text} scope="col" aria-sort={k === key ? (desc ? "descending" : "ascending") : undefined}>
                {k ? (
                  <button type="button" class="th-sort" onClick={() => setSort(k)} data-testid={`sort-${k}`}>
                    {text} {k === key ? (desc ? "▼" : "▲") : ""}
                  </button>
                ) : text}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {sorted.map((r) => (
            <tr key={r.name} class={`st-${r.status}`} data-testid={`inst-${r.name}`} data-status={r.status}>
              <th scope="row">{r.name}</th>
              <td>
                <StatusBadge status={r.status} />
                {r.reason && <div class="reason">{r.reason}</div>}
              </td>
              <td>{r.version ?? "version unknown"}<div class="muted boot-id" title={r.boot ?? undefined}>{r.boot ? r.boot.slice(0, 12) : "no boot"}</div></td>
              <td data-testid={`inst-${r.name}-uptime`}>{r.uptimeS === null ? "unknown" : fmtDuration(r.uptimeS)}</td>
              <td>{r.restarts ?? "?"}</td>
              <td data-testid={`inst-${r.name}-seen`}>{r.lastSeenAgeS === null ? "never" : fmtAge(r.lastSeenAgeS)}</td>
              <td>{r.skewS === null ? "unknown" : `${r.skewS > 0 ? "+" : ""}${r.skewS.toFixed(1)} s`}</td>
              <td>{r.missing ?? "?"}{r.received ? <span class="muted"> / {r.received}</span> : null}</td>
              <td class="gauges" data-testid={`inst-${r.name}-gauges`}>
                {r.gauges.length ? r.gauges.map(([g, v]) => `${g} ${fmtDecimal(v)}`).join(", ") : "—"}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function ComponentPage() {
  const { live, now, replayAt } = useLive();
  const params = useParams();
  const loc = useLocation();
  const name = params.name ?? "";
  const view = live.view;
  const comp = view?.health?.components?.[name];
  const node = view?.graph?.nodes?.[name];
  const known = comp != null || node != null;
  const status = normStatus(comp?.status ?? node?.status);
  const kind = comp?.kind ?? (view?.services?.[name] ? "service" : undefined);
  const rangeKey = RANGES[loc.query.get("range") ?? ""] ? loc.query.get("range")! : "1h";
  const rangeS = RANGES[rangeKey]!;
  // history refreshes every 30 s while the page is open
  const tick = Math.floor(now / 30000);
  // replaying: the figures over time end at the moment shown (asked again each 60th of the range)
  const bucket = Math.max(30, rangeS / 60);
  const hist = useHistory(name, rangeS, tick, replayAt === null ? null : Math.ceil(replayAt / bucket) * bucket);
  const stored = useStoredEvents(name, hist.phase === "ready", tick);
  const edges = view?.graph?.edges ?? [];
  const needs = edges.filter((e) => e[0] === name).map((e) => e[1]);
  const neededBy = edges.filter((e) => e[1] === name).map((e) => e[0]);
  const by = node?.impacted_by ?? [];
  const stale = viewStale(live, now);
  const summary = view?.services?.[name];

  if (view && !known) {
    return (
      <section class="component-page" data-testid="component-page" data-state="unknown">
        <h2>No component “{name}”</h2>
        <p>The {replayAt === null ? "live view" : "view of that moment"} has no component of that name. The <a href="/graph">dependency graph</a> lists them all.</p>
      </section>
    );
  }
  const setRange = (r: string) => {
    const q = new URLSearchParams(loc.query);
    q.set("range", r);
    navigate(`${loc.path}?${q.toString()}`, { replace: true });
  };
  return (
    <div class={`component-page${stale ? " stale" : ""}`} data-testid="component-page" data-state="ready" data-component={name}>
      <section class="comp-head" aria-labelledby="comp-title">
        <h2 id="comp-title">
          {label(name)} <span class="muted">({kind ?? "component"}{label(name) !== name ? ` ${name}` : ""})</span>
        </h2>
        <div class="comp-state" data-testid="comp-state" data-status={status}>
          <StatusBadge status={status} big />
          {comp?.reason && <span class="reason" data-testid="comp-reason">{comp.reason}</span>}
          {typeof comp?.since === "number" && <span class="muted"> since {fmtClock(comp.since)}</span>}
        </div>
        {node?.root_cause && (
          <p class={`root-cause st-${status}`} data-testid="comp-root">
            {STATUS_ICON[status]} Root cause{view?.graph?.roots?.find((r) => r.component === name)?.impacts?.length
              ? ` — impacts ${view.graph!.roots!.find((r) => r.component === name)!.impacts!.map(label).join(", ")}` : ""}
          </p>
        )}
        {by.length > 0 && (
          <p class="impacted" data-testid="comp-impacted">
            ▲ impacted by {by.map((b, i) => (
              <span key={b}>{i ? ", " : ""}<a href={`/component/${encodeURIComponent(b)}`}>{label(b)}</a></span>
            ))}
          </p>
        )}
        <p class="deps">
          Needs: {needs.length ? needs.map((d, i) => (
            <span key={d}>{i ? ", " : ""}<a href={`/component/${encodeURIComponent(d)}`}>{label(d)}</a></span>
          )) : "nothing declared"}
          {" · "}Needed by: {neededBy.length ? neededBy.map((d, i) => (
            <span key={d}>{i ? ", " : ""}<a href={`/component/${encodeURIComponent(d)}`}>{label(d)}</a></span>
          )) : "nothing declared"}
          {" · "}<a href="/graph">Graph</a>
        </p>
        {summary && (
          <p class="muted" data-testid="comp-summary">
            {summary.instances_total ?? "?"} instances
            {summary.versions && Object.keys(summary.versions).length ? ` · versions ${Object.entries(summary.versions).map(([v, n]) => `${v} ×${n}`).join(", ")}` : ""}
            {` · ${summary.restarts ?? "?"} restarts · ${summary.missing_intervals ?? "?"} missing intervals`}
          </p>
        )}
      </section>

      {kind === "service" && (
        <section class="tile comp-instances" aria-labelledby="inst-title">
          <h3 id="inst-title">{replayAt === null ? "Instances · live" : "Instances"}</h3>
          {replayAt === null ? (
            <Instances view={view} name={name} sortRaw={loc.query.get("sort")} />
          ) : (
            // the recorder keeps the default stream, per-service summaries only (docs/history.md)
            <p class="muted" data-testid="instances-not-recorded">
              Per-instance detail is not recorded; the figures above are the service's as they were. Back to
              live to see its instances.
            </p>
          )}
        </section>
      )}

      <section class="tile" aria-labelledby="fig-title">
        <h3 id="fig-title">{replayAt === null ? "Figures now" : "Figures then"}</h3>
        <LiveFigures view={view} name={name} />
      </section>

      <section class="tile comp-history" aria-labelledby="hist-title" data-testid="comp-history" data-phase={hist.phase}>
        <h3 id="hist-title">Over time</h3>
        <div class="range-picker" role="group" aria-label="Time range">
          {Object.keys(RANGES).map((r) => (
            <button type="button" key={r} class={`btn${r === rangeKey ? " active" : ""}`} aria-pressed={r === rangeKey}
                    onClick={() => setRange(r)}>{r}</button>
          ))}
        </div>
        {hist.phase === "loading" && <p class="muted">Loading history…</p>}
        {hist.phase === "off" && <p class="muted" data-testid="history-off">‖ {hist.message ?? "History is off"}. Only the live figures above.</p>}
        {hist.phase === "error" && <p class="bad">History unavailable: {hist.message}</p>}
        {hist.phase === "ready" && (
          <>
            <h4>State {hist.availability !== null && <span class="muted">· availability {fmtPct(hist.availability * 100)}</span>}</h4>
            <Timeline hist={hist} />
            {Object.entries(hist.series).map(([s, pts]) => (
              <figure class="hchart" key={`${s}-${rangeKey}`} data-testid={`hchart-${s}`}
                      data-points={pts.filter((p) => p[1] !== null).length}>
                <figcaption>{s}</figcaption>
                <LiveChart series={[pts]} lines={[{ label: s, color: "#58a6ff", unit: "" }]} markers={[]}
                           windowS={rangeS} label={`${s} over the last ${rangeKey}`} />
              </figure>
            ))}
            {Object.keys(hist.series).length === 0 && <p class="muted">No recorded series for {label(name)}.</p>}
          </>
        )}
      </section>

      <section class="tile" aria-labelledby="alerts-title">
        <h3 id="alerts-title">Alerts</h3>
        <Alerts view={view} name={name} />
      </section>

      <section class="tile" aria-labelledby="events-title">
        <h3 id="events-title">Recent events</h3>
        <Events view={view} name={name} stored={stored} />
      </section>
    </div>
  );
}

export default ComponentPage;
