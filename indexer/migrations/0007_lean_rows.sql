-- Faster backfill (issue 18): a decoded log is stored once, in berth.events (its fields are
-- all in `args`, its position in the key); berth.raw_logs keeps only the logs that did not
-- decode, with the reason. Rows are keyed by their position on the stored chain,
-- (chain_id, block_number, log_index): the indexer deletes a range before writing it and
-- rolls back above the common ancestor, so a position holds one log; keys then grow in
-- order (appends to the B-tree instead of random inserts keyed by hash) and the separate
-- block-number indexes are redundant.
DELETE FROM berth.raw_logs WHERE decode_error IS NULL;

ALTER TABLE berth.events DROP CONSTRAINT events_pkey;
ALTER TABLE berth.events ADD PRIMARY KEY (chain_id, block_number, log_index);
DROP INDEX berth.events_block;

ALTER TABLE berth.raw_logs DROP CONSTRAINT raw_logs_pkey;
ALTER TABLE berth.raw_logs ADD PRIMARY KEY (chain_id, block_number, log_index);
DROP INDEX berth.raw_logs_block;
