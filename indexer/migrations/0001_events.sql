-- Berth indexer schema: append-only event tables keyed by log position, so that a reorg
-- rollback is a DELETE above the common ancestor; current state (providers, leases) is
-- derived by views and therefore rolls back with the events.
CREATE SCHEMA IF NOT EXISTS berth;

-- Where indexing stands, per chain: the last fully indexed block and its hash.
CREATE TABLE berth.checkpoint (
    chain_id      BIGINT PRIMARY KEY,
    block_number  BIGINT NOT NULL,
    block_hash    BYTEA  NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Recent canonical blocks the indexer has seen (range ends and blocks with logs): the window
-- searched for a common ancestor after a reorg.
CREATE TABLE berth.blocks (
    chain_id      BIGINT NOT NULL,
    block_number  BIGINT NOT NULL,
    block_hash    BYTEA  NOT NULL,
    block_time    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (chain_id, block_number)
);

-- Every log of the watched contracts, decoded or not.
CREATE TABLE berth.raw_logs (
    chain_id      BIGINT NOT NULL,
    block_number  BIGINT NOT NULL,
    block_hash    BYTEA  NOT NULL,
    log_index     INTEGER NOT NULL,
    tx_hash       BYTEA  NOT NULL,
    address       BYTEA  NOT NULL,
    topics        BYTEA  NOT NULL,   -- topic0 || topic1 || ... (32 bytes each)
    data          BYTEA  NOT NULL,
    event         TEXT,            -- decoded event name, NULL if it did not decode
    decode_error  TEXT,            -- why it did not decode
    PRIMARY KEY (chain_id, block_hash, log_index)
);
CREATE INDEX raw_logs_block ON berth.raw_logs (chain_id, block_number);

-- Every decoded event, typed by the views below. `args` holds the event's fields by their
-- Solidity names (integers as decimal strings, so uint256 survives).
CREATE TABLE berth.events (
    chain_id      BIGINT  NOT NULL,
    block_number  BIGINT  NOT NULL,
    block_hash    BYTEA   NOT NULL,
    block_time    TIMESTAMPTZ NOT NULL,
    log_index     INTEGER NOT NULL,
    tx_hash       BYTEA   NOT NULL,
    contract      TEXT    NOT NULL,  -- 'registry' or 'escrow'
    event         TEXT    NOT NULL,  -- Solidity event name
    lease_id      NUMERIC(78, 0),
    provider_id   NUMERIC(78, 0),
    args          JSONB   NOT NULL,
    PRIMARY KEY (chain_id, block_hash, log_index)
);
CREATE INDEX events_block ON berth.events (chain_id, block_number);
CREATE INDEX events_lease ON berth.events (lease_id, block_number, log_index) WHERE lease_id IS NOT NULL;
CREATE INDEX events_provider ON berth.events (provider_id, block_number, log_index) WHERE provider_id IS NOT NULL;
