/**
 * Time travel's controller: keeps the replay state (state/replay/reducer.ts), sends what the reducer
 * asks for over the shell's live connection, and writes the moment into the URL. It only moves
 * messages; every decision is the reducer's.
 */
import type { LiveClient } from "./live";
import { initialReplay, type ReplayAction, type ReplayState, stepReplay, type UrlWrite } from "../state/replay/reducer";

type Listener = (s: ReplayState) => void;

export class ReplayController {
  private state: ReplayState = initialReplay;
  private listeners = new Set<Listener>();
  private readonly off: () => void;
  private readonly offGap: () => void;
  /** The live reducer's gap count last seen: each new gap in replayed frames asks again, once. */
  private gaps = 0;

  constructor(
    private readonly client: LiveClient,
    /** Put the moment into the URL (null: remove it). */
    private readonly writeUrl: (w: UrlWrite) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.off = client.onReplay((frame) => this.dispatch({ type: "frame", frame, now: this.now() }));
    // A gap in replayed frames (one lost on the way): the gateway answers no resync during a replay,
    // so the replay is asked for again from where the clock stands; its snapshot ends the gap.
    this.offGap = client.subscribe((live) => {
      if (live.counters.gaps === this.gaps) return;
      this.gaps = live.counters.gaps;
      if (live.replay && this.state.phase === "running") this.dispatch({ type: "resume", now: this.now() });
    });
    // after every hello (reconnect, other sections) the replay is asked for again from where it stands
    client.setResume(() => {
      const { state, send } = stepReplay(this.state, { type: "resume", now: this.now() });
      this.set(state);
      return send;
    });
  }

  getState(): ReplayState {
    return this.state;
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  dispatch(action: ReplayAction): void {
    const { state, send, url } = stepReplay(this.state, action);
    this.set(state);
    if (send) this.client.sendReplay(send); // a closed socket: resume() asks after the next hello
    if (url) this.writeUrl(url);
  }

  dispose(): void {
    this.off();
    this.offGap();
    this.client.setResume(null);
  }

  private set(state: ReplayState): void {
    if (state === this.state) return;
    this.state = state;
    for (const fn of this.listeners) fn(state);
  }
}
