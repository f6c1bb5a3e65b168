-- Analysts at scale (issue 18): the current state of leases and providers, the daily revenue
-- per provider and tenants' spend become tables the indexer maintains as events arrive, in
-- the same transaction as the events and the checkpoint (and undone in the same transaction
-- as a reorg rollback). A lookup then reads one row instead of aggregating a lease's or a
-- provider's whole history. The previous definitions stay as `*_from_events` views: a
-- reference computed from the event log by other means, for audits (the two must be equal).

ALTER VIEW berth.leases RENAME TO leases_from_events;
ALTER VIEW berth.providers RENAME TO providers_from_events;
ALTER VIEW berth.provider_revenue_daily RENAME TO provider_revenue_daily_from_events;
ALTER VIEW berth.tenant_spend RENAME TO tenant_spend_from_events;
ALTER VIEW berth.utilisation RENAME TO utilisation_from_events;

-- Per lease, what its events add up to so far: sums, the first values (opening terms), the
-- latest values (status, manifest) and extremes. `berth.leases` reads it.
CREATE TABLE berth.lease_state (
    chain_id            BIGINT NOT NULL,
    lease_id            NUMERIC(78, 0) NOT NULL,
    provider_id         NUMERIC(78, 0),
    tenant              TEXT,
    openings            BIGINT NOT NULL DEFAULT 0,
    withdrawals         BIGINT NOT NULL DEFAULT 0,
    -- status from the latest status event, before a withdrawal turns 'closing' into 'closed'
    status_event        TEXT,
    close_reason        TEXT,
    price_version       INT,
    cpu_millis          BIGINT,
    memory_mib          BIGINT,
    storage_gib         BIGINT,
    manifest_hash       TEXT,
    manifest_uri        TEXT,
    manifest_version    BIGINT NOT NULL DEFAULT 0,
    max_rate            NUMERIC,
    deposit             NUMERIC,
    opened_at           TIMESTAMPTZ,
    topped_up           NUMERIC NOT NULL DEFAULT 0,
    auto_topped_up      NUMERIC NOT NULL DEFAULT 0,
    charged             NUMERIC NOT NULL DEFAULT 0,
    refunded            NUMERIC NOT NULL DEFAULT 0,
    withdrawn           NUMERIC NOT NULL DEFAULT 0,
    claimed             NUMERIC NOT NULL DEFAULT 0,
    dispute_opened      NUMERIC NOT NULL DEFAULT 0,
    dispute_to_provider NUMERIC NOT NULL DEFAULT 0,
    dispute_to_tenant   NUMERIC NOT NULL DEFAULT 0,
    report_count        BIGINT NOT NULL DEFAULT 0,
    last_report_to      BIGINT,
    confirmed_at        TIMESTAMPTZ,
    endpoint            TEXT,
    last_suspended_at   TIMESTAMPTZ,
    closed_at_s         BIGINT,
    -- usage reports: how many, the units and the seconds they cover
    reports             BIGINT NOT NULL DEFAULT 0,
    cpu_units           NUMERIC NOT NULL DEFAULT 0,
    memory_units        NUMERIC NOT NULL DEFAULT 0,
    reported_seconds    NUMERIC NOT NULL DEFAULT 0,
    status              TEXT GENERATED ALWAYS AS (
                          CASE WHEN status_event = 'closing' AND withdrawals > 0 THEN 'closed'
                               ELSE status_event END) STORED,
    PRIMARY KEY (chain_id, lease_id)
);
CREATE INDEX lease_state_provider_open ON berth.lease_state (chain_id, provider_id, lease_id)
    WHERE status IN ('pending', 'active', 'suspended');
CREATE INDEX lease_state_provider ON berth.lease_state (chain_id, provider_id, lease_id);
CREATE INDEX lease_state_tenant ON berth.lease_state (chain_id, tenant, lease_id);

CREATE OR REPLACE VIEW berth.leases AS
SELECT chain_id, lease_id, provider_id, tenant, status, close_reason,
       price_version, cpu_millis, memory_mib, storage_gib, manifest_hash, manifest_uri,
       max_rate, deposit, topped_up,
       deposit + topped_up - charged - refunded - withdrawn + dispute_to_tenant AS balance,
       charged, claimed,
       charged - dispute_opened + dispute_to_provider - claimed AS earned_unpaid,
       dispute_opened - dispute_to_provider - dispute_to_tenant AS disputed,
       refunded + withdrawn AS returned_to_tenant,
       report_count, opened_at, confirmed_at,
       COALESCE(to_timestamp(last_report_to), confirmed_at) AS billed_until,
       to_timestamp(closed_at_s) AS closed_at, endpoint,
       manifest_version,
       CASE WHEN status_event = 'suspended' THEN last_suspended_at END AS suspended_at,
       auto_topped_up
