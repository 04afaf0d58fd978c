import { describe, expect, it } from "vitest";
import type { EventItem } from "../../api/events";
import {
  apiParams,
  DEFAULT_QUERY,
  emptyList,
  listReducer,
  logsAround,
  MAX_EVENTS,
  parseQuery,
  tailFilter,
  toSearch,
} from "./model";

function ev(ts: number, message = `m${ts}`, id: number | null = ts): EventItem {
  return {
    id, ts, timestamp: new Date(ts * 1000).toISOString(), service: "delivery", instance: "delivery-1",
    type: "webhook_timeout", severity: "error", message, attrs: {},
  };
}

describe("the URL", () => {
  it("round-trips every filter and leaves defaults out", () => {
    const q = { ...DEFAULT_QUERY, from: "-24h", service: "ingest", severity: "warning", q: "acme  timed", tail: false };
    expect(toSearch(q).toString()).toBe("from=-24h&service=ingest&severity=warning&q=acme++timed&tail=off");
    expect(parseQuery(toSearch(q))).toEqual(q);
    expect(toSearch(DEFAULT_QUERY).toString()).toBe("");
    expect(parseQuery(new URLSearchParams())).toEqual(DEFAULT_QUERY);
  });

  it("ignores an unknown severity and has no tail for a range that ended", () => {
    const q = parseQuery(new URLSearchParams("severity=fatal&from=100&to=200"));
    expect(q.severity).toBe("");
    expect(q.tail).toBe(false);
  });

  it("links to the minute either side of an event, for its service", () => {
    const url = new URL(logsAround(1000.4, "delivery"), "http://x");
    expect(url.pathname).toBe("/logs");
    expect(Object.fromEntries(url.searchParams)).toEqual({ from: "940", to: "1061", service: "delivery", at: "1000.4" });
    const q = parseQuery(url.searchParams);
    expect([q.from, q.to, q.service, q.tail]).toEqual(["940", "1061", "delivery", false]);
  });
});

describe("API and tail parameters", () => {
  it("pass the filters, the page size and the cursor", () => {
    const q = { ...DEFAULT_QUERY, service: "delivery", type: "log", q: " acme " };
    expect(apiParams(q, "123_4").toString()).toBe("from=-1h&service=delivery&type=log&q=acme&limit=100&before=123_4");
    expect(tailFilter(q)).toEqual({ service: ["delivery"], type: ["log"], q: "acme" });
    expect(tailFilter(DEFAULT_QUERY)).toEqual({});
  });
});

describe("the list", () => {
  it("appends older pages and keeps tail events that arrived while the first page loaded", () => {
    let s = listReducer(emptyList, { type: "reset" });
    s = listReducer(s, { type: "tail", events: [ev(30, "new", null)], dropped: 0 });
    s = listReducer(s, { type: "page", events: [ev(20), ev(10)], next: "10_10", append: false });
    expect(s.events.map((e) => e.ts)).toEqual([30, 20, 10]);
    s = listReducer(s, { type: "page", events: [ev(10), ev(5)], next: null, append: true });
    expect(s.events.map((e) => e.ts)).toEqual([30, 20, 10, 5]);
    expect(s.next).toBeNull();
  });

  it("does not show a tailed event twice when the store returns it too", () => {
    let s = listReducer(emptyList, { type: "reset" });
    s = listReducer(s, { type: "tail", events: [ev(30, "same", null)], dropped: 0 });
    s = listReducer(s, { type: "page", events: [ev(30, "same", 7), ev(20)], next: null, append: false });
    expect(s.events.map((e) => e.id)).toEqual([7, 20]);
    s = listReducer(s, { type: "tail", events: [ev(30, "same", null)], dropped: 2 });
    expect(s.events).toHaveLength(2);
    expect(s.tailDropped).toBe(2);
  });

  it("puts a batch of tail events newest first and stays bounded", () => {
    let s = listReducer(emptyList, { type: "page", events: [], next: "x", append: false });
    s = listReducer(s, { type: "tail", events: [ev(1), ev(3), ev(2)], dropped: 0 });
    expect(s.events.map((e) => e.ts)).toEqual([3, 2, 1]);
    const many = Array.from({ length: MAX_EVENTS + 10 }, (_, i) => ev(100 + i));
    s = listReducer(s, { type: "tail", events: many, dropped: 0 });
    expect(s.events).toHaveLength(MAX_EVENTS);
    expect(s.next).toBeNull();
    expect(s.tailed).toBe(3 + MAX_EVENTS + 10);
  });
});
