/**
 * The live view's state machine: a pure reducer over connection events and server messages.
 *
 * `step(state, action)` returns the next state and, at most, one message for the client to send
 * (a `resync` after a sequence gap). Time is an argument (`now`, milliseconds), never read here, so
 * the tests drive the clock. The socket code around it only moves messages (src/api/live.ts).
 */
import type { ErrorEvent, SeriesPoint, ServerMsg, View } from "../../api/types";
import { mergePatch } from "./mergePatch";

export type ConnPhase =
  | "idle" // not started
  | "connecting" // socket opening (first time or after a drop)
  | "syncing" // open, hello sent, waiting for the first snapshot
  | "live" // snapshot applied, patches flowing
  | "reconnecting" // closed, retry scheduled at retryAt
  | "unauthorized" // 4401: needs a (new) login; no retry until then
  | "forbidden"; // 4403: this identity may not see the view; no retry

export interface LiveState {
  phase: ConnPhase;
  view: View | null;
  seq: number | null;
  /** A gap was seen; patches are ignored until the next snapshot. */
  awaitingSnapshot: boolean;
  resyncSentAt: number | null;
  /** Local clock (ms) when the last snapshot or patch was applied. */
  receivedAt: number | null;
  /** The gateway's own word on freshness (`meta` message). */
  gatewayStale: boolean;
  gatewayAgeS: number | null;
  gateway: string | null;
  attempt: number;
  retryAt: number | null;
  lastClose: { code: number; reason: string } | null;
  lastError: { code: string; message: string } | null;
  /** The view came from a replay of the past (its snapshot was marked `replay`), not from live. */
  replay: boolean;
  counters: { snapshots: number; patches: number; gaps: number; ignored: number };
}

export type ClientMsg = { type: "resync" };

export type Action =
  | { type: "connecting"; now: number }
  | { type: "open"; now: number }
  | { type: "message"; msg: ServerMsg; now: number }
  | { type: "closed"; code: number; reason: string; retryAt: number | null; now: number }
  | { type: "tick"; now: number };

export interface Step {
  state: LiveState;
  send: ClientMsg | null;
}

/** How long to wait for a snapshot after asking for one before asking again. */
export const RESYNC_RETRY_MS = 5000;
/** Default series length (15 min of 1 s points) when the view does not say. */
export const DEFAULT_SERIES_LEN = 900;

export const initialState: LiveState = {
  phase: "idle",
  view: null,
  seq: null,
  awaitingSnapshot: false,
  resyncSentAt: null,
  receivedAt: null,
  gatewayStale: false,
  gatewayAgeS: null,
  gateway: null,
  attempt: 0,
  retryAt: null,
  lastClose: null,
  lastError: null,
  replay: false,
  counters: { snapshots: 0, patches: 0, gaps: 0, ignored: 0 },
};

/** Close codes after which retrying is pointless until the user does something. */
const TERMINAL: Record<number, ConnPhase> = { 4401: "unauthorized", 4403: "forbidden" };

function isFiniteNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** Push appended points onto their series, trimming each from the front to `maxLen`. */
export function applyAppend(
  series: Record<string, SeriesPoint[]>,
  append: Record<string, SeriesPoint> | null | undefined,
  maxLen: number,
): Record<string, SeriesPoint[]> {
  if (!append) return series;
  const out = { ...series };
  for (const [name, point] of Object.entries(append)) {
    if (!Array.isArray(point) || point.length < 2) continue;
    const prev = out[name] ?? [];
    const next = prev.length + 1 > maxLen ? prev.slice(prev.length + 1 - maxLen) : prev.slice();
    next.push(point);
    out[name] = next;
  }
  return out;
}

/** Put new feed entries (newest first) in front of the error feed, keeping `maxLen`. */
export function applyErrors(view: View, entries: ErrorEvent[] | null | undefined, maxLen: number): View {
  if (!entries || entries.length === 0) return view;
  const old = view.errors?.errors ?? [];
  return { ...view, errors: { ...(view.errors ?? {}), errors: [...entries, ...old].slice(0, maxLen) } };
}

function errorsLen(view: View): number {
  const n = view.meta?.errors_len;
  return isFiniteNumber(n) && n > 0 ? Math.floor(n) : 50;
}

function seriesLen(view: View): number {
  const n = view.meta?.series_len;
  return isFiniteNumber(n) && n > 0 ? Math.floor(n) : DEFAULT_SERIES_LEN;
}

function askResync(state: LiveState, now: number, gap: boolean): Step {
  const counters = gap ? { ...state.counters, gaps: state.counters.gaps + 1 } : state.counters;
  const due = state.resyncSentAt === null || now - state.resyncSentAt >= RESYNC_RETRY_MS;
  if (state.awaitingSnapshot && !due) {
    return { state: { ...state, counters: { ...counters, ignored: counters.ignored + 1 } }, send: null };
  }
  return {
    state: { ...state, awaitingSnapshot: true, resyncSentAt: now, counters },
    send: { type: "resync" },
  };
}

