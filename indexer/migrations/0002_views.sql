-- Typed views over berth.events for analysts (and the keepers and CLI). Amounts are in the
-- payment token's base units; times are block times.

CREATE VIEW berth.provider_registrations AS
SELECT chain_id, provider_id, block_number, block_time, args->>'owner' AS owner, args->>'operator' AS operator,
       args->>'token' AS token, (args->>'stake')::NUMERIC AS stake, args->>'endpoint' AS endpoint,
       args->>'attributes' AS attributes
FROM berth.events WHERE contract = 'registry' AND event = 'ProviderRegistered';

CREATE VIEW berth.provider_changes AS
SELECT chain_id, provider_id, block_number, log_index, block_time, event AS change, args
FROM berth.events WHERE contract = 'registry' AND provider_id IS NOT NULL;

CREATE VIEW berth.provider_prices AS
SELECT chain_id, provider_id, (args->>'version')::INT AS version, block_time AS published_at,
       (args->>'baseRate')::NUMERIC AS base_rate, (args->>'cpuPrice')::NUMERIC AS cpu_price,
       (args->>'memoryPrice')::NUMERIC AS memory_price, (args->>'storagePrice')::NUMERIC AS storage_price
FROM berth.events WHERE contract = 'registry' AND event = 'PricesUpdated';

CREATE VIEW berth.lease_openings AS
SELECT chain_id, lease_id, provider_id, block_number, block_time AS opened_at, args->>'tenant' AS tenant,
       (args->>'priceVersion')::INT AS price_version, (args->>'cpuMillis')::BIGINT AS cpu_millis,
       (args->>'memoryMiB')::BIGINT AS memory_mib, (args->>'storageGiB')::BIGINT AS storage_gib,
       args->>'manifestHash' AS manifest_hash, args->>'manifestUri' AS manifest_uri,
       (args->>'deposit')::NUMERIC AS deposit, (args->>'maxRate')::NUMERIC AS max_rate
FROM berth.events WHERE contract = 'escrow' AND event = 'LeaseOpened';

CREATE VIEW berth.usage_reports AS
SELECT chain_id, lease_id, provider_id, block_number, block_time AS reported_at,
       (args->>'sequence')::BIGINT AS sequence,
       to_timestamp((args->>'from')::BIGINT) AS period_from, to_timestamp((args->>'to')::BIGINT) AS period_to,
       (args->>'to')::BIGINT - (args->>'from')::BIGINT AS period_seconds,
       (args->>'cpuUnits')::NUMERIC AS cpu_units, (args->>'memoryUnits')::NUMERIC AS memory_units,
       (args->>'storageUnits')::NUMERIC AS storage_units, (args->>'charge')::NUMERIC AS charge,
       args->>'samplesRoot' AS samples_root
FROM berth.events WHERE contract = 'escrow' AND event = 'UsageReported';

CREATE VIEW berth.topups AS
SELECT chain_id, lease_id, block_number, block_time, args->>'from' AS payer,
       (args->>'amount')::NUMERIC AS amount, (args->>'balance')::NUMERIC AS balance_after
FROM berth.events WHERE contract = 'escrow' AND event = 'LeaseToppedUp';

CREATE VIEW berth.claims AS
SELECT chain_id, lease_id, provider_id, block_number, block_time, args->>'to' AS recipient,
       (args->>'amount')::NUMERIC AS amount
FROM berth.events WHERE contract = 'escrow' AND event = 'ChargesClaimed';

-- Money back to tenants: refunds of rejected/cancelled leases, withdrawals of the unearned
-- rest, and the tenant's share of dispute rulings.
CREATE VIEW berth.refunds AS
SELECT chain_id, lease_id, block_number, block_time, args->>'tenant' AS tenant,
       CASE event WHEN 'Refunded' THEN 'refund' WHEN 'LeaseWithdrawn' THEN 'withdrawal' END AS kind,
       (args->>'amount')::NUMERIC AS amount
