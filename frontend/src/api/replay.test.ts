import { describe, expect, it } from "vitest";
import { LiveClient } from "./live";
import { ReplayController } from "./replay";
import type { UrlWrite } from "../state/replay/reducer";

/** A WebSocket stand-in that records what the client sends (as in live.test.ts). */
class FakeWS {
  static last: FakeWS | null = null;
  readyState = 0;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(public url: string) {
    FakeWS.last = this;
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));
const T = 1796025600;

function setup() {
  let now = 1_000_000;
  const client = new LiveClient({
    url: "ws://x/operator/system/live",
    getToken: async () => null,
    WebSocketImpl: FakeWS as unknown as typeof WebSocket,
    now: () => now,
    random: () => 0,
  });
  const urls: UrlWrite[] = [];
  const ctl = new ReplayController(client, (w) => urls.push(w), () => now);
  return { client, ctl, urls, advance: (ms: number) => (now += ms) };
}

describe("ReplayController over the live connection", () => {
  it("asks for the URL's moment right after the hello, and hands replay frames to the reducer", async () => {
    const { client, ctl } = setup();
    ctl.dispatch({ type: "url", at: T, now: 0 }); // before the socket is open: nothing to send yet
    client.start();
    await tick();
    const ws = FakeWS.last!;
    ws.open();
    expect(ws.sent).toEqual([{ type: "hello" }, { type: "replay", from: T, speed: 0 }]);
    ws.receive({ type: "replay", ok: true, from: T, speed: 0, seq: 4, ts: T - 0.5 });
    expect(ctl.getState().phase).toBe("running");
    ws.receive({ type: "snapshot", replay: true, seq: 4, state: { meta: { seq: 4, generated_at: T - 0.5 } } });
    expect(client.getState().replay).toBe(true);
    client.stop();
  });

  it("after a reconnect asks again from where the replay clock stood", async () => {
    const { client, ctl, advance } = setup();
    client.start();
    await tick();
    const ws = FakeWS.last!;
    ws.open();
    ctl.dispatch({ type: "seek", at: T, now: 1_000_000 });
    ctl.dispatch({ type: "play", now: 1_000_000 });
    ws.receive({ type: "replay", ok: true, from: T, speed: 10 });
    advance(3000); // 3 s at 10x
    ws.onclose?.({ code: 1006, reason: "" });
    await new Promise((r) => setTimeout(r, 300)); // backoff with random 0: 250 ms
    const again = FakeWS.last!;
    expect(again).not.toBe(ws);
    again.open();
    expect(again.sent).toEqual([{ type: "hello" }, { type: "replay", from: T + 30, speed: 10 }]);
    client.stop();
  });

  it("a gap in the replayed frames asks for the replay again from the clock (no resync during a replay)", async () => {
    const { client, ctl } = setup();
    client.start();
    await tick();
    const ws = FakeWS.last!;
    ws.open();
    ctl.dispatch({ type: "seek", at: T, now: 1_000_000 });
    ws.receive({ type: "replay", ok: true, from: T, speed: 0, seq: 4 });
    ws.receive({ type: "snapshot", replay: true, seq: 4, state: { meta: { seq: 4, generated_at: T } } });
    const before = ws.sent.length;
    ws.receive({ type: "patch", replay: true, seq: 7, base: 6, ts: T + 3, patch: {} }); // 5 and 6 lost
    expect(ws.sent.slice(before)).toEqual([{ type: "resync" }, { type: "replay", from: T, speed: 0 }]);
    ws.receive({ type: "patch", replay: true, seq: 8, base: 7, ts: T + 4, patch: {} }); // still in the gap
    expect(ws.sent.length).toBe(before + 2); // asked once
    client.stop();
  });

  it("back to live sends live and removes the moment from the URL", async () => {
    const { client, ctl, urls } = setup();
    client.start();
    await tick();
    const ws = FakeWS.last!;
    ws.open();
    ctl.dispatch({ type: "seek", at: T, now: 0 });
    expect(urls).toEqual([{ at: T, push: true }]);
    ctl.dispatch({ type: "live", now: 1 });
    expect(ws.sent.at(-1)).toEqual({ type: "live" });
    expect(urls.at(-1)).toEqual({ at: null, push: false });
    ctl.dispose();
    client.stop();
  });
});
