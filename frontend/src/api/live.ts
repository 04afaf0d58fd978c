/**
 * The live connection: opens `/operator/system/live`, says hello, feeds every message to the pure
 * reducer (state/live/reducer.ts), sends what it asks for (resync), and reconnects with jittered,
 * capped backoff. It only moves messages; all decisions about the view are the reducer's.
 */
import type { ServerMsg } from "./types";
import { type Action, backoffMs, initialState, type LiveState, step } from "../state/live/reducer";
import type { ReplayFrame, ReplayMsg } from "../state/replay/reducer";

export interface LiveOptions {
  url: string;
  /** The bearer token for the hello message, or null (auth mode none). Called on each connect. */
  getToken: () => Promise<string | null>;
  sections?: string[];
  now?: () => number;
  random?: () => number;
  WebSocketImpl?: typeof WebSocket;
}

type Listener = (s: LiveState) => void;

/** A live-tail frame (docs/websocket.md): new events matching the tail filter. */
export interface EventsFrame {
  type: "events";
  dropped: number;
  events: import("./events").EventItem[];
}
/** The gateway's answer to a tail request: refused tails leave the socket open (docs/websocket.md). */
export interface TailFrame {
  type: "tail";
  ok: boolean;
  code?: string;
  message?: string;
}
type EventsListener = (f: EventsFrame | TailFrame) => void;
type ReplayListener = (f: ReplayFrame) => void;

