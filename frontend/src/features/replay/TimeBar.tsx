/**
 * The time bar under the header (issue 19): the component state timeline of a range, where a click
 * or a drag picks a moment and the whole page shows the view as it was then (over the WebSocket
 * replay); while replaying, the "replay 03:12:05" banner with play/pause, speed and "Back to live".
 * It only renders: the replay's decisions are the reducer's (state/replay/reducer.ts).
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type { ReplayController } from "../../api/replay";
import { COMPONENTS } from "../../state/live/selectors";
import { replayLabel } from "../../state/replay/at";
import { type ReplayState, SPEEDS } from "../../state/replay/reducer";
import { fetchStates, type HistoryStates } from "../history/api";
import { fmtWhen, segments } from "../history/range";
import { useHistoryStatus } from "../history/useHistoryStatus";
import { barRange, keyStep, pctOf, SPANS, type SpanKey, timeAt } from "./model";
import "./replay.css";

function statusWord(r: ReplayState, clock: number | null, nowS: number): string {
  switch (r.phase) {
    case "off": return "";
    case "asking": return "loading the view of that moment…";
    case "refused": return r.error?.code === "not_recorded" && r.error.oldest !== null
      ? `nothing recorded then; the oldest moment is ${replayLabel(r.error.oldest, nowS)}`
      : r.error?.message ?? "refused";
    case "running":
      if (clock !== null && clock > nowS) return "";
      return r.playing ? `playing at ${r.speed}×` : "paused";
  }
}

/** The component state timeline of the range, asked again when the range moves (every 30 s). */
function useStates(from: number, to: number, on: boolean): HistoryStates | null {
  const [data, setData] = useState<HistoryStates | null>(null);
  useEffect(() => {
    if (!on) return;
    let gone = false;
    fetchStates(from, to).then((d) => !gone && setData(d)).catch(() => undefined);
    return () => {
      gone = true;
    };
  }, [from, to, on]);
  return data;
}

