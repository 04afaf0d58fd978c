import { describe, expect, it } from "vitest";
import type { LiveState } from "../live/reducer";
import { initialState } from "../live/reducer";
import { clockS, initialReplay, type ReplayAction, type ReplayState, type ReplayStep, stepReplay } from "./reducer";
import { shownState } from "./shown";

const T = 1796025600;

function run(actions: ReplayAction[], from: ReplayState = initialReplay): { state: ReplayState; steps: ReplayStep[] } {
  let state = from;
  const steps: ReplayStep[] = [];
  for (const a of actions) {
    const r = stepReplay(state, a);
    steps.push(r);
    state = r.state;
  }
  return { state, steps };
}

const ack = (from: number, speed: number, now: number): ReplayAction =>
  ({ type: "frame", frame: { type: "replay", ok: true, from, speed }, now });

describe("replay reducer", () => {
  it("is live at first: no clock", () => {
    expect(initialReplay.phase).toBe("off");
    expect(clockS(initialReplay, 5000)).toBeNull();
  });

  it("a link with at opens paused at that moment, without writing the URL again", () => {
    const r = stepReplay(initialReplay, { type: "url", at: T, now: 1000 });
    expect(r.send).toEqual({ type: "replay", from: T, speed: 0 });
    expect(r.url).toBeNull();
    expect(r.state.phase).toBe("asking");
    expect(r.state.playing).toBe(false);
    expect(clockS(r.state, 99_000)).toBe(T);
    // the same URL again (a re-render) asks nothing
    expect(stepReplay(r.state, { type: "url", at: T, now: 2000 }).send).toBeNull();
  });

  it("the clock stands until the gateway answers, then runs at the speed; pause stops it and writes the URL", () => {
    const { state, steps } = run([
      { type: "url", at: T, now: 0 },
      ack(T, 0, 100),
      { type: "play", now: 1000 },
    ]);
    expect(steps[2]!.send).toEqual({ type: "replay", from: T, speed: 10 });
    expect(clockS(state, 5000)).toBe(T); // asking: stands
    const running = stepReplay(state, ack(T, 10, 2000)).state;
    expect(running.phase).toBe("running");
    expect(clockS(running, 2000)).toBe(T);
    expect(clockS(running, 5000)).toBe(T + 30); // 3 s at 10x
    const paused = stepReplay(running, { type: "pause", now: 5000 });
    expect(paused.send).toEqual({ type: "replay", from: T + 30, speed: 0 });
    expect(paused.url).toEqual({ at: T + 30, push: false });
    expect(clockS(paused.state, 60_000)).toBe(T + 30);
    expect(paused.state.urlAt).toBe(T + 30);
    // the URL the pause wrote comes back through the location: nothing more to ask
    expect(stepReplay(paused.state, { type: "url", at: T + 30, now: 5100 }).send).toBeNull();
  });

  it("changes speed from where the clock stands; while paused only remembers it", () => {
    const playing = run([{ type: "url", at: T, now: 0 }, { type: "play", now: 0 }, ack(T, 10, 0)]).state;
    const r = stepReplay(playing, { type: "speed", speed: 60, now: 2000 });
    expect(r.send).toEqual({ type: "replay", from: T + 20, speed: 60 });
    const paused = run([{ type: "url", at: T, now: 0 }]).state;
    const p = stepReplay(paused, { type: "speed", speed: 1, now: 10 });
    expect(p.send).toBeNull();
    expect(p.state.speed).toBe(1);
    expect(stepReplay(p.state, { type: "play", now: 20 }).send).toEqual({ type: "replay", from: T, speed: 1 });
  });

  it("a seek from live pushes a history entry; a seek while replaying replaces it and keeps playing", () => {
    const first = stepReplay(initialReplay, { type: "seek", at: T, now: 0 });
    expect(first.url).toEqual({ at: T, push: true });
    expect(first.send).toEqual({ type: "replay", from: T, speed: 0 });
    const playing = run([{ type: "play", now: 0 }, ack(T, 10, 0)], first.state).state;
    const again = stepReplay(playing, { type: "seek", at: T - 600, now: 500 });
    expect(again.url).toEqual({ at: T - 600, push: false });
    expect(again.send).toEqual({ type: "replay", from: T - 600, speed: 10 });
  });

  it("ignores the answer to an older request", () => {
    const s = run([{ type: "seek", at: T, now: 0 }, { type: "seek", at: T - 60, now: 10 }, ack(T, 0, 20)]).state;
    expect(s.phase).toBe("asking");
    expect(stepReplay(s, ack(T - 60, 0, 30)).state.phase).toBe("running");
  });

  it("back to live sends live and removes at from the URL; a URL without at goes live without writing it", () => {
    const s = run([{ type: "url", at: T, now: 0 }, ack(T, 0, 1)]).state;
    const live = stepReplay(s, { type: "live", now: 2 });
    expect(live.send).toEqual({ type: "live" });
    expect(live.url).toEqual({ at: null, push: false });
    expect(live.state.phase).toBe("off");
    const back = stepReplay(s, { type: "url", at: null, now: 2 });
    expect(back.send).toEqual({ type: "live" });
    expect(back.url).toBeNull();
    // already live: nothing to send
    expect(stepReplay(live.state, { type: "live", now: 3 }).send).toBeNull();
  });

  it("a refusal keeps the replay mode with the reason; play asks again", () => {
    const s = run([
      { type: "url", at: 10, now: 0 },
      { type: "frame", frame: { type: "replay", ok: false, code: "not_recorded", message: "nothing recorded", oldest: T - 3600 }, now: 1 },
    ]).state;
    expect(s.phase).toBe("refused");
    expect(s.error).toEqual({ code: "not_recorded", message: "nothing recorded", oldest: T - 3600 });
    expect(stepReplay(s, { type: "seek", at: T - 60, now: 2 }).state.error).toBeNull();
  });

  it("a replay that caught up with the present ends live, at removed from the URL", () => {
    const s = run([{ type: "url", at: T, now: 0 }, { type: "play", now: 0 }, ack(T, 60, 0)]).state;
    const r = stepReplay(s, { type: "frame", frame: { type: "replay", ok: true, ended: "caught_up" }, now: 5 });
    expect(r.state.phase).toBe("off");
    expect(r.url).toEqual({ at: null, push: false });
    expect(r.send).toBeNull();
  });

  it("after a reconnect asks again from where the clock stands", () => {
    const s = run([{ type: "url", at: T, now: 0 }, { type: "play", now: 0 }, ack(T, 10, 0)]).state;
    const r = stepReplay(s, { type: "resume", now: 4000 });
    expect(r.send).toEqual({ type: "replay", from: T + 40, speed: 10 });
    expect(stepReplay(initialReplay, { type: "resume", now: 1 }).send).toBeNull();
  });
});

