-- Services the keeper scaled to zero because nobody used them (the manifest's idle_timeout).
-- A row means: the keeper wants this service stopped until the gateway asks it to wake; a
-- service that runs despite its row is simply awake. `since_ms` (the keeper's wall clock when
-- the sleep began) tells one sleep from the next, so the gateway wakes each sleep once.
CREATE TABLE berth_keeper.sleeps (
    chain_id   BIGINT      NOT NULL,
    escrow     TEXT        NOT NULL,
    lease_id   NUMERIC(78) NOT NULL,
    service    TEXT        NOT NULL,
    since_ms   BIGINT      NOT NULL,
    PRIMARY KEY (chain_id, escrow, lease_id, service)
);
