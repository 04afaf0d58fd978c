import { describe, expect, it } from "vitest";
import type { PatchMsg, SnapshotMsg, View } from "../../api/types";
import { mergePatch } from "./mergePatch";
import { type Action, applyAppend, backoffMs, initialState, type LiveState, RESYNC_RETRY_MS, step } from "./reducer";

const view = (seq: number, extra: Partial<View> = {}): View => ({
  meta: { seq, series_len: 3, tick_s: 1 },
  health: { status: "healthy", components: { ingest: { status: "healthy", queue_depth: 0 } } },
  metrics: { throughput: { ingest_rate_per_sec: 10 } },
  series: { ingest_rate: [[100, 1], [101, 2]] },
  ...extra,
});

const snap = (seq: number, state = view(seq)): SnapshotMsg => ({ type: "snapshot", seq, state });
const patch = (seq: number, base: number, p: Record<string, unknown> = {}, append?: PatchMsg["append"]): PatchMsg => ({
  type: "patch", seq, base, ts: seq, patch: { meta: { seq }, ...p }, append,
});

function run(actions: Action[], from: LiveState = initialState): { state: LiveState; sent: unknown[] } {
  let state = from;
  const sent: unknown[] = [];
  for (const a of actions) {
    const r = step(state, a);
    state = r.state;
    if (r.send) sent.push(r.send);
  }
  return { state, sent };
}

const msg = (m: SnapshotMsg | PatchMsg, now = 1000): Action => ({ type: "message", msg: m, now });
const connected = (): LiveState => run([{ type: "connecting", now: 0 }, { type: "open", now: 0 }]).state;

describe("mergePatch (RFC 7396)", () => {
  it("merges, replaces and deletes members without mutating its input", () => {
    const target = { a: 1, b: { c: 2, d: 3 }, l: [1, 2] };
    const out = mergePatch(target, { a: 5, b: { d: null, e: 4 }, l: [9] });
    expect(out).toEqual({ a: 5, b: { c: 2, e: 4 }, l: [9] });
    expect(target).toEqual({ a: 1, b: { c: 2, d: 3 }, l: [1, 2] });
  });
  it("replaces the whole target when the patch is not an object", () => {
    expect(mergePatch({ a: 1 }, [1])).toEqual([1]);
    expect(mergePatch({ a: 1 }, "x")).toBe("x");
  });
  it("replaces a non-object target by an object patch (RFC 7396 appendix A)", () => {
    expect(mergePatch(["a"], { a: "b" })).toEqual({ a: "b" });
    expect(mergePatch({}, { a: { bb: { ccc: null } } })).toEqual({ a: { bb: {} } });
  });
});

