-- Leases whose workload is gone but whose volumes are kept until their final usage report is
-- settled (mined, or its window over). A row means: delete this lease's volumes (the whole
-- namespace on Kubernetes) once it owes no report; the keeper removes the row after that.
-- Kept in the database so a keeper restart in between still deletes them.
CREATE TABLE berth_keeper.volume_holds (
    chain_id   BIGINT      NOT NULL,
    escrow     TEXT        NOT NULL,
    lease_id   NUMERIC(78) NOT NULL,
    since      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, escrow, lease_id)
);
