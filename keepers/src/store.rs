//! The keeper's durable state in Postgres (schema `berth_keeper`): manifests and the
//! transactions it sent.

use alloy::primitives::{Address, B256, U256};
use sqlx::{PgPool, Row, postgres::PgConnectOptions};

/// The schema, embedded and applied at start; its bookkeeping table lives in `berth_keeper`
/// too, so the keeper and the indexer can share a database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or is unreachable.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Manifest bytes stored for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Where they came from: `upload` or a URI.
    pub source: String,
}

/// A transaction that was sent and has no known outcome yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTx {
    /// Row id.
    pub id: i64,
    /// Hash.
    pub hash: B256,
    /// Nonce it used.
    pub nonce: u64,
}

/// The keeper's store for one escrow on one chain.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    chain_id: i64,
    escrow: String,
}

impl Store {
    /// Connects to `url` and migrates.
    pub async fn connect(url: &str, chain_id: u64, escrow: Address) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        Self::open(pool, chain_id, escrow).await
    }

    /// A store on `pool`; applies the migrations, keeping their bookkeeping table in
    /// `berth_keeper` (every query names its schema, so the search path matters only here).
    pub async fn open(pool: PgPool, chain_id: u64, escrow: Address) -> Result<Self, StoreError> {
        let mut conn = pool.acquire().await?;
        sqlx::query("CREATE SCHEMA IF NOT EXISTS berth_keeper")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SET search_path TO berth_keeper")
            .execute(&mut *conn)
            .await?;
        let migrated = MIGRATOR.run(&mut *conn).await;
        sqlx::query("RESET search_path").execute(&mut *conn).await?;
        migrated?;
        Ok(Self {
            pool,
            chain_id: i64::try_from(chain_id).unwrap_or(i64::MAX),
            escrow: format!("{escrow:#x}"),
        })
    }

    /// Stores manifest bytes for a lease. Bytes that already match the lease's hash are never
    /// replaced; anything else is replaced by the newer delivery.
    pub async fn put_manifest(
        &self,
        lease: U256,
        bytes: &[u8],
        expected: B256,
        source: &str,
        signer: Option<Address>,
    ) -> Result<(), StoreError> {
        let hash = alloy::primitives::keccak256(bytes);
        sqlx::query(
            "INSERT INTO berth_keeper.manifests (chain_id, escrow, lease_id, bytes, hash, source, signer)
             VALUES ($1, $2, $3::numeric, $4, $5, $6, $7)
             ON CONFLICT (chain_id, escrow, lease_id) DO UPDATE
               SET bytes = excluded.bytes, hash = excluded.hash, source = excluded.source,
                   signer = excluded.signer, received_at = now()
               WHERE berth_keeper.manifests.hash <> $8",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(bytes)
        .bind(hash.as_slice())
        .bind(source)
        .bind(signer.map(|a| format!("{a:#x}")))
        .bind(expected.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The manifest stored for a lease, if any.
    pub async fn manifest(&self, lease: U256) -> Result<Option<StoredManifest>, StoreError> {
        let row = sqlx::query(
            "SELECT bytes, source FROM berth_keeper.manifests
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredManifest {
            bytes: r.get("bytes"),
            source: r.get("source"),
        }))
    }

    /// Records a sent transaction.
    pub async fn record_tx(
        &self,
        lease: U256,
        action: &str,
        detail: &str,
        hash: B256,
        nonce: u64,
    ) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO berth_keeper.transactions (chain_id, escrow, lease_id, action, detail, tx_hash, nonce)
             VALUES ($1, $2, $3::numeric, $4, $5, $6, $7) RETURNING id",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(action)
        .bind(detail)
        .bind(hash.as_slice())
        .bind(i64::try_from(nonce).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records the outcome of a transaction: `mined`, `reverted` or `dropped`.
    pub async fn settle_tx(&self, id: i64, state: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE berth_keeper.transactions SET state = $2, settled_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Transactions for `lease` and `action` sent and not yet settled.
    pub async fn open_txs(&self, lease: U256, action: &str) -> Result<Vec<OpenTx>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tx_hash, nonce FROM berth_keeper.transactions
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND action = $4
               AND state = 'sent' ORDER BY id",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(action)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OpenTx {
                id: r.get("id"),
                hash: B256::from_slice(r.get::<Vec<u8>, _>("tx_hash").as_slice()),
                nonce: u64::try_from(r.get::<i64, _>("nonce")).unwrap_or(0),
            })
            .collect())
    }

    /// How many transactions with `action` were recorded for `lease` (any state).
    pub async fn count_txs(&self, lease: U256, action: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM berth_keeper.transactions
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND action = $4",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(action)
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;

    use super::*;

    #[sqlx::test(migrations = false)]
    async fn a_matching_manifest_is_never_replaced(pool: PgPool) -> Result<(), StoreError> {
        let store = Store::open(pool.clone(), 31337, Address::repeat_byte(1)).await?;
        let lease = U256::from(3);
        let good = b"version: 1".as_slice();
        store
            .put_manifest(lease, b"wrong", keccak256(good), "upload", None)
            .await?;
        assert_eq!(
            store.manifest(lease).await?.map(|m| m.bytes),
            Some(b"wrong".to_vec())
        );
        store
            .put_manifest(lease, good, keccak256(good), "upload", None)
            .await?;
        store
            .put_manifest(lease, b"later", keccak256(good), "upload", None)
            .await?;
        assert_eq!(
            store.manifest(lease).await?.map(|m| m.bytes),
            Some(good.to_vec())
        );
        // Reopening migrates nothing twice.
        Store::open(pool, 31337, Address::repeat_byte(1)).await?;
        Ok(())
    }

    #[sqlx::test(migrations = false)]
    async fn transactions_stay_open_until_settled(pool: PgPool) -> Result<(), StoreError> {
        let store = Store::open(pool, 1, Address::ZERO).await?;
        let id = store
            .record_tx(
                U256::from(1),
                "confirm",
                "http://x",
                B256::repeat_byte(9),
                4,
            )
            .await?;
        assert_eq!(store.open_txs(U256::from(1), "confirm").await?.len(), 1);
        store.settle_tx(id, "mined").await?;
        assert!(store.open_txs(U256::from(1), "confirm").await?.is_empty());
        assert_eq!(store.count_txs(U256::from(1), "confirm").await?, 1);
        Ok(())
    }
}
