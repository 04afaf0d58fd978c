/**
 * A page loaded on first use (its own chunk): the route table stays synchronous while a page with a
 * heavy dependency (the graph's layout library) is fetched only when someone opens it.
 */
import type { ComponentType } from "preact";
import { useEffect, useState } from "preact/hooks";

export function lazyPage(load: () => Promise<{ default: ComponentType }>): ComponentType {
  let loaded: ComponentType | null = null;
  let failed: string | null = null;
  return function LazyPage() {
    const [, setTick] = useState(0);
    useEffect(() => {
      if (loaded || failed) return;
      load()
        .then((m) => { loaded = m.default; })
        .catch((e: unknown) => { failed = String(e); })
        .finally(() => setTick((t) => t + 1));
    }, []);
    if (loaded) {
      const Page = loaded;
      return <Page />;
    }
    return failed
      ? <p class="bad" role="alert">This page could not be loaded ({failed}); reload to try again.</p>
      : <p class="muted" role="status">Loading…</p>;
  };
}
