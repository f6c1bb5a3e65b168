-- Metering: raw samples, the reports built from them, and the claims that paid for them.

CREATE TABLE berth_keeper.samples (
    chain_id      BIGINT      NOT NULL,
    escrow        TEXT        NOT NULL,
    lease_id      NUMERIC(78) NOT NULL,
    container     TEXT        NOT NULL,
    taken_at_ms   BIGINT      NOT NULL,  -- wall clock, unix milliseconds
    cpu_ns        BIGINT      NOT NULL,  -- cumulative CPU time of the container
    memory_bytes  BIGINT      NOT NULL,
    PRIMARY KEY (chain_id, escrow, lease_id, container, taken_at_ms)
);

CREATE TABLE berth_keeper.reports (
    chain_id       BIGINT      NOT NULL,
    escrow         TEXT        NOT NULL,
    lease_id       NUMERIC(78) NOT NULL,
    sequence       BIGINT      NOT NULL,
    from_s         BIGINT      NOT NULL,
    to_s           BIGINT      NOT NULL,
    cpu_units      BIGINT      NOT NULL,
    memory_units   BIGINT      NOT NULL,
    storage_units  BIGINT      NOT NULL,
    samples_root   BYTEA       NOT NULL,
    sample_count   INTEGER     NOT NULL,
    -- Samples under the root: taken_at_ms in (from_s * 1000, samples_until_ms]; the wall clock
    -- at building time caps it, so a sample stored later can never change a sent root.
    samples_until_ms BIGINT    NOT NULL,
    clamped        BOOLEAN     NOT NULL,
    tx_hash        BYTEA,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A report that was never mined is replaced by the next attempt at its sequence.
    PRIMARY KEY (chain_id, escrow, lease_id, sequence)
);

CREATE TABLE berth_keeper.claims (
    id          BIGSERIAL   PRIMARY KEY,
    chain_id    BIGINT      NOT NULL,
    escrow      TEXT        NOT NULL,
    lease_ids   NUMERIC(78)[] NOT NULL,
    amount      NUMERIC(78) NOT NULL,  -- what the ChargesClaimed events paid, base units
    tx_hash     BYTEA       NOT NULL UNIQUE,
    claimed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Leases with nothing left to claim, so the claim round stops asking about them.
CREATE TABLE berth_keeper.settled (
    chain_id  BIGINT      NOT NULL,
    escrow    TEXT        NOT NULL,
    lease_id  NUMERIC(78) NOT NULL,
    PRIMARY KEY (chain_id, escrow, lease_id)
);