describe("live reducer", () => {
  it("starts idle with no view; open waits for a snapshot", () => {
    expect(initialState.view).toBeNull();
    const s = connected();
    expect(s.phase).toBe("syncing");
    expect(s.awaitingSnapshot).toBe(true);
  });

  it("applies a snapshot whole", () => {
    const { state, sent } = run([msg(snap(7))], connected());
    expect(state.phase).toBe("live");
    expect(state.seq).toBe(7);
    expect(state.view?.metrics?.throughput?.ingest_rate_per_sec).toBe(10);
    expect(state.receivedAt).toBe(1000);
    expect(sent).toEqual([]);
  });

  it("puts new feed entries in front of the error feed, keeping errors_len, without touching the old view", () => {
    const base = view(1, { meta: { seq: 1, series_len: 3, tick_s: 1, errors_len: 3 },
      errors: { errors: [{ id: 2, message: "b" }, { id: 1, message: "a" }], counts: { quarantined_1h: 0 } } });
    const s0 = run([msg(snap(1, base))], connected()).state;
    const p: PatchMsg = { ...patch(2, 1), errors: [{ id: 4, message: "d" }, { id: 3, message: "c" }] };
    const s1 = run([msg(p)], s0).state;
    expect(s1.view?.errors?.errors?.map((e) => e.id)).toEqual([4, 3, 2]);
    expect(s1.view?.errors?.counts).toEqual({ quarantined_1h: 0 });
    expect(s0.view?.errors?.errors?.map((e) => e.id)).toEqual([2, 1]);
    // a patch without entries leaves the feed as it is
    expect(run([msg(patch(3, 2))], s1).state.view?.errors?.errors?.map((e) => e.id)).toEqual([4, 3, 2]);
  });

  it("applies in-sequence patches: merge, delete (null = unknown), appends trimmed to series_len", () => {
    const { state, sent } = run(
      [
        msg(snap(7)),
        msg(patch(8, 7, { metrics: { throughput: { ingest_rate_per_sec: 12.5 } } }, { ingest_rate: [102, 3] }), 2000),
        msg(patch(9, 8, { metrics: { throughput: { ingest_rate_per_sec: null } } }, { ingest_rate: [103, null], alert_rate: [103, 0] }), 3000),
      ],
      connected(),
    );
    expect(sent).toEqual([]);
    expect(state.seq).toBe(9);
    expect(state.view?.meta?.seq).toBe(9);
    // deleted member: unknown, not 0
    expect(state.view?.metrics?.throughput?.ingest_rate_per_sec).toBeUndefined();
    // series_len 3: the oldest point dropped from the front
    expect(state.view?.series?.ingest_rate).toEqual([[101, 2], [102, 3], [103, null]]);
    expect(state.view?.series?.alert_rate).toEqual([[103, 0]]);
    expect(state.counters.patches).toBe(2);
    expect(state.receivedAt).toBe(3000);
  });

  it("does not mutate the previous state's view (components may still hold it)", () => {
    const s1 = run([msg(snap(7))], connected()).state;
    const before = JSON.stringify(s1.view);
    run([msg(patch(8, 7, { health: { status: "down" } }, { ingest_rate: [102, 3] }))], s1);
    expect(JSON.stringify(s1.view)).toBe(before);
  });

  it("on a sequence gap asks for a resync once and ignores patches until the snapshot", () => {
    const s1 = run([msg(snap(7))], connected()).state;
    const { state, sent } = run(
      [
        msg(patch(9, 8, { health: { status: "down" } }), 2000), // gap: 8 was missed
        msg(patch(10, 9), 2500), // still waiting: no second resync yet
      ],
      s1,
    );
    expect(sent).toEqual([{ type: "resync" }]);
    expect(state.awaitingSnapshot).toBe(true);
    expect(state.seq).toBe(7);
    expect(state.view?.health?.status).toBe("healthy"); // the gapped patch was not applied
    expect(state.counters.gaps).toBe(1);

    const after = run([msg(snap(10, view(10, { health: { status: "degraded" } })), 3000)], state).state;
    expect(after.awaitingSnapshot).toBe(false);
    expect(after.seq).toBe(10);
    expect(after.view?.health?.status).toBe("degraded");
    const next = run([msg(patch(11, 10), 4000)], after);
    expect(next.sent).toEqual([]);
    expect(next.state.seq).toBe(11);
  });

  it("asks again when a resync goes unanswered", () => {
    const s1 = run([msg(snap(7)), msg(patch(9, 8), 2000)], connected());
    expect(s1.sent).toHaveLength(1);
    const early = run([{ type: "tick", now: 2000 + RESYNC_RETRY_MS - 1 }], s1.state);
    expect(early.sent).toEqual([]);
    const late = run([{ type: "tick", now: 2000 + RESYNC_RETRY_MS }], s1.state);
    expect(late.sent).toEqual([{ type: "resync" }]);
  });

  it("ignores a repeated or older patch without a resync", () => {
    const s1 = run([msg(snap(7)), msg(patch(8, 7))], connected()).state;
    const { state, sent } = run([msg(patch(8, 7)), msg(patch(6, 5))], s1);
    expect(sent).toEqual([]);
    expect(state.seq).toBe(8);
    expect(state.counters.ignored).toBe(2);
  });

  it("treats a patch before any snapshot as a gap (the hello already asked for one)", () => {
    const s = connected();
    const early = run([msg(patch(3, 2), 1000)], { ...s, resyncSentAt: 0 });
    expect(early.state.view).toBeNull();
    expect(early.sent).toEqual([]);
    const late = run([msg(patch(3, 2), RESYNC_RETRY_MS + 1)], { ...s, resyncSentAt: 0 });
    expect(late.sent).toEqual([{ type: "resync" }]);
  });

  it("keeps the last view while reconnecting, and counts attempts", () => {
    const s1 = run([msg(snap(7))], connected()).state;
    const closed = run([{ type: "closed", code: 1006, reason: "", retryAt: 5000, now: 4000 }], s1).state;
    expect(closed.phase).toBe("reconnecting");
    expect(closed.view).not.toBeNull();
    expect(closed.attempt).toBe(1);
    expect(closed.retryAt).toBe(5000);
    const again = run([{ type: "connecting", now: 5000 }, { type: "open", now: 5100 }, msg(snap(20), 5200)], closed).state;
    expect(again.phase).toBe("live");
    expect(again.attempt).toBe(0);
    expect(again.seq).toBe(20);
  });

  it("stops retrying on 4401 and 4403", () => {
    const s = connected();
    const u = run([{ type: "closed", code: 4401, reason: "unauthorized", retryAt: null, now: 1 }], s).state;
    expect(u.phase).toBe("unauthorized");
    expect(u.retryAt).toBeNull();
    const f = run([{ type: "closed", code: 4403, reason: "forbidden", retryAt: null, now: 1 }], s).state;
    expect(f.phase).toBe("forbidden");
  });

  it("records the gateway's meta (stale) and error messages", () => {
    const s = run(
      [
        msg(snap(7)),
        { type: "message", msg: { type: "meta", stale: true, age_s: 12.5, gateway: "gw-1" }, now: 2000 },
        { type: "message", msg: { type: "error", code: "unauthorized", message: "bad token" }, now: 2000 },
      ],
      connected(),
    ).state;
    expect(s.gatewayStale).toBe(true);
    expect(s.gatewayAgeS).toBe(12.5);
    expect(s.gateway).toBe("gw-1");
    expect(s.lastError).toEqual({ code: "unauthorized", message: "bad token" });
  });
});

