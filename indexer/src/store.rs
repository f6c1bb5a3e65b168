//! Postgres side of the indexer: batched, idempotent writes committed together with the
//! checkpoint, and the rollback of everything above a common ancestor after a reorg.

use alloy::primitives::{Address, B256, Bytes};
use sqlx::{PgPool, Postgres, Transaction};

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
    fn id(&self, key: &str) -> Option<String> {
        self.args
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is out of the range the indexer writes.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
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
        Ok(Self {
            pool,
            chain_id: i64_of(chain_id)?,
        })
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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

    /// Writes a batch of logs and the blocks seen, and moves the checkpoint to `head`, in one
    /// transaction; blocks older than `keep_blocks` below `head` are pruned. Idempotent: a
    /// batch written twice (e.g. after a crash between commit and acknowledgement) adds nothing.
    pub async fn commit_batch(
        &self,
        logs: &[LogRow],
        blocks: &[BlockRef],
        head: BlockRef,
        keep_blocks: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.insert_raw_logs(&mut tx, logs).await?;
        self.insert_events(&mut tx, logs).await?;
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
        tx.commit().await?;
        Ok(())
    }

    async fn insert_raw_logs(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        logs: &[LogRow],
    ) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut cols = RawColumns::default();
        for l in logs {
            cols.push(l)?;
        }
        sqlx::query(
            "INSERT INTO berth.raw_logs
               (chain_id, block_number, block_hash, log_index, tx_hash, address, topics, data, event, decode_error)
             SELECT $1, n, h, i, tx, a, tp, d, e, err
             FROM UNNEST($2::BIGINT[], $3::BYTEA[], $4::INT[], $5::BYTEA[], $6::BYTEA[], $7::BYTEA[],
                         $8::BYTEA[], $9::TEXT[], $10::TEXT[]) AS u(n, h, i, tx, a, tp, d, e, err)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&cols.numbers)
        .bind(&cols.hashes)
        .bind(&cols.indexes)
        .bind(&cols.txs)
        .bind(&cols.addresses)
        .bind(&cols.topics)
        .bind(&cols.data)
        .bind(&cols.events)
        .bind(&cols.errors)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn insert_events(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        logs: &[LogRow],
    ) -> Result<(), StoreError> {
        let mut cols = EventColumns::default();
        for l in logs {
            if let Ok(d) = &l.decoded {
                cols.push(l, d)?;
            }
        }
        if cols.numbers.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO berth.events
               (chain_id, block_number, block_hash, block_time, log_index, tx_hash, contract, event,
                lease_id, provider_id, args)
             SELECT $1, n, h, to_timestamp(t), i, tx, c, e, l::NUMERIC, p::NUMERIC, a
             FROM UNNEST($2::BIGINT[], $3::BYTEA[], $4::BIGINT[], $5::INT[], $6::BYTEA[], $7::TEXT[],
                         $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::JSONB[]) AS u(n, h, t, i, tx, c, e, l, p, a)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&cols.numbers)
        .bind(&cols.hashes)
        .bind(&cols.times)
        .bind(&cols.indexes)
        .bind(&cols.txs)
        .bind(&cols.contracts)
        .bind(&cols.events)
        .bind(&cols.lease_ids)
        .bind(&cols.provider_ids)
        .bind(&cols.args)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Deletes every row above `ancestor` and moves the checkpoint back to it, in one
    /// transaction: the indexer then re-indexes the new branch from there.
    pub async fn rewind_to(&self, ancestor: BlockRef) -> Result<(), StoreError> {
        let above = i64_of(ancestor.number)?;
        let mut tx = self.pool.begin().await?;
        for table in ["berth.events", "berth.raw_logs", "berth.blocks"] {
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

#[derive(Default)]
struct RawColumns {
    numbers: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    indexes: Vec<i32>,
    txs: Vec<Vec<u8>>,
    addresses: Vec<Vec<u8>>,
    topics: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
    events: Vec<Option<String>>,
    errors: Vec<Option<String>>,
}

impl RawColumns {
    fn push(&mut self, l: &LogRow) -> Result<(), StoreError> {
        self.numbers.push(i64_of(l.block_number)?);
        self.hashes.push(l.block_hash.to_vec());
        self.indexes
            .push(i32::try_from(l.log_index).map_err(|_| StoreError::Corrupt("log index".into()))?);
        self.txs.push(l.tx_hash.to_vec());
        self.addresses.push(l.address.to_vec());
        self.topics
            .push(l.topics.iter().flat_map(|t| t.0).collect());
        self.data.push(l.data.to_vec());
        match &l.decoded {
            Ok(d) => {
                self.events.push(Some(d.event.clone()));
                self.errors.push(None);
            }
            Err(e) => {
                self.events.push(None);
                self.errors.push(Some(e.clone()));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct EventColumns {
    numbers: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    times: Vec<i64>,
    indexes: Vec<i32>,
    txs: Vec<Vec<u8>>,
    contracts: Vec<String>,
    events: Vec<String>,
    lease_ids: Vec<Option<String>>,
    provider_ids: Vec<Option<String>>,
    args: Vec<serde_json::Value>,
}

impl EventColumns {
    fn push(&mut self, l: &LogRow, d: &DecodedRow) -> Result<(), StoreError> {
        self.numbers.push(i64_of(l.block_number)?);
        self.hashes.push(l.block_hash.to_vec());
        self.times.push(i64_of(l.block_time)?);
        self.indexes
            .push(i32::try_from(l.log_index).map_err(|_| StoreError::Corrupt("log index".into()))?);
        self.txs.push(l.tx_hash.to_vec());
        self.contracts.push(d.contract.to_owned());
        self.events.push(d.event.clone());
        self.lease_ids.push(d.id("leaseId"));
        self.provider_ids.push(d.id("providerId"));
        self.args.push(serde_json::Value::Object(d.args.clone()));
        Ok(())
    }
}
