import type { View } from "../../../api/types";
import { fmtCount, known } from "../../../utils/format";
import { Figure } from "./Figure";

/** Platform-wide counts (seed section 4): total, then the breakdown. */
export function PlatformTotals({ view }: { view: View | null }) {
  const a = view?.aggregates;
  const tenantsTotal = a?.tenants?.total ??
    (known(a?.tenants?.active) && known(a?.tenants?.suspended) ? a.tenants.active + a.tenants.suspended : null);
  const rows = [
    { id: "tenants", label: "Tenants", total: tenantsTotal, parts: [["active", a?.tenants?.active], ["suspended", a?.tenants?.suspended], ["deleted", a?.tenants?.deleted]] },
    { id: "devices", label: "Devices", total: a?.devices?.registered, parts: [["online", a?.devices?.online], ["stale", a?.devices?.stale]] },
    { id: "alerts", label: "Alerts open", total: a?.alerts?.open, parts: [["closed today", a?.alerts?.closed_today], ["triggered today", a?.alerts?.triggered_today]] },
    { id: "integrations", label: "Integrations", total: a?.integrations?.total, parts: [["active", a?.integrations?.active], ["webhook", a?.integrations?.webhook], ["email", a?.integrations?.email], ["SMS", a?.integrations?.sms]] },
  ] as const;
  return (
    <dl class="totals">
      {rows.map((r) => (
        <div class="total" key={r.id} data-testid={`total-${r.id}`}>
          <dt>{r.label}</dt>
          <dd>
            <Figure text={fmtCount(r.total)} value={r.total ?? null} class="big" testId={`total-${r.id}-value`} />
            <span class="parts">
              {r.parts
                .filter(([, v]) => v !== undefined || r.id !== "integrations")
                .map(([k, v]) => (
                  <span key={k}>
                    <Figure text={fmtCount(v)} value={v ?? null} testId={`total-${r.id}-${k.replace(" ", "_")}`} /> {k}
                  </span>
                ))}
            </span>
          </dd>
        </div>
      ))}
    </dl>
  );
}
