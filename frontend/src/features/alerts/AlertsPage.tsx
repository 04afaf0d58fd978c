import { useState } from "preact/hooks";
import { useLive } from "../../app/live";
import { fmtClock, fmtDuration } from "../../utils/format";
import { ackAlert, createSilence, expireSilence } from "./api";
import { type Alert, fmtValue, quietReason, section, type Silence, silenceMatchers, sortAlerts, subject } from "./model";

const DURATIONS: [string, number][] = [["1 h", 3600], ["4 h", 14400], ["24 h", 86400]];

function useWrite(): [string | null, (label: string, fn: () => Promise<unknown>) => void, string | null] {
  const [msg, setMsg] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const run = (label: string, fn: () => Promise<unknown>) => {
    setBusy(label);
    fn().then(
      () => setMsg(`${label}: done (shown at the aggregator's next tick)`),
      (e: Error) => setMsg(`${label}: ${e.message}`),
    ).finally(() => setBusy(null));
  };
  return [msg, run, busy];
}

function AlertRow({ a, now, actions, write, busy }: {
  a: Alert; now: number; actions: boolean; write: (label: string, fn: () => Promise<unknown>) => void; busy: string | null;
}) {
  const [dur, setDur] = useState(3600);
  const sev = a.labels?.severity ?? "warning";
  const quiet = quietReason(a, now);
  const since = a.fired_at ?? a.starts_at;
  const highlighted = new URLSearchParams(location.search).get("fingerprint") === a.fingerprint;
  return (
    <tr class={`sev-${sev}${highlighted ? " hl" : ""}`} data-testid={`alert-${a.fingerprint}`} data-status={a.status}>
      <td><span class={`sev-badge sev-${sev}`}>{sev}</span></td>
      <td>
        <strong>{a.labels?.alertname}</strong>
        {subject(a) && <> · <a href={`/component/${encodeURIComponent(a.labels.component ?? a.labels.service ?? "")}`}>{subject(a)}</a></>}
        <div class="al-summary">{a.annotations?.summary}</div>
        <div class="al-flags">
          {a.acked_by && <span class="flag" data-testid="acked">✔ acked by {a.acked_by}{a.acked_at ? ` at ${fmtClock(a.acked_at)}` : ""}</span>}
          {quiet && <span class="flag" data-testid="quiet">◌ {quiet}{typeof a.silenced_until === "number" && quiet === "silenced" ? ` until ${fmtClock(a.silenced_until)}` : ""}</span>}
        </div>
      </td>
      <td title={`since ${fmtClock(a.starts_at)}`}>{fmtClock(a.status === "resolved" ? a.starts_at : since)}</td>
      <td>{a.status === "resolved" ? fmtDuration((a.ends_at ?? now) - a.starts_at) : fmtDuration(now - since)}</td>
      <td class="num">{fmtValue(a.value)}</td>
      {actions && (
        <td class="al-actions">
          {!a.acked_by && (
            <button class="btn" type="button" disabled={busy !== null} data-testid="ack"
                    onClick={() => write("Ack", () => ackAlert(a.fingerprint))}>Ack</button>
          )}
          <select aria-label="silence duration" value={dur} onChange={(e) => setDur(Number((e.target as HTMLSelectElement).value))}>
            {DURATIONS.map(([l, s]) => <option key={s} value={s}>{l}</option>)}
          </select>
          <button class="btn" type="button" disabled={busy !== null} data-testid="silence"
                  onClick={() => write("Silence", () => createSilence(silenceMatchers(a), dur, `from the dashboard: ${a.labels?.alertname}`))}>
            Silence
          </button>
        </td>
      )}
    </tr>
  );
}

function AlertTable({ title, alerts, now, actions, empty, testId, write, busy }: {
  title: string; alerts: Alert[]; now: number; actions: boolean; empty: string; testId: string;
  write: (label: string, fn: () => Promise<unknown>) => void; busy: string | null;
}) {
  return (
    <section class="alerts-block" data-testid={testId} aria-labelledby={`${testId}-title`}>
      <h2 id={`${testId}-title`}>{title} <span class="count">{alerts.length}</span></h2>
      {alerts.length === 0 ? <p class="muted">{empty}</p> : (
        <table class="alerts-table">
          <thead><tr><th>Severity</th><th>Alert</th><th>Since</th><th>For</th><th>Value</th>{actions && <th>Actions</th>}</tr></thead>
          <tbody>{alerts.map((a) => <AlertRow key={a.fingerprint} a={a} now={now} actions={actions} write={write} busy={busy} />)}</tbody>
        </table>
      )}
    </section>
  );
}

function Silences({ silences, now, write, busy, actions }: {
  silences: Silence[]; now: number; write: (label: string, fn: () => Promise<unknown>) => void; busy: string | null;
  actions: boolean;
}) {
  if (silences.length === 0) return null;
  return (
    <section class="alerts-block" data-testid="alerts-silences" aria-labelledby="sil-title">
      <h2 id="sil-title">Silences <span class="count">{silences.length}</span></h2>
      <ul class="silences">
        {silences.map((s) => (
          <li key={s.id} data-testid={`silence-${s.id}`}>
            <code>{Object.entries(s.matchers).map(([k, v]) => `${k}="${v}"`).join(", ")}</code>
            {" "}until {fmtClock(s.ends_at)} ({fmtDuration(s.ends_at - now)} left) by {s.created_by || "?"}
            {s.comment && <> · {s.comment}</>}{" "}
            {actions && <button class="btn" type="button" disabled={busy !== null} onClick={() => write("End silence", () => expireSilence(s.id))}>End now</button>}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** The alerts page (route /alerts): firing, pending, resolved in the last 24 h, silences; ack and silence. */
export function AlertsPage() {
  const { live, now, replayAt } = useLive();
  // a replayed moment (time travel) is read-only: ack and silence act on the present
  const actions = replayAt === null;
  const [msg, write, busy] = useWrite();
  const nowS = now / 1000;
  const s = section(live.view);
  const subjectFilter = new URLSearchParams(location.search).get("subject");
  const keep = (a: Alert) => !subjectFilter || a.labels?.component === subjectFilter || a.labels?.service === subjectFilter;
  return (
    <div class="alerts-page" data-testid="alerts-page">
      {subjectFilter && <p class="muted">Only alerts on <strong>{subjectFilter}</strong> · <a href="/alerts">show all</a></p>}
      {msg && <div class="banner" role="status" data-testid="alerts-msg">{msg}</div>}
      {live.view === null && <p class="muted">No view yet: alerts are unknown.</p>}
      {!actions && <p class="muted" data-testid="alerts-replay-note">The alerts as they stood at the replayed moment; ack and silence are for the present (back to live).</p>}
      <AlertTable title="Firing" alerts={sortAlerts(s.firing).filter(keep)} now={nowS} actions={actions} empty="Nothing is firing."
                  testId="alerts-firing" write={write} busy={busy} />
      <AlertTable title="Pending" alerts={sortAlerts(s.pending).filter(keep)} now={nowS} actions={actions}
                  empty="Nothing is pending (a condition true but not yet for its for_s)." testId="alerts-pending"
                  write={write} busy={busy} />
      <Silences silences={s.silences} now={nowS} write={write} busy={busy} actions={actions} />
      <AlertTable title="Resolved in the last 24 h" alerts={s.recent.filter((a) => (a.ends_at ?? 0) >= nowS - 86400).filter(keep)}
                  now={nowS} actions={false} empty="Nothing resolved in the last 24 h." testId="alerts-recent"
                  write={write} busy={busy} />
    </div>
  );
}

export default AlertsPage;