FROM berth.events WHERE contract = 'escrow' AND event IN ('Refunded', 'LeaseWithdrawn')
UNION ALL
SELECT chain_id, lease_id, block_number, block_time, NULL, 'dispute', (args->>'toTenant')::NUMERIC
FROM berth.events WHERE contract = 'escrow' AND event = 'DisputeResolved';

CREATE VIEW berth.disputes AS
SELECT chain_id, lease_id, block_number, block_time,
       CASE event WHEN 'ChargesDisputed' THEN 'opened' ELSE 'resolved' END AS kind,
       (args->>'amount')::NUMERIC AS disputed_amount,
       (args->>'toProvider')::NUMERIC AS to_provider, (args->>'toTenant')::NUMERIC AS to_tenant
FROM berth.events WHERE contract = 'escrow' AND event IN ('ChargesDisputed', 'DisputeResolved');

CREATE VIEW berth.lease_status_history AS
SELECT chain_id, lease_id, block_number, log_index, block_time,
       CASE
         WHEN event = 'LeaseOpened' THEN 'pending'
         WHEN event = 'LeaseConfirmed' THEN 'active'
         WHEN event = 'LeaseRejected' THEN 'rejected'
         WHEN event = 'LeaseWithdrawn' THEN 'closed'
         WHEN args->>'reason' IN ('1', '2') THEN 'closing'
         WHEN args->>'reason' = '3' THEN 'rejected'
         WHEN args->>'reason' = '4' THEN 'cancelled'
       END AS status,
       CASE
         WHEN event = 'LeaseClosed' THEN
           -- 'rejected' is left to LeaseRejected, which says why
           (ARRAY['tenant_closed', 'exhausted', NULL, 'cancelled'])[(args->>'reason')::INT]
         WHEN event = 'LeaseRejected' THEN
           (ARRAY['unspecified', 'capacity_unavailable', 'insufficient_runway', 'manifest_unavailable',
                  'manifest_hash_mismatch', 'manifest_invalid', 'resources_exceed_reservation',
                  'policy_violation'])[(args->>'reason')::INT + 1]
       END AS reason
FROM berth.events
WHERE contract = 'escrow' AND event IN ('LeaseOpened', 'LeaseConfirmed', 'LeaseRejected', 'LeaseClosed', 'LeaseWithdrawn');

