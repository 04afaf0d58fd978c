import { useLive } from "../../app/live";
import { fmtDuration } from "../../utils/format";
import { fmtValue, quietReason, section, sortAlerts, subject, worstSeverity } from "./model";

/**
 * The shell's alert banner: how many alerts fire and the worst severity, a link to /alerts. In wall
 * mode the firing alerts themselves, large, so a wall screen says what is wrong from across the room.
 */
export function AlertBanner() {
  const { live, now, wall } = useLive();
  const view = live.view;
  if (!view) return null;
  const firing = sortAlerts(section(view).firing);
  const nowS = now / 1000;
  const worst = worstSeverity(firing) ?? "warning";
  const icon = worst === "critical" ? "✖" : "▲";
  if (wall) {
    if (firing.length === 0) return null; // h18: no empty box on the wall
    return (
      <section class={`alert-wall sev-${worst}`} data-testid="alert-wall" aria-label="Firing alerts" role="alert">
        <ul>
          {firing.slice(0, 6).map((a) => (
            <li key={a.fingerprint} class={`sev-${a.labels?.severity ?? "warning"}`} data-testid="alert-wall-item">
              <span class="aw-icon" aria-hidden="true">{a.labels?.severity === "critical" ? "✖" : "▲"}</span>
              <span class="aw-summary">{a.annotations?.summary || a.labels?.alertname}</span>
              <span class="aw-for">for {fmtDuration(nowS - (a.fired_at ?? a.starts_at))}</span>
            </li>
          ))}
          {firing.length > 6 && <li class="aw-more">and {firing.length - 6} more</li>}
        </ul>
      </section>
    );
  }
  const quiet = firing.filter((a) => quietReason(a, nowS) !== null).length;
  const first = firing[0];
  if (!first) return null;
  return (
    <div class={`banner alert-banner sev-${worst}`} role="alert" data-testid="alert-banner"
         data-count={firing.length} data-severity={worst}>
      <span aria-hidden="true">{icon}</span>{" "}
      <strong>{firing.length} alert{firing.length === 1 ? "" : "s"} firing</strong> · worst: {worst}
      {quiet > 0 && <span> · {quiet} silenced or inhibited</span>}
      {" · "}
      <span class="ab-first">{first.annotations?.summary || first.labels?.alertname}
        {subject(first) && !first.annotations?.summary ? ` (${subject(first)})` : ""}
        {first.value !== undefined && first.value !== null && !first.annotations?.summary ? ` = ${fmtValue(first.value)}` : ""}
      </span>{" "}
      <a href="/alerts">See all alerts →</a>
    </div>
  );
}
