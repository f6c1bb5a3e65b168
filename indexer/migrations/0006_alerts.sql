-- Alerts for tenants: a lease's runway at its maximum rate fell under a threshold, the lease
-- was suspended, or an auto top-up failed. Rows are raised on transitions only (a lease's
-- runway level is remembered in runway_levels), announced with NOTIFY berth_alerts and,
-- with a webhook configured, delivered with retries (delivered_at, attempts, last_error).
CREATE TABLE berth.alerts (
    id               BIGSERIAL PRIMARY KEY,
    chain_id         BIGINT NOT NULL,
    lease_id         NUMERIC(78, 0) NOT NULL,
    tenant           TEXT NOT NULL,
    provider_id      NUMERIC(78, 0),
    kind             TEXT NOT NULL CHECK (kind IN ('runway_low', 'suspended', 'auto_top_up_failed')),
    threshold_s      BIGINT,            -- runway_low: the threshold crossed
    runway_s         BIGINT,            -- runway_low: the runway then
    -- What raised it, unique per lease: `runway:<threshold>:<episode>` or
    -- `event:<block hash>:<log index>`, so that no transition or event alerts twice.
    source           TEXT NOT NULL,
    detail           JSONB NOT NULL DEFAULT '{}',
    raised_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT,
    UNIQUE (chain_id, lease_id, source)
);
CREATE INDEX alerts_tenant ON berth.alerts (chain_id, tenant, id);
CREATE INDEX alerts_undelivered ON berth.alerts (next_attempt_at) WHERE delivered_at IS NULL;

-- How many thresholds each active lease's runway is under, and how often it fell that far.
CREATE TABLE berth.runway_levels (
    chain_id   BIGINT NOT NULL,
    lease_id   NUMERIC(78, 0) NOT NULL,
    level      INTEGER NOT NULL,
    episode    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, lease_id)
);

-- The last block whose events were turned into alerts.
CREATE TABLE berth.alert_cursor (
    chain_id      BIGINT PRIMARY KEY,
    block_number  BIGINT NOT NULL
);