describe("shownState: nothing looks live while replaying", () => {
  const liveState = (replay: boolean, gen: number): LiveState => ({
    ...initialState, phase: "live", replay, seq: 5, receivedAt: 9_999_000, gatewayStale: true, gatewayAgeS: 3,
    view: { meta: { seq: 5, generated_at: gen }, health: { status: "down" } },
  });

  it("live: the state and the wall clock as they are", () => {
    const l = liveState(false, T);
    expect(shownState(l, initialReplay, 123)).toEqual({ live: l, now: 123, clockS: null });
  });

  it("replaying: a live view is never shown; the page waits for the replayed one", () => {
    const s = run([{ type: "url", at: T, now: 0 }]).state;
    const shown = shownState(liveState(false, T + 9999), s, 10_000);
    expect(shown.live.view).toBeNull();
    expect(shown.live.phase).toBe("syncing");
    expect(shown.clockS).toBe(T);
  });

  it("replaying: ages count on the replay clock from the view's own time, whatever the wall says", () => {
    const s = run([{ type: "url", at: T, now: 0 }, ack(T, 0, 0)]).state;
    const shown = shownState(liveState(true, T - 0.4), s, 9_999_999);
    expect(shown.live.receivedAt).toBe((T - 0.4) * 1000);
    expect(shown.now).toBe(T * 1000);
    expect(shown.live.gatewayStale).toBe(false);
    expect(shown.live.view?.health?.status).toBe("down");
  });

  it("a refused replay shows no view", () => {
    const s = run([{ type: "url", at: T, now: 0 },
      { type: "frame", frame: { type: "replay", ok: false, code: "history_off" }, now: 1 }]).state;
    expect(shownState(liveState(true, T), s, 5).live.view).toBeNull();
  });
});