function onMessage(state: LiveState, msg: ServerMsg, now: number): Step {
  switch (msg.type) {
    case "snapshot": {
      if (!isFiniteNumber(msg.seq) || typeof msg.state !== "object" || msg.state === null) {
        return askResync(state, now, false);
      }
      return {
        state: {
          ...state,
          phase: "live",
          view: msg.state,
          seq: msg.seq,
          replay: msg.replay === true,
          awaitingSnapshot: false,
          resyncSentAt: null,
          receivedAt: now,
          attempt: 0,
          retryAt: null,
          lastError: null,
          counters: { ...state.counters, snapshots: state.counters.snapshots + 1 },
        },
        send: null,
      };
    }
    case "patch": {
      if (state.view === null || state.seq === null) {
        // A patch before any snapshot: the server sends one after hello; ask again only if it is late.
        return askResync(state, now, false);
      }
      if ((msg.replay === true) !== state.replay) {
        // A frame of the other kind (a live patch in flight when a replay began, or the other way
        // round): the snapshot of the new kind follows it on the socket; nothing to apply or ask.
        return { state: { ...state, counters: { ...state.counters, ignored: state.counters.ignored + 1 } }, send: null };
      }
      if (!isFiniteNumber(msg.seq) || !isFiniteNumber(msg.base)) return askResync(state, now, true);
      if (msg.seq <= state.seq && !state.awaitingSnapshot) {
        // Old or repeated patch: already applied (or superseded by a snapshot). Nothing to do.
        return { state: { ...state, counters: { ...state.counters, ignored: state.counters.ignored + 1 } }, send: null };
      }
      if (state.awaitingSnapshot || msg.base !== state.seq) return askResync(state, now, !state.awaitingSnapshot);
      const { series: _drop, ...rest } = (msg.patch ?? {}) as Record<string, unknown>;
      let view = mergePatch<View>(state.view, rest);
      if ("series" in (msg.patch ?? {})) {
        view = { ...view, series: mergePatch(state.view.series ?? {}, msg.patch.series) };
      }
      view = { ...view, meta: { ...(view.meta ?? {}), seq: msg.seq } };
      view = { ...view, series: applyAppend(view.series ?? {}, msg.append, seriesLen(view)) };
      view = applyErrors(view, msg.errors, errorsLen(view));
      return {
        state: {
          ...state,
          phase: "live",
          view,
          seq: msg.seq,
          receivedAt: now,
          counters: { ...state.counters, patches: state.counters.patches + 1 },
        },
        send: null,
      };
    }
    case "meta":
      return {
        state: {
          ...state,
          gatewayStale: msg.stale === true,
          gatewayAgeS: isFiniteNumber(msg.age_s) ? msg.age_s : null,
          gateway: typeof msg.gateway === "string" ? msg.gateway : state.gateway,
        },
        send: null,
      };
    case "error":
      return {
        state: { ...state, lastError: { code: String(msg.code ?? "error"), message: String(msg.message ?? "") } },
        send: null,
      };
    default:
      return { state: { ...state, counters: { ...state.counters, ignored: state.counters.ignored + 1 } }, send: null };
  }
}

export function step(state: LiveState, action: Action): Step {
  switch (action.type) {
    case "connecting":
      return { state: { ...state, phase: "connecting", retryAt: null }, send: null };
    case "open":
      return {
        // The hello asks for a snapshot: count it as the first resync request.
        // A new connection (perhaps to another gateway) starts without the old one's staleness word.
        state: {
          ...state, phase: "syncing", awaitingSnapshot: true, resyncSentAt: action.now, lastClose: null,
          gatewayStale: false, gatewayAgeS: null,
        },
        send: null,
      };
    case "message":
      return onMessage(state, action.msg, action.now);
    case "closed": {
      const terminal = TERMINAL[action.code];
      return {
        state: {
          ...state,
          phase: terminal ?? "reconnecting",
          attempt: terminal ? state.attempt : state.attempt + 1,
          retryAt: terminal ? null : action.retryAt,
          lastClose: { code: action.code, reason: action.reason },
          awaitingSnapshot: false,
          resyncSentAt: null,
        },
        send: null,
      };
    }
    case "tick":
      // A resync that went unanswered is asked again (the socket may have dropped it).
      if ((state.phase === "live" || state.phase === "syncing") && state.awaitingSnapshot && state.resyncSentAt !== null &&
          action.now - state.resyncSentAt >= RESYNC_RETRY_MS) {
        return askResync(state, action.now, false);
      }
      return { state, send: null };
  }
}

/** Reconnect delay: exponential from 500 ms, capped at 30 s, with "equal jitter" (`rand` in [0, 1)). */
export function backoffMs(attempt: number, rand: number, code?: number): number {
  const base = code === 4429 ? 5000 : 500;
  const cap = 30000;
  const exp = Math.min(cap, base * 2 ** Math.max(0, attempt));
  return Math.round(exp / 2 + (exp / 2) * rand);
}
