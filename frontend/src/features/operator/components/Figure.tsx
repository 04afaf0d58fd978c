import { UNKNOWN } from "../../../utils/format";

/** A formatted figure; "unknown" is set apart (muted, italic) so it is never read as a number. */
export function Figure({ text, class: cls, testId }: { text: string; class?: string; testId?: string }) {
  const unknown = text === UNKNOWN || text.includes(UNKNOWN);
  return (
    <span class={`fig${unknown ? " unknown" : ""}${cls ? ` ${cls}` : ""}`} data-testid={testId}>
      {text}
    </span>
  );
}