-- Current state of every lease, as LeaseEscrow.getLease would show it (claimable and the two
-- pending buckets are summed into earned_unpaid: their split depends on the clock).
CREATE VIEW berth.leases AS
WITH sums AS (
  SELECT chain_id, lease_id,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'LeaseToppedUp'), 0) AS topped_up,
    COALESCE(SUM((args->>'charge')::NUMERIC) FILTER (WHERE event = 'UsageReported'), 0) AS charged,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'Refunded'), 0) AS refunded,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'LeaseWithdrawn'), 0) AS withdrawn,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'ChargesClaimed'), 0) AS claimed,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'ChargesDisputed'), 0) AS dispute_opened,
    COALESCE(SUM((args->>'toProvider')::NUMERIC) FILTER (WHERE event = 'DisputeResolved'), 0) AS dispute_to_provider,
    COALESCE(SUM((args->>'toTenant')::NUMERIC) FILTER (WHERE event = 'DisputeResolved'), 0) AS dispute_to_tenant,
    COALESCE(MAX((args->>'sequence')::BIGINT) FILTER (WHERE event = 'UsageReported'), 0) AS report_count,
    MAX((args->>'to')::BIGINT) FILTER (WHERE event = 'UsageReported') AS last_report_to,
    MIN(block_time) FILTER (WHERE event = 'LeaseConfirmed') AS confirmed_at,
    MAX(args->>'endpoint') FILTER (WHERE event = 'LeaseConfirmed') AS endpoint,
    MAX((args->>'closedAt')::BIGINT) FILTER (WHERE event = 'LeaseClosed') AS closed_at_s
  FROM berth.events WHERE contract = 'escrow' AND lease_id IS NOT NULL
  GROUP BY chain_id, lease_id
), latest AS (
  SELECT DISTINCT ON (chain_id, lease_id) chain_id, lease_id, status
  FROM berth.lease_status_history ORDER BY chain_id, lease_id, block_number DESC, log_index DESC
), reasons AS (
  SELECT DISTINCT ON (chain_id, lease_id) chain_id, lease_id, reason AS close_reason
  FROM berth.lease_status_history WHERE reason IS NOT NULL
  ORDER BY chain_id, lease_id, block_number DESC, log_index DESC
)
SELECT o.chain_id, o.lease_id, o.provider_id, o.tenant, latest.status, reasons.close_reason,
       o.price_version, o.cpu_millis, o.memory_mib, o.storage_gib, o.manifest_hash, o.manifest_uri,
       o.max_rate, o.deposit, s.topped_up,
       o.deposit + s.topped_up - s.charged - s.refunded - s.withdrawn AS balance,
       s.charged, s.claimed,
       s.charged - s.dispute_opened + s.dispute_to_provider - s.claimed AS earned_unpaid,
       s.dispute_opened - s.dispute_to_provider - s.dispute_to_tenant AS disputed,
       s.refunded + s.withdrawn + s.dispute_to_tenant AS returned_to_tenant,
       s.report_count, o.opened_at, s.confirmed_at,
       COALESCE(to_timestamp(s.last_report_to), s.confirmed_at) AS billed_until,
       to_timestamp(s.closed_at_s) AS closed_at, s.endpoint
FROM berth.lease_openings o
JOIN sums s USING (chain_id, lease_id)
JOIN latest USING (chain_id, lease_id)
LEFT JOIN reasons USING (chain_id, lease_id);

-- Current state of every provider.
CREATE VIEW berth.providers AS
WITH latest_field AS (
  SELECT DISTINCT ON (chain_id, provider_id, event) chain_id, provider_id, event, args
  FROM berth.events
  WHERE contract = 'registry' AND provider_id IS NOT NULL
    AND event IN ('EndpointUpdated', 'AttributesUpdated', 'OperatorUpdated', 'ProviderStatusChanged',
                  'CapacityUpdated', 'PricesUpdated')
  ORDER BY chain_id, provider_id, event, block_number DESC, log_index DESC
), sums AS (
  SELECT chain_id, provider_id,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'StakeAdded'), 0) AS stake_added,
    COALESCE(SUM((args->>'amount')::NUMERIC) FILTER (WHERE event = 'StakeWithdrawn'), 0) AS stake_withdrawn,
    (COALESCE(SUM((args->>'cpuMillis')::BIGINT) FILTER (WHERE event = 'CapacityReserved'), 0)
      - COALESCE(SUM((args->>'cpuMillis')::BIGINT) FILTER (WHERE event = 'CapacityReleased'), 0))::BIGINT
      AS allocated_cpu_millis,
    (COALESCE(SUM((args->>'memoryMiB')::BIGINT) FILTER (WHERE event = 'CapacityReserved'), 0)
      - COALESCE(SUM((args->>'memoryMiB')::BIGINT) FILTER (WHERE event = 'CapacityReleased'), 0))::BIGINT
      AS allocated_memory_mib,
    COUNT(*) FILTER (WHERE event = 'CapacityReserved') - COUNT(*) FILTER (WHERE event = 'CapacityReleased') AS active_leases
  FROM berth.events WHERE contract = 'registry' AND provider_id IS NOT NULL
  GROUP BY chain_id, provider_id
)
SELECT r.chain_id, r.provider_id, r.owner, r.token, r.block_time AS registered_at,
       COALESCE(op.args->>'operator', r.operator) AS operator,
       COALESCE(ep.args->>'endpoint', r.endpoint) AS endpoint,
       COALESCE(at.args->>'attributes', r.attributes) AS attributes,
       (ARRAY['none', 'active', 'paused', 'exiting', 'exited'])[COALESCE((st.args->>'status')::INT, 1) + 1] AS status,
       (cap.args->>'cpuMillis')::BIGINT AS cpu_millis, (cap.args->>'memoryMiB')::BIGINT AS memory_mib,
       (cap.args->>'storageGiB')::BIGINT AS storage_gib,
       s.allocated_cpu_millis, s.allocated_memory_mib, s.active_leases,
       (pr.args->>'version')::INT AS price_version,
       r.stake + s.stake_added - s.stake_withdrawn AS stake
