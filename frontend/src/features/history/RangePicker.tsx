import { RANGES, type RangeKey, type TimeRange } from "./range";
import { fmtWhen } from "./range";

/** Live 15 min, 1 h, 6 h, 24 h, 7 d; a zoomed range shows its bounds and a way back to live. */
export function RangePicker({ range, onPick, off, replay = false }: {
  range: TimeRange;
  onPick: (key: RangeKey) => void;
  off?: string | null;
  /** Time travel: the pushed window is the replay's, so it is not called live. */
  replay?: boolean;
}) {
  const current = range.kind === "live" ? "live" : range.key;
  return (
    <div class="range-picker" role="group" aria-label="Time range" data-testid="range-picker">
      {RANGES.map((r) => (
        <button
          type="button"
          key={r.key}
          class={current === r.key ? "range-btn active" : "range-btn"}
          aria-pressed={current === r.key}
          disabled={r.key !== "live" && !!off}
          title={r.key !== "live" && off ? off : undefined}
          data-testid={`range-${r.key}`}
          onClick={() => onPick(r.key)}
        >
          {replay && r.key === "live" ? "15 min" : r.label}
        </button>
      ))}
      {off && <span class="range-zoom" data-testid="history-off">history is off</span>}
      {range.kind === "past" && range.key === "zoom" && (
        <span class="range-zoom" data-testid="range-zoom">
          {fmtWhen(range.from)} – {fmtWhen(range.to)}
        </span>
      )}
    </div>
  );
}
