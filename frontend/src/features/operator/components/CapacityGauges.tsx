import type { Status, View } from "../../../api/types";
import { thresholdLevel } from "../../../state/live/selectors";
import { fmtBytes, fmtCount, fmtPct, known, pctOf, UNKNOWN } from "../../../utils/format";
import { Figure } from "./Figure";
import { STATUS_ICON } from "./StatusBadge";

const LEVEL_WORD: Record<Status, string> = { healthy: "ok", degraded: "high", down: "critical", unknown: "unknown" };

export function Gauge({ label, pct, text, detail, testId, raw }: {
  label: string;
  /** The primary raw figure (used count, percent), for data-value. */
  raw?: number | null;
  pct: number | null;
  text: string;
  detail?: string;
  testId: string;
}) {
  const level = thresholdLevel(pct);
  const width = pct === null ? 0 : Math.min(100, Math.max(0, pct));
  return (
    <div class={`gauge st-${level}`} data-testid={testId} data-level={level}>
      <div class="gauge-row">
        <span class="gauge-label">{label}</span>
        <Figure text={text} value={raw ?? null} class="gauge-num" testId={`${testId}-value`} />
      </div>
      <div
        class="gauge-bar"
        role="meter"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct ?? undefined}
        aria-label={label}
      >
        <div class="gauge-fill" style={{ width: `${width}%` }} />
        <div class="gauge-mark warn" style={{ left: "75%" }} />
        <div class="gauge-mark crit" style={{ left: "90%" }} />
      </div>
      <div class="gauge-foot">
        <span class="gauge-level">
          <span aria-hidden="true">{STATUS_ICON[level]}</span> {pct === null ? UNKNOWN : `${fmtPct(pct)} · ${LEVEL_WORD[level]}`}
        </span>
        {detail && <span class="gauge-detail">{detail}</span>}
      </div>
    </div>
  );
}

export function CapacityGauges({ view }: { view: View | null }) {
  const cap = view?.capacity;
  const disk = cap?.disk;
  const pg = cap?.postgres;
  const influx = cap?.influxdb;
  const containers = cap?.memory?.containers ?? [];
  const diskPct = known(disk?.used_pct) ? disk.used_pct : null;
  return (
    <div class="gauges">
      <Gauge
        label="Disk"
        pct={diskPct}
        testId="gauge-disk"
        raw={disk?.used_pct ?? null}
        text={known(disk?.total_volume_bytes) ? `${fmtPct(diskPct)} of ${fmtBytes(disk?.total_volume_bytes)}` : fmtPct(diskPct)}
        detail={`Postgres ${fmtBytes(disk?.postgres_data_bytes)} · InfluxDB ${fmtBytes(disk?.influxdb_data_bytes)}`}
      />
      <Gauge
        label="PostgreSQL connections"
        pct={pctOf(pg?.connections_used, pg?.connections_max)}
        testId="gauge-pgconn"
        raw={pg?.connections_used ?? null}
        text={`${fmtCount(pg?.connections_used)} / ${fmtCount(pg?.connections_max)}`}
        detail={`database ${fmtBytes(pg?.db_size_bytes)}`}
      />
      <Gauge
        label="InfluxDB files"
        pct={pctOf(influx?.file_count, influx?.file_limit)}
        testId="gauge-influx"
        raw={influx?.file_count ?? null}
        text={`${fmtCount(influx?.file_count)} / ${fmtCount(influx?.file_limit)}`}
        detail={`data ${fmtBytes(influx?.data_bytes)}`}
      />
      <div class="mem" data-testid="memory">
        <div class="gauge-label">{cap?.memory?.source === "processes" ? "Memory by process" : "Container memory"}</div>
        {cap?.memory?.available === false && (
          <div class="muted">unknown: {cap.memory.reason ?? "container metrics unavailable"}</div>
        )}
        {cap?.memory?.available !== false && containers.length === 0 && <div class="muted">{UNKNOWN}: no container data</div>}
        {containers.slice(0, 8).map((c) => {
          const pct = pctOf(c.mem_bytes, c.mem_limit_bytes);
          const level = thresholdLevel(pct);
          return (
            <div class={`mem-row st-${level}`} key={c.name}>
              <span class="mem-name" title={c.state ?? undefined}>{c.name}</span>
              <span class="mem-bar"><span class="gauge-fill" style={{ width: `${Math.min(100, pct ?? 0)}%` }} /></span>
              <span class="mem-num">
                <span aria-hidden="true">{STATUS_ICON[level]}</span> {fmtBytes(c.mem_bytes)}
                {known(c.mem_limit_bytes) ? ` / ${fmtBytes(c.mem_limit_bytes)}` : ""}
              </span>
            </div>
          );
        })}
      </div>
    </div>
  );
}