FROM berth.provider_registrations r
JOIN sums s USING (chain_id, provider_id)
LEFT JOIN latest_field op ON op.chain_id = r.chain_id AND op.provider_id = r.provider_id AND op.event = 'OperatorUpdated'
LEFT JOIN latest_field ep ON ep.chain_id = r.chain_id AND ep.provider_id = r.provider_id AND ep.event = 'EndpointUpdated'
LEFT JOIN latest_field at ON at.chain_id = r.chain_id AND at.provider_id = r.provider_id AND at.event = 'AttributesUpdated'
LEFT JOIN latest_field st ON st.chain_id = r.chain_id AND st.provider_id = r.provider_id AND st.event = 'ProviderStatusChanged'
LEFT JOIN latest_field cap ON cap.chain_id = r.chain_id AND cap.provider_id = r.provider_id AND cap.event = 'CapacityUpdated'
LEFT JOIN latest_field pr ON pr.chain_id = r.chain_id AND pr.provider_id = r.provider_id AND pr.event = 'PricesUpdated';

-- Analyst views.
CREATE VIEW berth.active_leases AS
SELECT * FROM berth.leases WHERE status IN ('pending', 'active');

CREATE VIEW berth.provider_revenue_daily AS
SELECT chain_id, provider_id, date_trunc('day', reported_at) AS day,
       SUM(charge) AS charged, COUNT(*) AS reports
FROM berth.usage_reports GROUP BY chain_id, provider_id, date_trunc('day', reported_at);

CREATE VIEW berth.lease_lifetimes AS
SELECT chain_id, lease_id, provider_id, tenant, status, close_reason, opened_at, confirmed_at, closed_at,
       EXTRACT(EPOCH FROM (COALESCE(closed_at, now()) - confirmed_at)) AS served_seconds
FROM berth.leases;

CREATE VIEW berth.utilisation AS
SELECT u.chain_id, u.lease_id, u.provider_id,
       SUM(u.cpu_units) / NULLIF(SUM(u.period_seconds) * MAX(o.cpu_millis), 0) AS cpu_utilisation,
       SUM(u.memory_units) / NULLIF(SUM(u.period_seconds) * MAX(o.memory_mib), 0) AS memory_utilisation,
       SUM(u.period_seconds) AS reported_seconds
FROM berth.usage_reports u JOIN berth.lease_openings o USING (chain_id, lease_id)
GROUP BY u.chain_id, u.lease_id, u.provider_id;

CREATE VIEW berth.tenant_spend AS
SELECT chain_id, tenant, COUNT(*) AS leases, SUM(deposit + topped_up) AS paid_in,
       SUM(charged) AS charged, SUM(returned_to_tenant) AS returned
FROM berth.leases GROUP BY chain_id, tenant;

CREATE VIEW berth.dispute_summary AS
SELECT l.chain_id, l.provider_id, COUNT(*) FILTER (WHERE d.kind = 'opened') AS disputes,
       SUM(d.disputed_amount) AS disputed, SUM(d.to_provider) AS awarded_to_provider,
       SUM(d.to_tenant) AS awarded_to_tenant
FROM berth.disputes d JOIN berth.lease_openings l USING (chain_id, lease_id)
GROUP BY l.chain_id, l.provider_id;
