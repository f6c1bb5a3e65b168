//! Postgres side of the indexer: batched, idempotent writes committed together with the
//! checkpoint, and the rollback of everything above a common ancestor after a reorg.

use alloy::primitives::{Address, B256, Bytes};
use sqlx::{PgPool, Postgres, Transaction};

use crate::{
    copy::CopyBuf,
    entities::{self, EventRef, Fold},
};

/// The schema, embedded and applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A block the indexer has seen on the canonical chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Block timestamp (seconds).
    pub time: u64,
}

/// One log of a watched contract, with what decoding made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Block timestamp (seconds).
    pub block_time: u64,
    /// Index of the log in the block.
    pub log_index: u32,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Emitting contract.
    pub address: Address,
    /// Topics, in order.
    pub topics: Vec<B256>,
    /// Data.
    pub data: Bytes,
    /// The decoded event, or why it did not decode.
    pub decoded: Result<DecodedRow, String>,
}

/// The decoded part of a [`LogRow`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRow {
    /// `registry` or `escrow`.
    pub contract: &'static str,
    /// Solidity event name.
    pub event: String,
    /// Named arguments.
    pub args: serde_json::Map<String, serde_json::Value>,
}

impl DecodedRow {
    fn id(&self, key: &str) -> Option<&str> {
        self.args.get(key).and_then(|v| v.as_str())
    }
}

pub use berth_runtime::StoreError;

/// How long writing one batch took: sending its rows, and the `COMMIT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteTimes {
    /// Deletes, COPY and upserts.
    pub write: std::time::Duration,
    /// The commit.
    pub commit: std::time::Duration,
}

fn i64_of(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} does not fit in BIGINT")))
}

fn u64_of(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative block number {n}")))
}

fn b256_of(bytes: &[u8]) -> Result<B256, StoreError> {
    B256::try_from(bytes)
        .map_err(|_| StoreError::Corrupt(format!("{} bytes is not a hash", bytes.len())))
}

/// The indexer's tables for one chain.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    chain_id: i64,
}

