-- Reference schema of the platform's own tables, as far as opsdash's platform probe reads them.
--
-- The platform probe's default queries (probes/config.py DEFAULT_PLATFORM_QUERIES) target these
-- tables; a platform with another schema sets probes.platform.queries instead. The demo seeds it.
-- The indexes are the ones the default queries need: one cycle on 1,000,000 devices and 100,000
-- alerts stays under 200 ms (bench/bench_platform_counts.py).
--
-- Idempotent: safe to run against a database that already has it.

CREATE TABLE IF NOT EXISTS tenants (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    -- 'deleted' tenants are soft-deleted: kept for billing/audit, counted separately.
    status      text        NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS devices (
    id            bigserial   PRIMARY KEY,
    tenant_id     bigint      NOT NULL REFERENCES tenants (id),
    name          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- last message received from the device; NULL = never seen. Online = seen within
    -- probes.platform.online_window_s (default 300 s); every other registered device is stale.
    last_seen_at  timestamptz
);
-- devices_online: index-only range scan instead of reading every device row.
CREATE INDEX IF NOT EXISTS devices_last_seen_at_idx ON devices (last_seen_at);
CREATE INDEX IF NOT EXISTS devices_tenant_id_idx ON devices (tenant_id);

CREATE TABLE IF NOT EXISTS alerts (
    id            bigserial   PRIMARY KEY,
    tenant_id     bigint      NOT NULL REFERENCES tenants (id),
    device_id     bigint      REFERENCES devices (id),
    severity      text        NOT NULL DEFAULT 'warning'
                              CHECK (severity IN ('info', 'warning', 'critical')),
    message       text        NOT NULL DEFAULT '',
    triggered_at  timestamptz NOT NULL DEFAULT now(),
    -- NULL while open; acknowledging an alert does not close it.
    closed_at     timestamptz,
    CHECK (closed_at IS NULL OR closed_at >= triggered_at)
);
-- alerts_open: a partial index holding only the open alerts (small, however long the history).
CREATE INDEX IF NOT EXISTS alerts_open_idx ON alerts (triggered_at) WHERE closed_at IS NULL;
-- alerts_triggered_today / alerts_closed_today: range scans from the start of today.
CREATE INDEX IF NOT EXISTS alerts_triggered_at_idx ON alerts (triggered_at);
CREATE INDEX IF NOT EXISTS alerts_closed_at_idx ON alerts (closed_at) WHERE closed_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS integrations (
    id          bigserial   PRIMARY KEY,
    tenant_id   bigint      NOT NULL REFERENCES tenants (id),
    type        text        NOT NULL CHECK (type IN ('webhook', 'email', 'sms')),
    name        text        NOT NULL DEFAULT '',
    -- integrations_active and the per-type counts count enabled integrations only.
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
