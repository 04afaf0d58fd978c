import type { LiveState } from "../../../state/live/reducer";
import type { ReplayState } from "../../../state/replay/reducer";
import { normStatus, sinceUpdateS, viewStale } from "../../../state/live/selectors";
import { fmtAge, fmtDuration, fmtRatio } from "../../../utils/format";
import { rootCauseText, roots } from "../../graph/model";
import { StatusBadge } from "./StatusBadge";

/** What the connection is doing, in words (and an icon), for the header. */
export function connectionText(live: LiveState, now: number): { icon: string; text: string; cls: string } {
  switch (live.phase) {
    case "idle":
    case "connecting":
      return { icon: "◌", text: live.attempt > 0 ? `Reconnecting (attempt ${live.attempt + 1})…` : "Connecting…", cls: "warn" };
    case "syncing":
      return { icon: "◌", text: "Connected, waiting for data…", cls: "warn" };
    case "live":
      if (live.gatewayStale) return { icon: "‖", text: "Connected · aggregator silent", cls: "warn" };
      if (live.awaitingSnapshot) return { icon: "↻", text: "Live · resyncing", cls: "warn" };
      return { icon: "●", text: "Live", cls: "ok" };
    case "reconnecting": {
      const wait = live.retryAt === null ? null : Math.max(0, (live.retryAt - now) / 1000);
      return {
        icon: "✖",
        text: `Disconnected · retry ${wait === null ? "soon" : `in ${fmtDuration(Math.ceil(wait))}`} (attempt ${live.attempt})`,
        cls: "bad",
      };
    }
    case "unauthorized":
      return { icon: "⚠", text: "Login required", cls: "bad" };
    case "forbidden":
      return { icon: "✖", text: "Access denied", cls: "bad" };
  }
}

/**
 * While replaying, the connection word says so (never "Live"): "↺ Replay · paused", "↺ Replay · 10×".
 * A dropped connection still says "Disconnected" (the replay resumes after the reconnect).
 */
export function replayConnText(live: LiveState, replay: ReplayState, wallNow: number): { icon: string; text: string; cls: string } {
  if (live.phase !== "live" && live.phase !== "syncing") return connectionText(live, wallNow);
  const how = replay.phase === "refused" ? "refused" : replay.phase === "asking" ? "loading" : replay.playing ? `${replay.speed}×` : "paused";
  return { icon: "↺", text: `Replay · ${how}`, cls: "replay" };
}

export function Header({ live, now, wallNow, replay, wall, title, controls }: {
  live: LiveState;
  /** The clock ages count against: the replay clock while replaying. */
  now: number;
  /** The wall clock (retry countdowns); `now` when omitted. */
  wallNow?: number;
  /** The replay, when one runs. */
  replay?: ReplayState | null;
  wall: boolean;
  /** The page's title: the document's one <h1>. */
  title: string;
  controls: preact.ComponentChildren;
}) {
  const view = live.view;
  const stale = viewStale(live, now);
  const overall = view ? normStatus(view.health?.status) : "unknown";
  const conn = replay ? replayConnText(live, replay, wallNow ?? now) : connectionText(live, wallNow ?? now);
  const since = sinceUpdateS(live, now);
  const comp = view?.meta?.completeness;
  // the status line names the root causes, not only the worst colour (docs/view.md, section graph)
  const rootText = rootCauseText(view);
  return (
    <header class={`top${stale ? " top-stale" : ""}`} data-testid="header">
      <div class="brand">
        <span class="logo" aria-hidden="true">◆</span>
        <h1 class="brand-name" data-testid="page-title">{title}</h1>
      </div>
      <div class="overall" data-testid="overall" data-status={overall}>
        <StatusBadge status={overall} big />
        {rootText && (
          <a class={`root-cause-line st-${roots(view?.graph)[0]?.status ?? "unknown"}`} href="/graph" data-testid="root-cause" title="Root causes (dependency graph)">
            {rootText}
          </a>
        )}
      </div>
      <div class={`conn conn-${conn.cls}`} data-testid="connection" data-phase={live.phase} role="status" aria-live="polite">
        <span aria-hidden="true">{conn.icon}</span> {conn.text}
      </div>
      <div class={`last${stale ? " is-stale" : ""}`} data-testid="last-update">
        Last update: <strong>{since === null ? "never" : fmtAge(since)}</strong>
        {stale && view && <span class="stale-word"> ‖ stale</span>}
      </div>
      <div class="complete" data-testid="completeness" title={
        comp ? `${comp.received_intervals ?? "?"} intervals received, ${comp.missing_intervals ?? "?"} missing` : undefined
      }>
        Data completeness: <strong>{fmtRatio(comp?.ratio)}</strong>
      </div>
      {!wall && <div class="controls">{controls}</div>}
    </header>
  );
}
