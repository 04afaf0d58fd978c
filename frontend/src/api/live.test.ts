import { describe, expect, it } from "vitest";
import { LiveClient } from "./live";

/** A WebSocket stand-in that records what the client sends. */
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
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("LiveClient sections", () => {
  it("asks for a page's sections with a new hello on the same socket, once per change", async () => {
    const client = new LiveClient({
      url: "ws://x/operator/system/live",
      getToken: async () => "tok",
      WebSocketImpl: FakeWS as unknown as typeof WebSocket,
    });
    client.setSections(["health", "alerts"]); // before start: goes in the first hello
    client.start();
    await tick();
    const ws = FakeWS.last!;
    ws.open();
    expect(ws.sent).toEqual([{ type: "hello", token: "tok", sections: ["health", "alerts"] }]);
    client.setSections(["alerts", "health"]); // same set: nothing sent
    await tick();
    expect(ws.sent).toHaveLength(1);
    client.setSections(undefined); // back to the default stream
    await tick();
    expect(FakeWS.last).toBe(ws); // no reconnect
    expect(ws.sent).toEqual([
      { type: "hello", token: "tok", sections: ["health", "alerts"] },
      { type: "hello", token: "tok" },
    ]);
    client.stop();
  });
});
