/**
 * The client-side router: path-based URLs with history.pushState (no hash), so a link to any page
 * can be shared and survives a reload (the gateway serves index.html for the routes of routes.ts).
 *
 * Our own ~60 lines rather than preact-iso or wouter-preact: all we need is a pattern match with
 * `:params`, a location hook and click interception; both libraries bring lazy loading, hydration,
 * nested routers and their own <Router> components that the pages would then depend on.
 */
import { createContext } from "preact";
import { useContext, useEffect, useState } from "preact/hooks";

export type Params = Record<string, string>;

/** `pattern` ("/component/:name", a trailing "/*" takes the rest) against a path: params or null. */
export function matchPath(pattern: string, path: string): Params | null {
  const pat = pattern.split("/").filter(Boolean);
  const seg = path.split("/").filter(Boolean);
  const rest = pat[pat.length - 1] === "*";
  if (rest ? seg.length < pat.length - 1 : seg.length !== pat.length) return null;
  const params: Params = {};
  for (let i = 0; i < pat.length; i++) {
    const p = pat[i]!;
    if (p === "*") {
      params["*"] = seg.slice(i).join("/");
      break;
    }
    let s: string;
    try {
      s = decodeURIComponent(seg[i]!);
    } catch {
      return null; // a malformed %-escape is no match (the page says "not found"), not a crash
    }
    if (p.startsWith(":")) params[p.slice(1)] = s;
    else if (p !== s) return null;
  }
  return params;
}

export interface Loc {
  path: string;
  query: URLSearchParams;
}

function current(): Loc {
  return { path: window.location.pathname, query: new URLSearchParams(window.location.search) };
}

const listeners = new Set<() => void>();

/** Go to `url` (same origin) without a page load; `replace` keeps the history length. */
export function navigate(url: string, opts: { replace?: boolean } = {}): void {
  const target = new URL(url, window.location.href);
  if (target.href === window.location.href) return;
  if (opts.replace) window.history.replaceState(null, "", target.href);
  else window.history.pushState(null, "", target.href);
  if (!opts.replace && !target.hash) window.scrollTo(0, 0);
  listeners.forEach((fn) => fn());
}

/** The current location, re-rendering on navigate() and on back/forward. */
export function useLocation(): Loc {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const on = () => setLoc(current());
    listeners.add(on);
    window.addEventListener("popstate", on);
    return () => {
      listeners.delete(on);
      window.removeEventListener("popstate", on);
    };
  }, []);
  return loc;
}

/**
 * Plain `<a href="/logs?q=x">` links anywhere in the app navigate without a reload when `isRoute`
 * says the path is ours; modified clicks (new tab), other origins, downloads and targets are left
 * to the browser. Returns the function that removes the listener.
 */
export function interceptLinks(
  isRoute: (path: string) => boolean,
  root: Document = document,
  /** What to navigate to instead (time travel keeps the moment shown across pages); default the link. */
  rewrite: (url: URL) => string = (url) => url.pathname + url.search + url.hash,
): () => void {
  const on = (ev: MouseEvent) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = (ev.target as Element | null)?.closest?.("a[href]");
    if (!(a instanceof HTMLAnchorElement) || (a.target && a.target !== "_self") || a.hasAttribute("download")) return;
    const url = new URL(a.href, window.location.href);
    if (url.origin !== window.location.origin || !isRoute(url.pathname)) return;
    ev.preventDefault();
    navigate(rewrite(url));
  };
  root.addEventListener("click", on);
  return () => root.removeEventListener("click", on);
}

/** The params of the route being shown (`useParams().name` on /component/:name). */
export const ParamsContext = createContext<Params>({});
export function useParams(): Params {
  return useContext(ParamsContext);
}