export function liveUrl(loc: Location = window.location): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/operator/system/live`;
}

export class LiveClient {
  private state: LiveState = initialState;
  private ws: WebSocket | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private tickTimer: ReturnType<typeof setInterval> | null = null;
  private listeners = new Set<Listener>();
  private stopped = true;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly WS: typeof WebSocket;
  private sections: string[] | undefined;
  /** The live tail's filter (null: no tail); sent again after every hello (reconnects included). */
  private tail: Record<string, unknown> | null = null;
  private eventsListeners = new Set<EventsListener>();
  private replayListeners = new Set<ReplayListener>();
  /** Asked after every hello (a reconnect, other sections): the replay to go on with, or null. */
  private resume: (() => ReplayMsg | null) | null = null;

  constructor(private readonly opts: LiveOptions) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.WS = opts.WebSocketImpl ?? WebSocket;
    this.sections = opts.sections;
  }

  /**
   * Ask for other view sections (undefined: the default stream). On an open socket this is a new
   * hello on the same connection (the gateway re-registers the client and sends a snapshot), so a
   * page change never reconnects; otherwise it applies from the next connect.
   */
  setSections(sections: string[] | undefined): void {
    const key = (s: string[] | undefined) => (s ? [...s].sort().join(",") : "");
    if (key(sections) === key(this.sections)) return;
    this.sections = sections ? [...sections] : undefined;
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 || this.stopped) return;
    void (async () => {
      let token: string | null = null;
      try {
        token = await this.opts.getToken();
      } catch {
        token = null;
      }
      if (this.ws !== ws || ws.readyState !== 1) return;
      ws.send(JSON.stringify(this.hello(token)));
      this.sendResume(ws);
    })();
  }

  /**
   * Time travel (docs/websocket.md "Replay"): send a `replay` or `live` message now if the socket is
   * open; false if it is not (the `resume` callback asks again after the next hello).
   */
  sendReplay(msg: ReplayMsg): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 || this.state.phase === "connecting") return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** The replay to go on with after each hello (a replay is per connection and per sections). */
  setResume(fn: (() => ReplayMsg | null) | null): void {
    this.resume = fn;
  }

  /** `replay` frames (acknowledgements, refusals, "caught up"): to the replay controller. */
  onReplay(fn: ReplayListener): () => void {
    this.replayListeners.add(fn);
    return () => this.replayListeners.delete(fn);
  }

  private sendResume(ws: WebSocket): void {
    const msg = this.resume?.() ?? null;
    if (msg && msg.type === "replay") ws.send(JSON.stringify(msg));
  }

  private hello(token: string | null): Record<string, unknown> {
    const hello: Record<string, unknown> = { type: "hello" };
    if (token) hello.token = token;
    if (this.sections) hello.sections = this.sections;
    return hello;
  }

  /**
   * Tail events matching `filter` (null: stop). Kept across reconnects: the tail is asked for again
   * after each hello. Frames go to onEvents() listeners, not to the view reducer.
   */
  setTail(filter: Record<string, unknown> | null): void {
    this.tail = filter;
    const ws = this.ws;
    if (ws && ws.readyState === 1 && this.state.phase !== "connecting") {
      ws.send(JSON.stringify(filter ? { type: "tail", filter } : { type: "untail" }));
    }
  }

  onEvents(fn: EventsListener): () => void {
    this.eventsListeners.add(fn);
    return () => this.eventsListeners.delete(fn);
  }

  getState(): LiveState {
    return this.state;
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.tickTimer = setInterval(() => this.dispatch({ type: "tick", now: this.now() }), 1000);
    window.addEventListener("online", this.onOnline);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.retryTimer = this.tickTimer = null;
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "page closed");
  }

  /**
   * A new token is there (OIDC renewal or login): on an open socket send it in a new hello (the
   * gateway re-checks it and moves the connection's expiry), so the connection is never dropped for
   * a renewal; otherwise connect now with it.
   */
  renewToken(): void {
    if (this.stopped) return;
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 || this.state.phase !== "live") {
      this.reconnectNow();
      return;
    }
    void (async () => {
      let token: string | null = null;
      try {
        token = await this.opts.getToken();
      } catch {
        token = null;
      }
      if (this.ws !== ws || ws.readyState !== 1) return;
      if (token) ws.send(JSON.stringify(this.hello(token)));
      else this.reconnectNow();
    })();
  }

  /** Connect again now (after a login, or when the user asks). */
  reconnectNow(): void {
    if (this.stopped) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= 1) ws.close(1000, "reconnect");
    void this.connect();
  }

  private onOnline = (): void => {
    if (this.state.phase === "reconnecting") this.reconnectNow();
  };

  private dispatch(action: Action): void {
    const { state, send } = step(this.state, action);
    if (send && this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(send));
    if (state !== this.state) {
      this.state = state;
      for (const fn of this.listeners) fn(state);
    }
  }

  private async connect(): Promise<void> {
    this.dispatch({ type: "connecting", now: this.now() });
    let token: string | null = null;
    try {
      token = await this.opts.getToken();
    } catch {
      token = null;
    }
    if (this.stopped) return;
    let ws: WebSocket;
    try {
      ws = new this.WS(this.opts.url);
    } catch {
      this.scheduleRetry(1006, "cannot open the socket");
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      ws.send(JSON.stringify(this.hello(token)));
      if (this.tail) ws.send(JSON.stringify({ type: "tail", filter: this.tail }));
      this.dispatch({ type: "open", now: this.now() });
      this.sendResume(ws);
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (this.ws !== ws || typeof ev.data !== "string") return;
      let msg: ServerMsg;
      try {
        msg = JSON.parse(ev.data) as ServerMsg;
      } catch {
        return;
      }
      const kind = msg && typeof msg === "object" ? (msg as { type: unknown }).type : null;
      if (kind === "replay") {
        for (const fn of this.replayListeners) fn(msg as unknown as ReplayFrame);
        return;
      }
      if (kind === "events" || kind === "tail") {
        for (const fn of this.eventsListeners) fn(msg as unknown as EventsFrame | TailFrame);
        return;
      }
      if (msg && typeof msg === "object" && typeof msg.type === "string") {
        this.dispatch({ type: "message", msg, now: this.now() });
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.scheduleRetry(ev.code, ev.reason);
    };
    // onerror is always followed by onclose; nothing to do here (and nothing to log: the page says it).
    ws.onerror = () => undefined;
  }

  private scheduleRetry(code: number, reason: string): void {
    if (this.stopped) return;
    const terminal = code === 4401 || code === 4403;
    const delay = terminal ? null : backoffMs(this.state.attempt, this.random(), code);
    const now = this.now();
    this.dispatch({ type: "closed", code, reason, retryAt: delay === null ? null : now + delay, now });
    if (delay !== null) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        void this.connect();
      }, delay);
    }
  }
}
