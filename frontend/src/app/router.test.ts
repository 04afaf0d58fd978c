import { afterEach, describe, expect, it } from "vitest";
import { resolve } from "./App";
import { interceptLinks, matchPath, navigate } from "./router";
import { routes } from "./routes";

describe("matchPath", () => {
  it("matches literal paths, with or without a trailing slash, and nothing deeper", () => {
    expect(matchPath("/", "/")).toEqual({});
    expect(matchPath("/history", "/history")).toEqual({});
    expect(matchPath("/history", "/history/")).toEqual({});
    expect(matchPath("/history", "/history/x")).toBeNull();
    expect(matchPath("/history", "/")).toBeNull();
    expect(matchPath("/", "/logs")).toBeNull();
  });
  it("decodes params and refuses a malformed escape", () => {
    expect(matchPath("/component/:name", "/component/ingest")).toEqual({ name: "ingest" });
    expect(matchPath("/component/:name", "/component/db%2Emain%20a")).toEqual({ name: "db.main a" });
    expect(matchPath("/component/:name", "/component/%E0%A4%A")).toBeNull();
    expect(matchPath("/component/:name", "/component")).toBeNull();
  });
  it("takes the rest with a trailing *", () => {
    expect(matchPath("/logs/*", "/logs")).toEqual({ "*": "" });
    expect(matchPath("/logs/*", "/logs/a/b")).toEqual({ "*": "a/b" });
  });
});

describe("the route table", () => {
  it("has the shared routes, one page each", () => {
    for (const p of ["/", "/history", "/logs", "/graph", "/alerts", "/component/postgres"]) {
      expect(resolve(p), p).not.toBeNull();
    }
    expect(resolve("/component/postgres")!.params).toEqual({ name: "postgres" });
    expect(resolve("/nope")).toBeNull();
    expect(routes.filter((r) => r.nav).map((r) => r.path)).toEqual(["/", "/history", "/logs", "/graph", "/alerts"]);
  });
});

describe("navigation", () => {
  let off: (() => void) | null = null;
  afterEach(() => {
    off?.();
    document.body.innerHTML = "";
    window.history.replaceState(null, "", "/");
  });
  it("pushes a path (no hash) and intercepts plain clicks on our links only", () => {
    navigate("/logs?q=timeout");
    expect(window.location.pathname).toBe("/logs");
    expect(window.location.search).toBe("?q=timeout");
    off = interceptLinks((p) => resolve(p) !== null);
    document.body.innerHTML = '<a id="ours" href="/alerts">a</a><a id="other" href="/api/x">b</a>';
    const ours = new MouseEvent("click", { bubbles: true, cancelable: true, button: 0 });
    document.getElementById("ours")!.dispatchEvent(ours);
    expect(ours.defaultPrevented).toBe(true);
    expect(window.location.pathname).toBe("/alerts");
    const other = new MouseEvent("click", { bubbles: true, cancelable: true, button: 0 });
    document.getElementById("other")!.dispatchEvent(other);
    expect(other.defaultPrevented).toBe(false);
    const newTab = new MouseEvent("click", { bubbles: true, cancelable: true, button: 0, ctrlKey: true });
    document.getElementById("ours")!.dispatchEvent(newTab);
    expect(newTab.defaultPrevented).toBe(false);
  });
  it("navigates where rewrite says (time travel keeps the moment across pages)", () => {
    off = interceptLinks((p) => resolve(p) !== null, document, (url) => `${url.pathname}?at=2026-11-30T08:00:00Z`);
    document.body.innerHTML = '<a id="ours" href="/alerts">a</a>';
    document.getElementById("ours")!.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true, button: 0 }));
    expect(window.location.pathname).toBe("/alerts");
    expect(new URLSearchParams(window.location.search).get("at")).toBe("2026-11-30T08:00:00Z");
  });
});
