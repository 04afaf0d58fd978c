import type { Status } from "../../../api/types";

/** Icon shape and word for each status: readable without colour (shape + word), coloured as well. */
export const STATUS_ICON: Record<Status, string> = {
  healthy: "✔",
  degraded: "▲",
  down: "✖",
  unknown: "?",
};

const WORD: Record<Status, string> = {
  healthy: "Healthy",
  degraded: "Degraded",
  down: "Down",
  unknown: "Unknown",
};

export function StatusBadge({ status, big = false }: { status: Status; big?: boolean }) {
  return (
    <span class={`badge st-${status}${big ? " badge-big" : ""}`} data-status={status}>
      <span class="badge-icon" aria-hidden="true">{STATUS_ICON[status]}</span>
      <span class="badge-word">{WORD[status]}</span>
    </span>
  );
}
