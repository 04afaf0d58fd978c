import { useLayoutEffect, useRef } from "preact/hooks";
import type { ErrorEvent, View } from "../../../api/types";
import { fmtClock, fmtCount, humanize, isoToTs, UNKNOWN } from "../../../utils/format";
import { logsAround } from "../../logs/model";
import { Figure } from "./Figure";

const COUNTS = [
  ["ingest_failures_1h", "ingest failures"],
  ["delivery_failures_1h", "delivery failures"],
  ["auth_failures_1h", "auth failures"],
  ["rate_limited_1h", "rate limited"],
  ["quarantined_1h", "quarantined"],
] as const;

/** The events behind each count, in the log view (the same kinds the aggregator counts). */
const COUNT_LOGS: Record<(typeof COUNTS)[number][0], string> = {
  ingest_failures_1h: "/logs?from=-1h&service=ingest&severity=error",
  delivery_failures_1h: "/logs?from=-1h&type=webhook_timeout,webhook_failed",
  auth_failures_1h: "/logs?from=-1h&type=auth_failed,token_expired",
  rate_limited_1h: "/logs?from=-1h&type=rate_limited",
  quarantined_1h: "/logs?from=-1h&type=quarantined",
};

const SEV_ICON: Record<string, string> = { critical: "✖", error: "✖", warning: "▲", info: "ℹ" };

function eventTs(e: ErrorEvent): number | null {
  return typeof e.ts === "number" ? e.ts : isoToTs(e.timestamp);
}

/** Newest first, whatever order they came in. */
export function sortedErrors(view: View | null): ErrorEvent[] {
  return [...(view?.errors?.errors ?? [])].sort((a, b) => (eventTs(b) ?? 0) - (eventTs(a) ?? 0));
}

/**
 * Hide the rows that do not fit whole in `box` (a wall screen does not scroll: a row cut in half
 * by the tile's footer would be unreadable). Re-checked after every render.
 */
function useWholeRows(ref: { current: HTMLElement | null }, on: boolean): void {
  useLayoutEffect(() => {
    const el = ref.current;
    const box = el?.closest(".tile-body");
    if (!el || !box) return;
    const rows = Array.from(el.querySelectorAll<HTMLElement>("tbody tr"));
    for (const r of rows) r.hidden = false;
    if (!on) return;
    const bottom = box.getBoundingClientRect().bottom;
    let cut = false;
    for (const r of rows) {
      cut ||= r.getBoundingClientRect().bottom > bottom + 0.5;
      r.hidden = cut;
    }
  });
}

export function ErrorFeed({ view, limit, fit = false }: { view: View | null; limit: number; fit?: boolean }) {
  const counts = view?.errors?.counts;
  const errors = sortedErrors(view).slice(0, limit);
  const ref = useRef<HTMLDivElement>(null);
  useWholeRows(ref, fit);
  return (
    <div class="errfeed" ref={ref}>
      <div class="err-counts" data-testid="error-counts">
        <span class="muted">last hour:</span>
        {COUNTS.map(([key, label]) => (
          <span class="chip" key={key} data-testid={`count-${key}`}>
            <Figure text={fmtCount(counts?.[key])} value={counts?.[key] ?? null} class="chip-num" />{" "}
            <a href={COUNT_LOGS[key]} class="chip-link" title={`the ${label} of the last hour, in the log view`}>
              {label}
            </a>
          </span>
        ))}
      </div>
      {errors.length === 0 ? (
        <div class="muted empty" data-testid="errors-empty">
          {view?.errors ? "✔ No recent errors" : `Recent errors ${UNKNOWN}`}
        </div>
      ) : (
        <table class="errors" data-testid="errors">
          <thead>
            <tr>
              <th>time</th>
              <th>service</th>
              <th>kind</th>
              <th>message</th>
            </tr>
          </thead>
          <tbody>
            {errors.map((e, i) => {
              const sev = e.severity ?? "error";
              return (
                <tr class={`sev-${sev}`} key={e.id ?? `${eventTs(e)}-${i}`} data-testid="error-row">
                  <td class="mono">
                    <span class="sev-icon" aria-label={sev} title={sev}>{SEV_ICON[sev] ?? "•"}</span>{" "}
                    {eventTs(e) === null ? (
                      fmtClock(eventTs(e))
                    ) : (
                      <a
                        href={logsAround(typeof e.reporter_ts === "number" ? e.reporter_ts : (eventTs(e) as number), e.service)}
                        title="the events around this one (± 1 min, same service)"
                        data-testid="error-logs-link"
                      >
                        {fmtClock(eventTs(e))}
                      </a>
                    )}
                  </td>
                  <td>{e.instance ?? e.service ?? UNKNOWN}</td>
                  <td>{humanize(e.type)}</td>
                  <td class="msg" title={e.message ?? undefined}>{e.message ?? ""}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
