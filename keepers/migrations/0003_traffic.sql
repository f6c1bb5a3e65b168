-- Bytes each lease's apps moved through the provider's gateway, read with every sampling
-- round: the egress a later price can bill. The gateway's counters are cumulative since it
-- started; a decrease between two rows is a gateway restart.
CREATE TABLE berth_keeper.traffic_samples (
    chain_id        BIGINT      NOT NULL,
    escrow          TEXT        NOT NULL,
    lease_id        NUMERIC(78) NOT NULL,
    taken_at_ms     BIGINT      NOT NULL,  -- wall clock, unix milliseconds
    request_bytes   BIGINT      NOT NULL,
    response_bytes  BIGINT      NOT NULL,
    PRIMARY KEY (chain_id, escrow, lease_id, taken_at_ms)
);
