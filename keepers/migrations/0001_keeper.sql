-- The provider keeper's durable state, in its own schema beside the indexer's.

-- Manifest bytes tenants uploaded (signed) or the keeper downloaded, one row per lease.
CREATE TABLE berth_keeper.manifests (
    chain_id     BIGINT      NOT NULL,
    escrow       TEXT        NOT NULL,
    lease_id     NUMERIC(78) NOT NULL,
    bytes        BYTEA       NOT NULL,
    hash         BYTEA       NOT NULL,  -- keccak256 of bytes
    source       TEXT        NOT NULL,  -- 'upload' or the URI it was downloaded from
    signer       TEXT,                  -- the tenant address that signed an upload
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, escrow, lease_id)
);

-- Every transaction the keeper sent, so that a possibly-mined one is checked, not resent.
CREATE TABLE berth_keeper.transactions (
    id           BIGSERIAL   PRIMARY KEY,
    chain_id     BIGINT      NOT NULL,
    escrow       TEXT        NOT NULL,
    lease_id     NUMERIC(78) NOT NULL,
    action       TEXT        NOT NULL,  -- confirm, reject, ...
    detail       TEXT        NOT NULL,  -- endpoint, reject reason and rule
    tx_hash      BYTEA       NOT NULL UNIQUE,
    nonce        BIGINT      NOT NULL,
    state        TEXT        NOT NULL DEFAULT 'sent',  -- sent, mined, reverted, dropped
    sent_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    settled_at   TIMESTAMPTZ
);
CREATE INDEX transactions_open ON berth_keeper.transactions (chain_id, escrow, lease_id, action)
    WHERE state = 'sent';