impl Store {
    /// A store for `chain_id` on `pool`; applies the migrations.
    pub async fn open(pool: PgPool, chain_id: u64) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await?;
        let chain_id = i64_of(chain_id)?;
        let mut tx = pool.begin().await?;
        if entities::undo::need_rebuild(&mut tx, chain_id).await? {
            tracing::info!("folding the stored event log into the entity tables");
            entities::undo::rebuild(&mut tx, chain_id).await?;
        }
        tx.commit().await?;
        Ok(Self { pool, chain_id })
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Empties the entity tables and folds the whole stored event log into them again, in
    /// one transaction (for audits and for tests that write events directly).
    pub async fn rebuild_entities(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        entities::undo::rebuild(&mut tx, self.chain_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last fully indexed block.
    pub async fn checkpoint(&self) -> Result<Option<BlockRef>, StoreError> {
        let row: Option<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT c.block_number, c.block_hash, COALESCE(EXTRACT(EPOCH FROM b.block_time)::BIGINT, 0)
             FROM berth.checkpoint c
             LEFT JOIN berth.blocks b ON b.chain_id = c.chain_id AND b.block_number = c.block_number
             WHERE c.chain_id = $1",
        )
        .bind(self.chain_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(n, h, t)| {
            Ok(BlockRef {
                number: u64_of(n)?,
                hash: b256_of(&h)?,
                time: u64_of(t)?,
            })
        })
        .transpose()
    }

    /// Stored blocks from the newest down, at most `limit`: where a common ancestor is sought.
    pub async fn recent_blocks(&self, limit: i64) -> Result<Vec<BlockRef>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT block_number, block_hash, EXTRACT(EPOCH FROM block_time)::BIGINT
             FROM berth.blocks WHERE chain_id = $1 ORDER BY block_number DESC LIMIT $2",
        )
        .bind(self.chain_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(n, h, t)| {
                Ok(BlockRef {
                    number: u64_of(n)?,
                    hash: b256_of(&h)?,
                    time: u64_of(t)?,
                })
            })
            .collect()
    }

    /// Writes the logs of blocks `from..=head` and the blocks seen, and moves the checkpoint
    /// to `head`, in one transaction; blocks older than `keep_blocks` below `head` are pruned.
    /// Idempotent: rows already stored for that block range are replaced, so a batch written
    /// twice (e.g. re-indexing after a lost checkpoint) adds nothing.
    pub async fn commit_batch(
        &self,
        from: u64,
        logs: &[LogRow],
        blocks: &[BlockRef],
        head: BlockRef,
        keep_blocks: u64,
    ) -> Result<WriteTimes, StoreError> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let (first, last) = (i64_of(from)?, i64_of(head.number)?);
        entities::undo::undo_range(&mut tx, self.chain_id, first, last).await?;
        sqlx::query(
            "DELETE FROM berth.raw_logs WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
        )
        .bind(self.chain_id)
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        self.copy_logs(&mut tx, logs).await?;
        let mut fold = Fold::default();
        for l in logs {
            if let Ok(d) = &l.decoded {
                fold.apply(EventRef {
                    contract: d.contract,
                    event: &d.event,
                    lease_id: d.id("leaseId"),
                    provider_id: d.id("providerId"),
                    args: &d.args,
                    block_time: l.block_time,
                });
            }
        }
        entities::write::merge(&mut tx, self.chain_id, &fold).await?;
        let mut numbers = Vec::with_capacity(blocks.len() + 1);
        let mut hashes = Vec::with_capacity(blocks.len() + 1);
        let mut times = Vec::with_capacity(blocks.len() + 1);
        for b in blocks.iter().chain(std::iter::once(&head)) {
            numbers.push(i64_of(b.number)?);
            hashes.push(b.hash.to_vec());
            times.push(i64_of(b.time)?);
        }
        sqlx::query(
            "INSERT INTO berth.blocks (chain_id, block_number, block_hash, block_time)
             SELECT $1, n, h, to_timestamp(t) FROM UNNEST($2::BIGINT[], $3::BYTEA[], $4::BIGINT[]) AS u(n, h, t)
             ON CONFLICT (chain_id, block_number) DO UPDATE
               SET block_hash = EXCLUDED.block_hash, block_time = EXCLUDED.block_time",
        )
        .bind(self.chain_id)
        .bind(&numbers)
        .bind(&hashes)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO berth.checkpoint (chain_id, block_number, block_hash, updated_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (chain_id) DO UPDATE
               SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, updated_at = now()",
        )
        .bind(self.chain_id)
        .bind(i64_of(head.number)?)
        .bind(head.hash.to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM berth.blocks WHERE chain_id = $1 AND block_number < $2")
            .bind(self.chain_id)
            .bind(i64_of(head.number.saturating_sub(keep_blocks))?)
            .execute(&mut *tx)
            .await?;
        let write = started.elapsed();
        tx.commit().await?;
        Ok(WriteTimes {
            write,
            commit: started.elapsed() - write,
        })
    }

    /// Loads the batch with COPY: decoded logs into `events`, the others into `raw_logs`.
    async fn copy_logs(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        logs: &[LogRow],
    ) -> Result<(), StoreError> {
        let mut raw = CopyBuf::new();
        let mut events = CopyBuf::new();
        for l in logs {
            let number = i64_of(l.block_number)?;
            let index = i64::from(l.log_index);
            match &l.decoded {
                Ok(d) => {
                    events
                        .int(self.chain_id)
                        .int(number)
                        .bytea(l.block_hash.as_slice());
                    events
                        .unix_time(l.block_time)
                        .int(index)
                        .bytea(l.tx_hash.as_slice());
                    events.text(d.contract).text(&d.event);
                    events
                        .opt_text(d.id("leaseId"))
                        .opt_text(d.id("providerId"));
                    events
                        .json(&d.args)
                        .map_err(|e| StoreError::Corrupt(format!("event arguments: {e}")))?;
                    events.end_row();
                }
                Err(e) => {
                    let topics: Vec<u8> = l.topics.iter().flat_map(|t| t.0).collect();
                    raw.int(self.chain_id)
                        .int(number)
                        .bytea(l.block_hash.as_slice())
                        .int(index);
                    raw.bytea(l.tx_hash.as_slice())
                        .bytea(l.address.as_slice())
                        .bytea(&topics)
                        .bytea(&l.data);
                    raw.opt_text(None).text(e);
                    raw.end_row();
                }
            }
        }
        for (table, columns, rows) in [
            (
                "berth.raw_logs",
                "chain_id, block_number, block_hash, log_index, tx_hash, address, topics, data, event, decode_error",
                &raw,
            ),
            (
                "berth.events",
                "chain_id, block_number, block_hash, block_time, log_index, tx_hash, contract, event, lease_id, provider_id, args",
                &events,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let mut copy = tx
                .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
                .await?;
            copy.send(rows.as_bytes()).await?;
            copy.finish().await?;
        }
        Ok(())
    }

    /// Refreshes the planner statistics of the indexer's tables.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE berth.events, berth.raw_logs, berth.blocks")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every row above `ancestor` and moves the checkpoint back to it, in one
    /// transaction: the indexer then re-indexes the new branch from there.
    pub async fn rewind_to(&self, ancestor: BlockRef) -> Result<(), StoreError> {
        let above = i64_of(ancestor.number)?;
        let mut tx = self.pool.begin().await?;
        entities::undo::undo_range(&mut tx, self.chain_id, above + 1, i64::MAX).await?;
        for table in ["berth.raw_logs", "berth.blocks"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE chain_id = $1 AND block_number > $2"
            ))
            .bind(self.chain_id)
            .bind(above)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE berth.checkpoint SET block_number = $2, block_hash = $3, updated_at = now() WHERE chain_id = $1")
            .bind(self.chain_id)
            .bind(above)
            .bind(ancestor.hash.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
