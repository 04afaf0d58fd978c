import { useEffect, useState } from "preact/hooks";
import { fetchStates, type HistoryStates, type StateInterval } from "./api";
import "./history.css";
import { fmtAvailability, fmtWhen, segments } from "./range";

const DAY = 86400;

/** Availability over [from, to]: time not down / time known (unknown is not known). */
export function availability(ivs: StateInterval[], from: number, to: number): number | null {
  let known = 0;
  let up = 0;
  for (const s of segments(ivs, from, to)) {
    if (s.status === "unknown") continue;
    known += s.to - s.from;
    if (s.status !== "down") up += s.to - s.from;
  }
  return known > 0 ? up / known : null;
}

type Load = { state: "loading" } | { state: "error"; message: string } | { state: "ok"; data: HistoryStates; now: number };

/** A status page's bar per component (last 24 h or 7 d), with availability over 24 h and 7 d;
 * hovering a segment shows its status, its time and the reason. */
export function StatusTimeline() {
  const [span, setSpan] = useState<"24h" | "7d">("24h");
  const [load, setLoad] = useState<Load>({ state: "loading" });
  useEffect(() => {
    let gone = false;
    const now = Date.now() / 1000;
    fetchStates(now - 7 * DAY, now)
      .then((data) => !gone && setLoad({ state: "ok", data, now }))
      .catch((e: unknown) => !gone && setLoad({ state: "error", message: e instanceof Error ? e.message : String(e) }));
    const again = setInterval(() => {
      const t = Date.now() / 1000;
      fetchStates(t - 7 * DAY, t).then((data) => !gone && setLoad({ state: "ok", data, now: t })).catch(() => undefined);
    }, 60_000);
    return () => {
      gone = true;
      clearInterval(again);
    };
  }, []);

  return (
    <section class="status-timeline" aria-labelledby="timeline-title" data-testid="status-timeline">
      <div class="timeline-head">
        <h2 class="area-title" id="timeline-title">Status timeline</h2>
        <div class="range-picker" role="group" aria-label="Timeline span">
          {(["24h", "7d"] as const).map((s) => (
            <button type="button" key={s} class={span === s ? "range-btn active" : "range-btn"} aria-pressed={span === s}
              data-testid={`timeline-${s}`} onClick={() => setSpan(s)}>
              {s === "24h" ? "24 h" : "7 d"}
            </button>
          ))}
        </div>
      </div>
      {load.state === "loading" && <div class="history-note" role="status">Loading…</div>}
      {load.state === "error" && <div class="history-note" role="status" data-testid="timeline-error">History unavailable: {load.message}</div>}
      {load.state === "ok" && (
        <TimelineRows data={load.data} now={load.now} span={span === "24h" ? DAY : 7 * DAY} />
      )}
    </section>
  );
}

function TimelineRows({ data, now, span }: { data: HistoryStates; now: number; span: number }) {
  const names = Object.keys(data.components).sort();
  if (!names.length) return <div class="history-note">No state recorded yet.</div>;
  const from = now - span;
  return (
    <table class="timeline">
      <thead>
        <tr>
          <th scope="col">component</th>
          <th scope="col">{span === DAY ? "last 24 h" : "last 7 d"}</th>
          <th scope="col">24 h</th>
          <th scope="col">7 d</th>
        </tr>
      </thead>
      <tbody>
        {names.map((name) => {
          const ivs = data.components[name] ?? [];
          return (
            <tr key={name} data-testid={`timeline-row-${name}`}>
              <th scope="row">{name}</th>
              <td class="bar-cell">
                <div class="tl-bar" role="img" aria-label={`${name} status over the ${span === DAY ? "last 24 hours" : "last 7 days"}`}>
                  {segments(ivs, from, now).map((s) => (
                    <span
                      key={s.from}
                      class={`tl-seg s-${s.status}`}
                      data-status={s.status}
                      style={{ left: `${((s.from - from) / span) * 100}%`, width: `${Math.max(0.15, ((s.to - s.from) / span) * 100)}%` }}
                      title={`${s.status} · ${fmtWhen(s.from)} – ${fmtWhen(s.to)}${s.reason ? ` · ${s.reason}` : ""}`}
                    />
                  ))}
                </div>
              </td>
              <td class="num" data-testid={`avail-24h-${name}`}>{fmtAvailability(availability(ivs, now - DAY, now))}</td>
              <td class="num" data-testid={`avail-7d-${name}`}>{fmtAvailability(availability(ivs, now - 7 * DAY, now))}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
