/**
 * What the pages see while a replay runs: the replayed view with its ages on the replay clock, never
 * the live one. Pure: the wall clock (`now`, ms) is an argument.
 */
import type { LiveState } from "../live/reducer";
import { clockS, type ReplayState } from "./reducer";

export interface Shown {
  /** The state the pages render. */
  live: LiveState;
  /** The clock (ms) their ages count against: the replay clock while replaying, else the wall. */
  now: number;
  /** The replay clock (Unix s), or null when live. */
  clockS: number | null;
}

/**
 * Live: the state and the wall clock as they are. Replaying: only a view that came as a replay frame
 * is shown (until the replayed snapshot arrives the page waits: a live view must never pass for the
 * past); it "arrived" at its own `meta.generated_at` and ages count against the replay clock, so a
 * paused moment stays as fresh as it was then, and a gap in the recording goes stale as it did.
 * The gateway's live staleness word does not apply to the past.
 */
export function shownState(live: LiveState, replay: ReplayState, now: number): Shown {
  const clock = clockS(replay, now);
  if (clock === null) return { live, now, clockS: null };
  if (!live.replay || live.view === null || replay.phase === "refused") {
    return {
      live: { ...live, view: null, seq: null, receivedAt: null, gatewayStale: false, gatewayAgeS: null,
        phase: live.phase === "live" ? "syncing" : live.phase },
      now: clock * 1000,
      clockS: clock,
    };
  }
  const gen = live.view.meta?.generated_at;
  const at = typeof gen === "number" && Number.isFinite(gen) ? gen * 1000 : null;
  return {
    live: { ...live, receivedAt: at ?? live.receivedAt, gatewayStale: false, gatewayAgeS: null },
    now: Math.max(clock * 1000, at ?? 0),
    clockS: clock,
  };
}