describe("a new connection", () => {
  it("forgets the previous gateway's stale word", () => {
    const stale = run([msg(snap(7)), { type: "message", msg: { type: "meta", stale: true, age_s: 9 }, now: 2 }], connected()).state;
    const reopened = run([{ type: "closed", code: 1006, reason: "", retryAt: 10, now: 5 }, { type: "connecting", now: 10 }, { type: "open", now: 11 }], stale).state;
    expect(reopened.gatewayStale).toBe(false);
    expect(reopened.view).not.toBeNull();
  });
});

describe("applyAppend", () => {
  it("pushes and trims from the front to maxLen", () => {
    const out = applyAppend({ a: [[1, 1], [2, 2]] }, { a: [3, 3], b: [3, 9] }, 2);
    expect(out).toEqual({ a: [[2, 2], [3, 3]], b: [[3, 9]] });
  });
  it("trims a series that was longer than a reduced maxLen", () => {
    expect(applyAppend({ a: [[1, 1], [2, 2], [3, 3]] }, { a: [4, 4] }, 2).a).toEqual([[3, 3], [4, 4]]);
  });
});

describe("backoffMs", () => {
  it("grows exponentially with jitter and is capped", () => {
    expect(backoffMs(0, 0)).toBe(250);
    expect(backoffMs(0, 0.999)).toBeLessThanOrEqual(500);
    expect(backoffMs(3, 0)).toBe(2000);
    expect(backoffMs(30, 0.999)).toBeLessThanOrEqual(30000);
    expect(backoffMs(30, 0)).toBe(15000);
  });
  it("waits longer after a rate-limit close (4429)", () => {
    expect(backoffMs(0, 0, 4429)).toBeGreaterThanOrEqual(2500);
  });
});

describe("live reducer: replay frames (issue 19)", () => {
  const rsnap = (seq: number, state = view(seq)): SnapshotMsg => ({ type: "snapshot", replay: true, seq, state });
  const rpatch = (seq: number, base: number, p: Record<string, unknown> = {}): PatchMsg => ({
    ...patch(seq, base, p), replay: true,
  });

  it("marks a view from a replay snapshot, and a live snapshot clears the mark", () => {
    const r = run([msg(snap(50)), msg(rsnap(7))], connected());
    expect(r.state.replay).toBe(true);
    expect(r.state.seq).toBe(7);
    const back = run([msg(snap(60))], r.state);
    expect(back.state.replay).toBe(false);
    expect(back.state.seq).toBe(60);
  });

  it("applies replay patches to a replayed view", () => {
    const r = run([msg(rsnap(7)), msg(rpatch(8, 7, { health: { status: "down" } }))], connected());
    expect(r.state.view?.health?.status).toBe("down");
    expect(r.state.seq).toBe(8);
    expect(r.sent).toEqual([]);
  });

  it("ignores a frame of the other kind without asking for a resync", () => {
    // a live patch in flight when the replay began, then a replay patch after going live again
    const r = run([msg(rsnap(7)), msg(patch(51, 50, { health: { status: "down" } }))], connected());
    expect(r.state.view?.health?.status).toBe("healthy");
    expect(r.state.counters.ignored).toBe(1);
    expect(r.sent).toEqual([]);
    const live = run([msg(snap(60)), msg(rpatch(8, 7, { health: { status: "down" } }))], r.state);
    expect(live.state.view?.health?.status).toBe("healthy");
    expect(live.state.seq).toBe(60);
    expect(live.sent).toEqual([]);
  });
});
