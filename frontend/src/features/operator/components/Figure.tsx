import { UNKNOWN } from "../../../utils/format";

/**
 * A formatted figure; "unknown" is set apart (muted, italic) so it is never read as a number. The raw
 * value rides along in `data-value` (empty when unknown) for tests and for copy/paste tooling.
 */
export function Figure({ text, value, class: cls, testId }: {
  text: string;
  value?: unknown;
  class?: string;
  testId?: string;
}) {
  const unknown = text === UNKNOWN || text.includes(UNKNOWN);
  const raw = typeof value === "number" && Number.isFinite(value) ? String(value) : value === undefined ? undefined : "";
  return (
    <span class={`fig${unknown ? " unknown" : ""}${cls ? ` ${cls}` : ""}`} data-testid={testId} data-value={raw}>
      {text}
    </span>
  );
}