FROM berth.lease_state
WHERE openings > 0;

CREATE OR REPLACE VIEW berth.active_leases AS
SELECT * FROM berth.leases WHERE status IN ('pending', 'active');

CREATE OR REPLACE VIEW berth.lease_lifetimes AS
SELECT chain_id, lease_id, provider_id, tenant, status, close_reason, opened_at, confirmed_at, closed_at,
       EXTRACT(EPOCH FROM (COALESCE(closed_at, now()) - confirmed_at)) AS served_seconds
FROM berth.leases;

CREATE VIEW berth.utilisation AS
SELECT chain_id, lease_id, provider_id,
       cpu_units / NULLIF(reported_seconds * cpu_millis, 0) AS cpu_utilisation,
       memory_units / NULLIF(reported_seconds * memory_mib, 0) AS memory_utilisation,
       reported_seconds
FROM berth.lease_state
WHERE reports > 0 AND openings > 0;

-- Per provider: registration, the latest of each changeable field, and running sums.
CREATE TABLE berth.provider_state (
    chain_id         BIGINT NOT NULL,
    provider_id      NUMERIC(78, 0) NOT NULL,
    registered       BOOLEAN NOT NULL DEFAULT false,
    owner            TEXT,
    token            TEXT,
    registered_at    TIMESTAMPTZ,
    reg_operator     TEXT,
    reg_endpoint     TEXT,
    reg_attributes   TEXT,
    reg_stake        NUMERIC,
    operator         TEXT,
    endpoint         TEXT,
    attributes       TEXT,
    status_code      INT,
    cpu_millis       BIGINT,
    memory_mib       BIGINT,
    storage_gib      BIGINT,
    price_version    INT,
    stake_added      NUMERIC NOT NULL DEFAULT 0,
    stake_withdrawn  NUMERIC NOT NULL DEFAULT 0,
    reserved_cpu     BIGINT NOT NULL DEFAULT 0,
    reserved_memory  BIGINT NOT NULL DEFAULT 0,
    reservations     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, provider_id)
);

CREATE OR REPLACE VIEW berth.providers AS
SELECT chain_id, provider_id, owner, token, registered_at,
       COALESCE(operator, reg_operator) AS operator,
       COALESCE(endpoint, reg_endpoint) AS endpoint,
       COALESCE(attributes, reg_attributes) AS attributes,
       (ARRAY['none', 'active', 'paused', 'exiting', 'exited'])[COALESCE(status_code, 1) + 1] AS status,
       cpu_millis, memory_mib, storage_gib,
       reserved_cpu AS allocated_cpu_millis, reserved_memory AS allocated_memory_mib,
       reservations AS active_leases,
       price_version,
       reg_stake + stake_added - stake_withdrawn AS stake
FROM berth.provider_state
WHERE registered;

-- Charges reported per provider and day (UTC).
CREATE TABLE berth.provider_revenue_daily (
    chain_id     BIGINT NOT NULL,
    day          TIMESTAMPTZ NOT NULL,
    provider_id  NUMERIC(78, 0) NOT NULL,
    charged      NUMERIC NOT NULL,
    reports      BIGINT NOT NULL,
    PRIMARY KEY (chain_id, day, provider_id)
);
CREATE INDEX provider_revenue_daily_provider ON berth.provider_revenue_daily (chain_id, provider_id, day);

-- What each tenant paid in (deposits and top-ups), was charged and got back.
CREATE TABLE berth.tenant_spend (
    chain_id  BIGINT NOT NULL,
    tenant    TEXT NOT NULL,
    leases    BIGINT NOT NULL,
    paid_in   NUMERIC NOT NULL,
    charged   NUMERIC NOT NULL,
    returned  NUMERIC NOT NULL,
    PRIMARY KEY (chain_id, tenant)
);

-- Existing events are folded in by the indexer at start (it finds these tables empty
-- and the event log not: Store::open rebuilds them).
