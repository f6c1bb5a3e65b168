-- berth.leases in one pass over the events: every column is an aggregate of one GROUP BY
-- (chain_id, lease_id), with the latest status and close reason taken by ordered aggregates
-- instead of DISTINCT ON subqueries joined back. The earlier form joined four derived
-- relations; with a misestimated filter the planner chose nested loops that re-sorted a
-- subquery per lease (lease_lifetimes: 6.4 s at 4,000 leases, 11.7 s at 8,000). One
-- aggregation is linear whatever the statistics say. Columns, names and meanings are
-- unchanged, so every view built on it (lease_lifetimes, active_leases, tenant_spend) is too.
CREATE OR REPLACE VIEW berth.leases AS
WITH per_lease AS (
  SELECT chain_id, lease_id,
    (MAX(provider_id) FILTER (WHERE event = 'LeaseOpened'))::NUMERIC(78, 0) AS provider_id,
    MAX(args->>'tenant') FILTER (WHERE event = 'LeaseOpened') AS tenant,
    (array_agg(
       CASE
         WHEN event = 'LeaseOpened' THEN 'pending'
         WHEN event = 'LeaseConfirmed' THEN 'active'
         WHEN event = 'LeaseRejected' THEN 'rejected'
         WHEN event = 'LeaseWithdrawn' THEN 'closed'
         WHEN args->>'reason' IN ('1', '2') THEN 'closing'
         WHEN args->>'reason' = '3' THEN 'rejected'
         WHEN args->>'reason' = '4' THEN 'cancelled'
       END ORDER BY block_number DESC, log_index DESC)
     FILTER (WHERE event IN ('LeaseOpened', 'LeaseConfirmed', 'LeaseRejected', 'LeaseClosed', 'LeaseWithdrawn')))[1]
      AS status,
    (array_agg(
       CASE
         WHEN event = 'LeaseClosed' THEN
           (ARRAY['tenant_closed', 'exhausted', NULL, 'cancelled'])[(args->>'reason')::INT]
         WHEN event = 'LeaseRejected' THEN
           (ARRAY['unspecified', 'capacity_unavailable', 'insufficient_runway', 'manifest_unavailable',
                  'manifest_hash_mismatch', 'manifest_invalid', 'resources_exceed_reservation',
                  'policy_violation'])[(args->>'reason')::INT + 1]
       END ORDER BY block_number DESC, log_index DESC)
     FILTER (WHERE (event = 'LeaseClosed' AND args->>'reason' IN ('1', '2', '4'))
                OR (event = 'LeaseRejected' AND (args->>'reason')::INT BETWEEN 0 AND 7)))[1]
      AS close_reason,
    MAX((args->>'priceVersion')::INT) FILTER (WHERE event = 'LeaseOpened') AS price_version,
    MAX((args->>'cpuMillis')::BIGINT) FILTER (WHERE event = 'LeaseOpened') AS cpu_millis,
    MAX((args->>'memoryMiB')::BIGINT) FILTER (WHERE event = 'LeaseOpened') AS memory_mib,
    MAX((args->>'storageGiB')::BIGINT) FILTER (WHERE event = 'LeaseOpened') AS storage_gib,
    MAX(args->>'manifestHash') FILTER (WHERE event = 'LeaseOpened') AS manifest_hash,
    MAX(args->>'manifestUri') FILTER (WHERE event = 'LeaseOpened') AS manifest_uri,
    MAX((args->>'maxRate')::NUMERIC) FILTER (WHERE event = 'LeaseOpened') AS max_rate,
    MAX((args->>'deposit')::NUMERIC) FILTER (WHERE event = 'LeaseOpened') AS deposit,
    MIN(block_time) FILTER (WHERE event = 'LeaseOpened') AS opened_at,
    COUNT(*) FILTER (WHERE event = 'LeaseOpened') AS openings,
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
)
SELECT chain_id, lease_id, provider_id, tenant, status, close_reason,
       price_version, cpu_millis, memory_mib, storage_gib, manifest_hash, manifest_uri,
       max_rate, deposit, topped_up,
       deposit + topped_up - charged - refunded - withdrawn AS balance,
       charged, claimed,
       charged - dispute_opened + dispute_to_provider - claimed AS earned_unpaid,
       dispute_opened - dispute_to_provider - dispute_to_tenant AS disputed,
       refunded + withdrawn + dispute_to_tenant AS returned_to_tenant,
       report_count, opened_at, confirmed_at,
       COALESCE(to_timestamp(last_report_to), confirmed_at) AS billed_until,
       to_timestamp(closed_at_s) AS closed_at, endpoint
FROM per_lease
WHERE openings > 0;
