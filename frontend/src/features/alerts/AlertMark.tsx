import type { View } from "../../api/types";
import { alertsBySubject, worstSeverity } from "./model";

/** A mark on a component's tile while alerts on it fire: count, worst severity, summaries as title. */
export function AlertMark({ view, id }: { view: View | null; id: string }) {
  const list = alertsBySubject(view).get(id);
  if (!list || list.length === 0) return null;
  const worst = worstSeverity(list) ?? "warning";
  const title = list.map((a) => a.annotations?.summary || a.labels?.alertname).join("\n");
  return (
    <a class={`alert-mark sev-${worst}`} href={`/alerts?subject=${encodeURIComponent(id)}`} title={title}
       data-testid={`alert-mark-${id}`} aria-label={`${list.length} ${worst} alert${list.length === 1 ? "" : "s"} firing on ${id}`}>
      {worst === "critical" ? "✖" : "▲"} {list.length}
    </a>
  );
}
