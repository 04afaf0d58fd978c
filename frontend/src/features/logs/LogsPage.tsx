/**
 * The log view (/logs): every stored event of the retention, searchable, with a live tail.
 *
 * The URL holds the whole search (range, filters, words, tail on/off), so a link from an error-feed
 * entry or a chart marker (± 1 min around it, same service) opens exactly that, and reloads keep it.
 * Results come newest first from GET /operator/system/events, 100 at a time; scrolling to the end
 * loads the next page (cursor `next`). With the tail on (and a range that ends now), new events that
 * match arrive over the shared WebSocket and go on top. Severity is shown by icon and word.
 */
import { useEffect, useMemo, useReducer, useRef, useState } from "preact/hooks";
import { getToken } from "../../api/auth";
import type { View } from "../../api/types";
import {
  type ErrorCounts,
  type EventItem,
  EventsApiError,
  fetchErrorCounts,
  fetchEvents,
  historyEnabled,
} from "../../api/events";
import type { EventsFrame, TailFrame } from "../../api/live";
import { useLive } from "../../app/live";
import { navigate, useLocation } from "../../app/router";
import { fmtCount, humanize } from "../../utils/format";
import {
  apiParams,
  countsParams,
  emptyList,
  eventKey,
  listReducer,
  type LogsQuery,
  parseQuery,
  RANGES,
  SEVERITIES,
  SEVERITY_ICON,
  tailFilter,
  toSearch,
} from "./model";
import "./logs.css";

const KNOWN_TYPES = [
  "log", "parse_error", "quarantined", "auth_failed", "token_expired", "rate_limited", "webhook_timeout",
  "webhook_failed", "state_change",
];

