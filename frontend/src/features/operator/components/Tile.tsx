import type { ComponentChildren } from "preact";
import { fmtAge } from "../../../utils/format";

export interface TileProps {
  title: string;
  ageS: number | null;
  stale: boolean;
  class?: string;
  testId?: string;
  extra?: ComponentChildren;
  children: ComponentChildren;
}

/** A dashboard panel: title, content, and its own data age; greyed and labelled when stale. */
export function Tile({ title, ageS, stale, class: cls, testId, extra, children }: TileProps) {
  return (
    <section class={`tile${stale ? " stale" : ""}${cls ? ` ${cls}` : ""}`} data-testid={testId} data-stale={stale}>
      <header class="tile-head">
        <h2>{title}</h2>
        {extra}
      </header>
      <div class="tile-body">{children}</div>
      <footer class="tile-foot">
        {stale && <span class="stale-word">‖ stale</span>}
        <span class="age" data-testid={testId ? `${testId}-age` : undefined} title="age of this panel's data">
          data {fmtAge(ageS)}
        </span>
      </footer>
    </section>
  );
}
