/**
 * Time travel (issue 19): the replay's state machine, a pure reducer beside the live one.
 *
 * `step(state, action)` returns the next state, at most one message for the socket (`replay` or
 * `live`, docs/websocket.md) and, when the moment in the URL must change, what to write there. The
 * replay clock is `anchorS` at wall time `anchorWallMs`, advancing at `speed` while playing once the
 * gateway has acknowledged the request; paused (or waiting for the answer) it stands still. Time is
 * an argument (`now`, ms); nothing here reads a clock.
 */

export const SPEEDS = [1, 10, 60] as const;
export type Speed = (typeof SPEEDS)[number];

export type ReplayPhase =
  | "off" // live
  | "asking" // a replay request is on its way; the clock stands at anchorS
  | "running" // acknowledged: the frames of the past are arriving
  | "refused"; // the gateway said no (error says why); the page shows no view

export interface ReplayState {
  phase: ReplayPhase;
  /** Play at `speed`, or paused (speed 0 on the wire). */
  playing: boolean;
  speed: Speed;
  /** The replay clock (Unix s) at wall time `anchorWallMs` (ms). */
  anchorS: number;
  anchorWallMs: number;
  /** The moment in the URL as last read or written (null: none). */
  urlAt: number | null;
  error: { code: string; message: string; oldest: number | null } | null;
}

export type ReplayMsg = { type: "replay"; from: number; speed: number } | { type: "live" };

/** A `replay` frame from the gateway: an acknowledgement, the end of a replay, or a refusal. */
export interface ReplayFrame {
  type: "replay";
  ok: boolean;
  from?: number;
  speed?: number;
  ended?: string;
  code?: string;
  message?: string;
  oldest?: number | null;
}

export type ReplayAction =
  /** The URL's `at` (page load, back/forward, a pasted link): null goes live. */
  | { type: "url"; at: number | null; now: number }
  /** The scrubber picked a moment (keeps playing if it was playing). */
  | { type: "seek"; at: number; now: number }
  | { type: "play"; now: number }
  | { type: "pause"; now: number }
  | { type: "speed"; speed: Speed; now: number }
  /** "Back to live". */
  | { type: "live"; now: number }
  | { type: "frame"; frame: ReplayFrame; now: number }
  /** A new hello went out (reconnect, other sections): ask again from where the clock stands. */
  | { type: "resume"; now: number };

export interface UrlWrite {
  at: number | null;
  /** A new history entry (entering or leaving replay) rather than replacing the current one. */
  push: boolean;
}

export interface ReplayStep {
  state: ReplayState;
  send: ReplayMsg | null;
  url: UrlWrite | null;
}

export const initialReplay: ReplayState = {
  phase: "off",
  playing: false,
  speed: 10,
  anchorS: 0,
  anchorWallMs: 0,
  urlAt: null,
  error: null,
};

export function isReplaying(s: ReplayState): boolean {
  return s.phase !== "off";
}

/** The replay clock (Unix s) at wall time `now` (ms), or null when live. */
export function clockS(s: ReplayState, now: number): number | null {
  if (s.phase === "off") return null;
  if (s.phase !== "running" || !s.playing) return s.anchorS;
  return s.anchorS + (Math.max(0, now - s.anchorWallMs) / 1000) * s.speed;
}

function ask(s: ReplayState, at: number, now: number, playing: boolean, speed: Speed): ReplayState {
  return { ...s, phase: "asking", playing, speed, anchorS: at, anchorWallMs: now, error: null };
}

function msg(s: ReplayState): ReplayMsg {
  return { type: "replay", from: s.anchorS, speed: s.playing ? s.speed : 0 };
}

const none = (state: ReplayState): ReplayStep => ({ state, send: null, url: null });

function goLive(s: ReplayState, urlAlreadyLive: boolean): ReplayStep {
  if (s.phase === "off") return none({ ...s, urlAt: null });
  return {
    state: { ...s, phase: "off", playing: false, urlAt: null, error: null },
    send: { type: "live" },
    url: urlAlreadyLive ? null : { at: null, push: false },
  };
}

/** Same moment, to the millisecond (a URL holds milliseconds at most). */
function same(a: number | null, b: number | null): boolean {
  return a !== null && b !== null && Math.abs(a - b) < 0.001;
}

export function stepReplay(s: ReplayState, a: ReplayAction): ReplayStep {
  switch (a.type) {
    case "url": {
      if (a.at === null) return goLive(s, true);
      if (s.phase !== "off" && same(a.at, s.urlAt)) return none(s);
      // a link opens paused; moving along the URL (back/forward) keeps playing if it was
      const next = ask(s, a.at, a.now, s.phase !== "off" && s.playing, s.speed);
      return { state: { ...next, urlAt: a.at }, send: msg(next), url: null };
    }
    case "seek": {
      const next = ask(s, a.at, a.now, s.phase !== "off" && s.playing, s.speed);
      return {
        state: { ...next, urlAt: a.at },
        send: msg(next),
        url: { at: a.at, push: s.phase === "off" },
      };
    }
    case "play": {
      if (s.phase === "off" || (s.playing && s.phase !== "refused")) return none(s);
      const next = ask(s, clockS(s, a.now)!, a.now, true, s.speed);
      return { state: next, send: msg(next), url: null };
    }
    case "pause": {
      if (s.phase === "off" || !s.playing) return none(s);
      const at = clockS(s, a.now)!;
      const next = ask(s, at, a.now, false, s.speed);
      return { state: { ...next, urlAt: at }, send: msg(next), url: { at, push: false } };
    }
    case "speed": {
      if (a.speed === s.speed) return none(s);
      if (s.phase === "off" || !s.playing) return none({ ...s, speed: a.speed });
      const next = ask(s, clockS(s, a.now)!, a.now, true, a.speed);
      return { state: next, send: msg(next), url: null };
    }
    case "live":
      return goLive(s, false);
    case "resume": {
      if (s.phase === "off") return none(s);
      const next = ask(s, clockS(s, a.now)!, a.now, s.playing, s.speed);
      return { state: next, send: msg(next), url: null };
    }
    case "frame": {
      const f = a.frame;
      if (s.phase === "off") return none(s); // an answer to a replay already left
      if (f.ok && f.ended) {
        // caught up with the present: the gateway is live again, and so is the page
        return { state: { ...s, phase: "off", playing: false, urlAt: null, error: null }, send: null, url: { at: null, push: false } };
      }
      if (f.ok) {
        // the answer to an older request (a seek since): the next frame answers the current one
        if (s.phase !== "asking" || typeof f.from !== "number" || !same(f.from, s.anchorS)) return none(s);
        return none({ ...s, phase: "running", anchorWallMs: a.now });
      }
      if (s.phase !== "asking") return none(s);
      return none({
        ...s,
        phase: "refused",
        error: {
          code: String(f.code ?? "error"),
          message: String(f.message ?? "the gateway refused the replay"),
          oldest: typeof f.oldest === "number" ? f.oldest : null,
        },
      });
    }
  }
}
