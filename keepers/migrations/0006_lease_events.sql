-- Each lease's event feed: what happened to it, from the chain (confirmed, suspended,
-- resumed, terminated, rejected) and from the engine (deployed, image pulled, updated,
-- restarted with its exit code, crash loop). `dedupe` makes recording idempotent: a pass
-- that runs twice, or a keeper that restarts, never records an event twice.
CREATE TABLE berth_keeper.lease_events (
    chain_id  BIGINT      NOT NULL,
    escrow    TEXT        NOT NULL,
    lease_id  NUMERIC(78) NOT NULL,
    seq       BIGSERIAL   NOT NULL,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind      TEXT        NOT NULL,
    detail    JSONB       NOT NULL DEFAULT '{}',
    dedupe    TEXT        NOT NULL,
    PRIMARY KEY (chain_id, escrow, lease_id, dedupe)
);
CREATE INDEX lease_events_feed ON berth_keeper.lease_events (chain_id, escrow, lease_id, seq);