export function TimeBar({ ctl, replay, clock, wall }: {
  ctl: ReplayController;
  replay: ReplayState;
  /** The replay clock (Unix s), null when live. */
  clock: number | null;
  wall: boolean;
}) {
  const replaying = replay.phase !== "off";
  const [span, setSpan] = useState<SpanKey>("1h");
  const [open, setOpen] = useState(false); // on a phone the bar folds away while live
  // the bar's end moves on in 30 s steps, so the timeline is asked for twice a minute, not every second
  const [nowS, setNowS] = useState(() => Math.ceil(Date.now() / 30000) * 30);
  useEffect(() => {
    const t = setInterval(() => setNowS(Math.ceil(Date.now() / 30000) * 30), 5000);
    return () => clearInterval(t);
  }, []);
  const range = barRange(span, clock, nowS);
  const history = useHistoryStatus();
  const states = useStates(range.from, range.to, history?.enabled === true);
  const track = useRef<HTMLDivElement>(null);
  const [preview, setPreview] = useState<number | null>(null);
  const wallNowS = Date.now() / 1000;
  const cursor = preview ?? clock;
  const label = clock === null ? "" : replayLabel(clock, wallNowS);

  const at = (clientX: number): number => {
    const el = track.current;
    if (!el) return range.to;
    const box = el.getBoundingClientRect();
    return Math.min(timeAt(clientX - box.left, box.width, range.from, range.to), Date.now() / 1000);
  };
  const seek = (t: number) => ctl.dispatch({ type: "seek", at: Math.round(t * 1000) / 1000, now: Date.now() });

  if (wall) {
    // a wall shows no controls, but never passes the past off as live
    return replaying ? (
      <div class="replay-banner" role="status" data-testid="replay-banner">
        <span aria-hidden="true">↺</span> replay <strong data-testid="replay-time">{label}</strong>
        <span class="rb-state">{statusWord(replay, clock, wallNowS)}</span>
      </div>
    ) : null;
  }

  // without history there is no past to travel to: no bar (a link with at= still says why, refused)
  if (!replaying && history?.enabled !== true) return null;
  const span_s = range.to - range.from;
  return (
    <section class={`timebar${replaying ? " replaying" : ""}${open || replaying ? " open" : ""}`} aria-label="Time travel" data-testid="timebar">
      <div class="tb-head">
        {replaying ? (
          <div class="replay-banner" role="status" data-testid="replay-banner">
            <span aria-hidden="true">↺</span> replay <strong data-testid="replay-time">{label}</strong>
            <span class="rb-state" data-testid="replay-state">{statusWord(replay, clock, wallNowS)}</span>
          </div>
        ) : (
          <span class="tb-title">↺ Time travel <span class="muted">· click or drag on the bar to see the wall as it was</span></span>
        )}
        {!replaying && (
          <button type="button" class="btn tb-toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
            ↺ Time travel
          </button>
        )}
        <div class="tb-controls">
          {replay.phase === "refused" && replay.error?.oldest != null && (
            <button type="button" class="btn" data-testid="replay-oldest"
              onClick={() => seek(Math.ceil(replay.error!.oldest! * 1000) / 1000)}>
              Show the oldest
            </button>
          )}
          {replaying && (
            <button
              type="button"
              class="btn tb-play"
              data-testid="replay-play"
              onClick={() => ctl.dispatch({ type: replay.playing ? "pause" : "play", now: Date.now() })}
            >
              {replay.playing ? "‖ Pause" : "▶ Play"}
            </button>
          )}
          {replaying && (
            <div class="tb-speeds" role="group" aria-label="Replay speed">
              {SPEEDS.map((s) => (
                <button
                  type="button"
                  key={s}
                  class={`range-btn${replay.speed === s ? " active" : ""}`}
                  aria-pressed={replay.speed === s}
                  onClick={() => ctl.dispatch({ type: "speed", speed: s, now: Date.now() })}
                >
                  {s}×
                </button>
              ))}
            </div>
          )}
          <div class="tb-spans" role="group" aria-label="Time bar range">
            {SPANS.map((s) => (
              <button
                type="button"
                key={s.key}
                class={`range-btn${range.key === s.key ? " active" : ""}`}
                aria-pressed={range.key === s.key}
                onClick={() => setSpan(s.key)}
              >
                {s.label}
              </button>
            ))}
          </div>
          {replaying && (
            <button type="button" class="btn primary tb-live" data-testid="back-to-live"
              onClick={() => ctl.dispatch({ type: "live", now: Date.now() })}>
              Back to live
            </button>
          )}
        </div>
      </div>
      <div class="tb-body">
        <div class="tb-names" aria-hidden="true">
          {COMPONENTS.map((c) => <span key={c.id}>{c.label}</span>)}
        </div>
        <div
          class="tb-track"
          ref={track}
          data-testid="timebar-track"
          role="slider"
          tabIndex={0}
          aria-label="Moment to show (the component states over the range)"
          aria-valuemin={Math.round(range.from)}
          aria-valuemax={Math.round(range.to)}
          aria-valuenow={Math.round(cursor ?? range.to)}
          aria-valuetext={cursor === null ? "live" : replayLabel(cursor, wallNowS)}
          onPointerDown={(e) => {
            if (e.button !== 0) return;
            (e.currentTarget as HTMLElement).setPointerCapture?.(e.pointerId);
            setPreview(at(e.clientX));
          }}
          onPointerMove={(e) => {
            if (preview !== null) setPreview(at(e.clientX));
          }}
          onPointerUp={(e) => {
            if (preview === null) return;
            const t = at(e.clientX);
            setPreview(null);
            seek(t);
          }}
          onPointerCancel={() => setPreview(null)}
          onKeyDown={(e) => {
            const st = keyStep(e.key, span_s);
            if (st === null) return;
            e.preventDefault();
            const from = clock ?? range.to;
            const t = st === "start" ? range.from : st === "end" ? range.to - 1 : from + st;
            seek(Math.min(Math.max(t, range.from), Date.now() / 1000));
          }}
        >
          {COMPONENTS.map((c) => (
            <div class="tb-lane" key={c.id} data-component={c.id}>
              <div class="tb-lane-bar">
                {segments(states?.components[c.id] ?? [], range.from, range.to).map((s) => (
                  <span
                    key={s.from}
                    class={`tl-seg s-${s.status}`}
                    data-status={s.status}
                    style={{ left: `${pctOf(s.from, range.from, range.to)}%`, width: `${Math.max(0.2, ((s.to - s.from) / span_s) * 100)}%` }}
                    title={`${c.label} ${s.status} · ${fmtWhen(s.from)} – ${fmtWhen(s.to)}${s.reason ? ` · ${s.reason}` : ""}`}
                  />
                ))}
              </div>
            </div>
          ))}
          {cursor !== null && (
            <div class="tb-cursor" style={{ left: `${pctOf(cursor, range.from, range.to)}%` }} aria-hidden="true">
              {preview !== null && <span class="tb-cursor-label">{replayLabel(preview, wallNowS)}</span>}
            </div>
          )}
        </div>
        <div class="tb-axis" aria-hidden="true">
          <span>{replayLabel(range.from, wallNowS)}</span>
          <span>now</span>
        </div>
      </div>
    </section>
  );
}
