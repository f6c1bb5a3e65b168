-- Secrets envelopes the keeper has opened, by the digest of their text: the lease that first
-- carried each one (an envelope is bound to its tenant and provider, not to a lease id, which
-- does not exist yet when the tenant seals it), so the same envelope on any other lease is
-- refused as replayed. No secret value is ever stored.
CREATE TABLE berth_keeper.envelopes (
    chain_id   BIGINT      NOT NULL,
    escrow     TEXT        NOT NULL,
    digest     BYTEA       NOT NULL,
    lease_id   NUMERIC(78) NOT NULL,
    key_version INT        NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, escrow, digest)
);