function fmtTime(e: EventItem): string {
  const d = new Date(e.ts * 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function rangeLabel(q: LogsQuery): string {
  const preset = RANGES.find(([v]) => v === q.from);
  if (preset && !q.to) return preset[1];
  const show = (v: string) => (/^[0-9]+(\.[0-9]+)?$/.test(v) ? new Date(Number(v) * 1000).toLocaleString() : v);
  return `${show(q.from)} – ${q.to ? show(q.to) : "now"}`;
}

/** Log records the services' log handlers dropped over their rate (the view's per-service summary). */
function droppedLogRecords(view: View | null): number | null {
  const services = view?.services;
  if (!services) return null;
  let sum = 0;
  for (const svc of Object.values(services)) sum += svc?.log_records_dropped ?? 0;
  return sum;
}

function EventRow({ e, at }: { e: EventItem; at: number | null }) {
  const [open, setOpen] = useState(false);
  const sev = e.severity;
  const multi = e.message.includes("\n");
  const attrs = Object.entries(e.attrs ?? {});
  const near = at !== null && Math.abs(e.ts - at) < 1;
  return (
    <li class={`ev sev-${sev}${near ? " ev-at" : ""}`} data-testid="event-row" data-ts={e.ts}>
      <span class="ev-time mono">{fmtTime(e)}</span>
      <span class="ev-sev" data-testid="event-severity">
        <span aria-hidden="true">{SEVERITY_ICON[sev] ?? "•"}</span> {sev}
      </span>
      <span class="ev-src" title={e.instance ?? e.service}>
        {e.service}
        {e.instance ? <span class="muted">/{e.instance}</span> : null}
      </span>
      <span class="ev-type">{humanize(e.type)}</span>
      <span class="ev-msg">
        {multi ? (
          <button type="button" class="ev-toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? "▾" : "▸"}
          </button>
        ) : null}
        <span class={open ? "ev-text open" : "ev-text"} data-testid="event-message">
          {open ? e.message : e.message.split("\n")[0]}
        </span>
        {attrs.length > 0 && (
          <span class="ev-attrs">
            {attrs.map(([k, v]) => (
              <span class="attr" key={k}>
                <span class="muted">{k}=</span>
                {v}
              </span>
            ))}
          </span>
        )}
        {e.id === null && <span class="ev-live" title="arrived by the live tail">live</span>}
      </span>
    </li>
  );
}

export function LogsPage() {
  const loc = useLocation();
  const { live, client } = useLive();
  const query = useMemo(() => parseQuery(loc.query), [loc.query.toString()]);
  const at = useMemo(() => {
    const v = Number(loc.query.get("at"));
    return Number.isFinite(v) && v > 0 ? v : null;
  }, [loc.query.toString()]);
  const [list, dispatch] = useReducer(listReducer, emptyList);
  const [counts, setCounts] = useState<ErrorCounts | null>(null);
  /** The gateway's answer to our tail request: null until it came. */
  const [tailAnswer, setTailAnswer] = useState<TailFrame | null>(null);
  const [text, setText] = useState(query.q);
  const reqId = useRef(0);
  const sentinel = useRef<HTMLDivElement>(null);
  const view = live.view;

  useEffect(() => setText(query.q), [query.q]);

  const update = (patch: Partial<LogsQuery>) => {
    const next = { ...query, ...patch };
    const s = toSearch(next).toString();
    navigate(`/logs${s ? `?${s}` : ""}`, { replace: true });
  };

  // the first page and the range's counts, again whenever the search changes
  useEffect(() => {
    const id = ++reqId.current;
    const abort = new AbortController();
    dispatch({ type: "reset" });
    setCounts(null);
    void (async () => {
      if (!(await historyEnabled())) {
        if (id === reqId.current) {
          dispatch({ type: "error", message: "Event history is off: the gateway has no history database "
            + "(OPSDASH_HISTORY_URL). The live tail still shows new events." });
        }
        return;
      }
      const token = await getToken().catch(() => null);
      try {
        const page = await fetchEvents(apiParams(query), token, abort.signal);
        if (id === reqId.current) dispatch({ type: "page", events: page.events, next: page.next, append: false });
      } catch (err) {
        if (id !== reqId.current || abort.signal.aborted) return;
        const msg = err instanceof EventsApiError
          ? (err.status === 404 ? `Event history is off: ${err.message}` : err.message)
          : "the gateway did not answer";
        dispatch({ type: "error", message: msg });
      }
      try {
        const c = await fetchErrorCounts(countsParams(query), token, abort.signal);
        if (id === reqId.current) setCounts(c);
      } catch {
        /* the list says what is wrong */
      }
    })();
    return () => abort.abort();
  }, [toSearch(query).toString()]);

  // the live tail over the shared socket
  const filterKey = JSON.stringify(tailFilter(query));
  useEffect(() => {
    if (!client || !query.tail) return;
    setTailAnswer(null);
    const off = client.onEvents((f: EventsFrame | TailFrame) => {
      if (f.type === "tail") setTailAnswer(f);
      else dispatch({ type: "tail", events: f.events, dropped: f.dropped });
    });
    client.setTail(tailFilter(query));
    return () => {
      off();
      client.setTail(null);
    };
  }, [client, query.tail, filterKey]);

  const loadMore = async () => {
    if (list.loading || !list.next) return;
    const id = reqId.current;
    dispatch({ type: "loading" });
    const token = await getToken().catch(() => null);
    try {
      const page = await fetchEvents(apiParams(query, list.next), token);
      if (id === reqId.current) dispatch({ type: "page", events: page.events, next: page.next, append: true });
    } catch (err) {
      if (id === reqId.current) dispatch({ type: "error", message: err instanceof Error ? err.message : "load failed" });
    }
  };

  // infinite scroll: the next page when the end of the list comes into view
  useEffect(() => {
    const el = sentinel.current;
    if (!el || typeof IntersectionObserver === "undefined") return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((x) => x.isIntersecting)) void loadMore();
    }, { rootMargin: "400px" });
    io.observe(el);
    return () => io.disconnect();
  });

  const services = Object.keys((view as { services?: Record<string, unknown> } | null)?.services ?? {}).sort();
  const instances = query.service
    ? Object.keys(
        ((view as { services?: Record<string, { instances?: Record<string, unknown> }> } | null)?.services?.[query.service]
          ?.instances) ?? {},
      ).sort()
    : [];
  const dropped = droppedLogRecords(view);
  const tailPossible = !query.to;

  return (
    <section class="logs" aria-labelledby="logs-title" data-testid="logs-page">
      <h2 id="logs-title" class="visually-hidden">Search events and logs</h2>
      <form
        class="logs-filters"
        role="search"
        onSubmit={(ev) => {
          ev.preventDefault();
          update({ q: text });
        }}
      >
        <label>
          <span>Range</span>
          <select
            data-testid="logs-range"
            value={RANGES.some(([v]) => v === query.from) && !query.to ? query.from : "custom"}
            onChange={(ev) => {
              const v = (ev.target as HTMLSelectElement).value;
              if (v !== "custom") update({ from: v, to: "", tail: true });
            }}
          >
            {RANGES.map(([v, label]) => (
              <option value={v} key={v}>{label}</option>
            ))}
            <option value="custom" disabled>{rangeLabel(query)}</option>
          </select>
        </label>
        <label>
          <span>Service</span>
          <input
            list="logs-services"
            data-testid="logs-service"
            value={query.service}
            placeholder="any"
            size={12}
            onChange={(ev) => update({ service: (ev.target as HTMLInputElement).value.trim(), instance: "" })}
          />
          <datalist id="logs-services">
            {services.map((s) => <option value={s} key={s} />)}
          </datalist>
        </label>
        <label>
          <span>Instance</span>
          <input
            list="logs-instances"
            data-testid="logs-instance"
            value={query.instance}
            placeholder="any"
            size={12}
            onChange={(ev) => update({ instance: (ev.target as HTMLInputElement).value.trim() })}
          />
          <datalist id="logs-instances">
            {instances.map((s) => <option value={s} key={s} />)}
          </datalist>
        </label>
        <label>
          <span>Severity</span>
          <select
            data-testid="logs-severity"
            value={query.severity}
            onChange={(ev) => update({ severity: (ev.target as HTMLSelectElement).value })}
          >
            <option value="">any</option>
            {SEVERITIES.slice(1).map((s) => (
              <option value={s} key={s}>{SEVERITY_ICON[s]} {s}{s === "critical" ? "" : " or worse"}</option>
            ))}
          </select>
        </label>
        <label>
          <span>Type</span>
          <input
            list="logs-types"
            data-testid="logs-type"
            value={query.type}
            placeholder="any"
            size={12}
            onChange={(ev) => update({ type: (ev.target as HTMLInputElement).value.trim() })}
          />
          <datalist id="logs-types">
            {KNOWN_TYPES.map((s) => <option value={s} key={s} />)}
          </datalist>
        </label>
        <label class="logs-q">
          <span>Search (all words)</span>
          <input
            type="search"
            data-testid="logs-q"
            value={text}
            placeholder="e.g. acme timed out"
            onInput={(ev) => setText((ev.target as HTMLInputElement).value)}
          />
        </label>
        <button class="btn primary" type="submit" data-testid="logs-search">Search</button>
        <label class="logs-tail" title={tailPossible ? "" : "the range ends in the past: nothing to tail"}>
          <input
            type="checkbox"
            data-testid="logs-tail"
            checked={query.tail}
            disabled={!tailPossible}
            onChange={(ev) => update({ tail: (ev.target as HTMLInputElement).checked })}
          />
          <span>Live tail</span>
        </label>
      </form>

      <div class="logs-summary" data-testid="logs-summary">
        <span>{rangeLabel(query)}</span>
        {counts && (
          <span data-testid="logs-counts">
            · in this range <strong>{fmtCount(counts.total)}</strong> warnings or worse{query.service ? ` of ${query.service}` : ""}
            {Object.entries(counts.by_severity).map(([s, n]) => (
              <span class="chip" key={s}>
                <span aria-hidden="true">{SEVERITY_ICON[s] ?? "•"}</span> {fmtCount(n)} {s}
              </span>
            ))}
          </span>
        )}
        {query.tail && tailAnswer?.ok === false ? (
          <span class="tail-state off warn" data-testid="tail-state" role="status">
            · ○ no live tail: {tailAnswer.message ?? tailAnswer.code}
          </span>
        ) : query.tail ? (
          <span class={`tail-state ${live.phase === "live" && tailAnswer?.ok ? "on" : "off"}`} data-testid="tail-state">
            · {live.phase !== "live" ? "○ tail waits for the connection" : tailAnswer?.ok ? "● tailing" : "○ starting the tail…"}
            {list.tailed > 0 ? ` (${fmtCount(list.tailed)} new)` : ""}
          </span>
        ) : null}
        {list.tailDropped > 0 && (
          <span class="warn" data-testid="tail-dropped">
            · ▲ {fmtCount(list.tailDropped)} events too fast for the tail (search to see them all)
          </span>
        )}
        {dropped !== null && dropped > 0 && (
          <span class="muted" data-testid="log-records-dropped">
            · {fmtCount(dropped)} log records dropped by services' rate limit
          </span>
        )}
      </div>

      {list.error && <div class="banner bad" role="alert" data-testid="logs-error">⚠ {list.error}</div>}
      {list.loaded && list.events.length === 0 && !list.error && (
        <p class="muted empty" data-testid="logs-empty">No events match in this range.</p>
      )}
      <ol class="events" data-testid="events" aria-label="events, newest first" aria-busy={list.loading}>
        {list.events.map((e) => <EventRow e={e} at={at} key={e.id ?? eventKey(e)} />)}
      </ol>
      <div ref={sentinel} class="logs-end">
        {list.loading ? (
          <span class="muted">loading…</span>
        ) : list.next ? (
          <button class="btn" type="button" data-testid="logs-more" onClick={() => void loadMore()}>Older events</button>
        ) : list.loaded && list.events.length > 0 ? (
          <span class="muted" data-testid="logs-end">start of the range</span>
        ) : null}
      </div>
    </section>
  );
}

export default LogsPage;
