/**
 * The shell's one live connection, shared by every page: switching pages never reconnects.
 * `useLive()` gives the current state, a 1 s clock (so ages count up between updates), the client
 * (for reconnectNow) and whether the app is in wall mode.
 */
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { LiveClient } from "../api/live";
import { initialState, type LiveState } from "../state/live/reducer";

export interface LiveCtx {
  live: LiveState;
  now: number;
  client: LiveClient | null;
  wall: boolean;
  /** Time travel: the replay clock (Unix s) while the page shows a past moment, else null. */
  replayAt: number | null;
}

export const LiveContext = createContext<LiveCtx>({ live: initialState, now: 0, client: null, wall: false, replayAt: null });

export function useLive(): LiveCtx {
  return useContext(LiveContext);
}
