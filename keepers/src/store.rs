//! The keeper's durable state in Postgres (schema `berth_keeper`): manifests and the
//! transactions it sent.

mod envelopes;
pub mod events;
mod holds;
mod sleeps;

pub use sleeps::Sleep;

use alloy::primitives::{Address, B256, U256};
use sqlx::{PgPool, Row, postgres::PgConnectOptions};

use berth_protocol::metering::{Sample, Units};

/// The schema, embedded and applied at start; its bookkeeping table lives in `berth_keeper`
/// too, so the keeper and the indexer can share a database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub use berth_runtime::StoreError;

/// A `transactions` row (id, tx_hash, nonce) as an [`OpenTx`].
fn open_tx(r: &sqlx::postgres::PgRow) -> OpenTx {
    OpenTx {
        id: r.get("id"),
        hash: B256::from_slice(r.get::<Vec<u8>, _>("tx_hash").as_slice()),
        nonce: u64::try_from(r.get::<i64, _>("nonce")).unwrap_or(0),
    }
}

/// Longest free text (a transaction's detail, a manifest's source) stored; the rest is cut.
pub const MAX_TEXT: usize = 2048;

/// Text as Postgres can store it: a NUL byte (which `TEXT` refuses, failing the whole write)
/// becomes the two characters `\0`, and anything past [`MAX_TEXT`] bytes is cut at a
/// character boundary. Every tenant-controlled string goes through here before a write.
pub fn db_text(s: &str) -> std::borrow::Cow<'_, str> {
    let cut = if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    } else {
        s
    };
    if cut.contains('\0') {
        std::borrow::Cow::Owned(cut.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(cut)
    }
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

/// A usage report as the keeper built and sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    /// Lease.
    pub lease: U256,
    /// Sequence number on chain.
    pub sequence: u32,
    /// Period start (chain seconds, exclusive).
    pub from_s: u64,
    /// Period end (inclusive).
    pub to_s: u64,
    /// Units charged.
    pub units: Units,
    /// Merkle root of the period's samples.
    pub root: B256,
    /// Samples under the root.
    pub sample_count: usize,
    /// The root covers samples taken in `(from_s * 1000, samples_until_ms]`.
    pub samples_until_ms: u64,
    /// The transaction that carried it.
    pub tx: Option<B256>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn sample_of(r: &sqlx::postgres::PgRow) -> Sample {
    Sample {
        container: r.get("container"),
        taken_at_ms: u64_of(r.get("taken_at_ms")),
        cpu_ns: u64_of(r.get("cpu_ns")),
        memory_bytes: u64_of(r.get("memory_bytes")),
    }
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
        .bind(db_text(source).as_ref())
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
        .bind(db_text(detail).as_ref())
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
        Ok(rows.iter().map(open_tx).collect())
    }

    /// The oldest `limit` transactions of any lease still recorded as sent.
    pub async fn unsettled_txs(&self, limit: i64) -> Result<Vec<OpenTx>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tx_hash, nonce FROM berth_keeper.transactions
             WHERE chain_id = $1 AND escrow = $2 AND state = 'sent' ORDER BY id LIMIT $3",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(open_tx).collect())
    }

    /// Whether a transaction with `action` for `lease` was sent and not found dropped or
    /// reverted: the keeper has decided, whatever the confirmed depth still shows.
    pub async fn decided(&self, lease: U256, action: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM berth_keeper.transactions
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND action = $4
               AND state IN ('sent', 'mined'))",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(action)
        .fetch_one(&self.pool)
        .await?)
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

    /// Stores samples taken at `taken_at_ms` (one round); a repeated round stores nothing twice.
    pub async fn put_samples(
        &self,
        taken_at_ms: u64,
        samples: &[(U256, String, u64, u64)],
    ) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let leases: Vec<String> = samples.iter().map(|s| s.0.to_string()).collect();
        let containers: Vec<String> = samples.iter().map(|s| s.1.clone()).collect();
        let cpu: Vec<i64> = samples.iter().map(|s| i64_of(s.2)).collect();
        let mem: Vec<i64> = samples.iter().map(|s| i64_of(s.3)).collect();
        sqlx::query(
            "INSERT INTO berth_keeper.samples (chain_id, escrow, lease_id, container, taken_at_ms, cpu_ns, memory_bytes)
             SELECT $1, $2, l::numeric, c, $3, cpu, mem
             FROM UNNEST($4::text[], $5::text[], $6::bigint[], $7::bigint[]) AS t(l, c, cpu, mem)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(i64_of(taken_at_ms))
        .bind(&leases)
        .bind(&containers)
        .bind(&cpu)
        .bind(&mem)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores one round of the gateway's byte counters: (lease, request bytes, response bytes).
    pub async fn put_traffic(
        &self,
        taken_at_ms: u64,
        traffic: &[(U256, u64, u64)],
    ) -> Result<(), StoreError> {
        if traffic.is_empty() {
            return Ok(());
        }
        let leases: Vec<String> = traffic.iter().map(|t| t.0.to_string()).collect();
        let sent: Vec<i64> = traffic.iter().map(|t| i64_of(t.1)).collect();
        let received: Vec<i64> = traffic.iter().map(|t| i64_of(t.2)).collect();
        sqlx::query(
            "INSERT INTO berth_keeper.traffic_samples (chain_id, escrow, lease_id, taken_at_ms, request_bytes, response_bytes)
             SELECT $1, $2, l::numeric, $3, i, o
             FROM UNNEST($4::text[], $5::bigint[], $6::bigint[]) AS t(l, i, o)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(i64_of(taken_at_ms))
        .bind(&leases)
        .bind(&sent)
        .bind(&received)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A lease's samples with `from_ms < taken_at_ms <= to_ms`, by container then time.
    pub async fn samples(
        &self,
        lease: U256,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Sample>, StoreError> {
        let rows = sqlx::query(
            "SELECT container, taken_at_ms, cpu_ns, memory_bytes FROM berth_keeper.samples
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric
               AND taken_at_ms > $4 AND taken_at_ms <= $5
             ORDER BY container, taken_at_ms",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(i64_of(from_ms))
        .bind(i64_of(to_ms))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(sample_of).collect())
    }

    /// Per container, the last sample of a lease at or before `at_ms`.
    pub async fn baseline(&self, lease: U256, at_ms: u64) -> Result<Vec<Sample>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (container) container, taken_at_ms, cpu_ns, memory_bytes
             FROM berth_keeper.samples
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND taken_at_ms <= $4
             ORDER BY container, taken_at_ms DESC",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(i64_of(at_ms))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(sample_of).collect())
    }

    /// Records a report as submitted (replacing an earlier attempt at the same sequence).
    pub async fn put_report(&self, r: &StoredReport) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO berth_keeper.reports (chain_id, escrow, lease_id, sequence, from_s, to_s,
                 cpu_units, memory_units, storage_units, samples_root, sample_count, clamped, tx_hash,
                 samples_until_ms)
             VALUES ($1, $2, $3::numeric, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (chain_id, escrow, lease_id, sequence) DO UPDATE SET
                 from_s = excluded.from_s, to_s = excluded.to_s, cpu_units = excluded.cpu_units,
                 memory_units = excluded.memory_units, storage_units = excluded.storage_units,
                 samples_root = excluded.samples_root, sample_count = excluded.sample_count,
                 clamped = excluded.clamped, tx_hash = excluded.tx_hash,
                 samples_until_ms = excluded.samples_until_ms, created_at = now()",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(r.lease.to_string())
        .bind(i64::from(r.sequence))
        .bind(i64_of(r.from_s))
        .bind(i64_of(r.to_s))
        .bind(i64_of(r.units.cpu))
        .bind(i64_of(r.units.memory))
        .bind(i64_of(r.units.storage))
        .bind(r.root.as_slice())
        .bind(i32::try_from(r.sample_count).unwrap_or(i32::MAX))
        .bind(r.units.clamped)
        .bind(r.tx.map(|h| h.to_vec()))
        .bind(i64_of(r.samples_until_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A lease's recorded reports, by sequence.
    pub async fn reports(&self, lease: U256) -> Result<Vec<StoredReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT sequence, from_s, to_s, cpu_units, memory_units, storage_units, samples_root,
                    sample_count, clamped, tx_hash, samples_until_ms
             FROM berth_keeper.reports
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric ORDER BY sequence",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredReport {
                lease,
                sequence: u32::try_from(r.get::<i64, _>("sequence")).unwrap_or(0),
                from_s: u64_of(r.get("from_s")),
                to_s: u64_of(r.get("to_s")),
                units: Units {
                    cpu: u64_of(r.get("cpu_units")),
                    memory: u64_of(r.get("memory_units")),
                    storage: u64_of(r.get("storage_units")),
                    clamped: r.get("clamped"),
                },
                root: B256::from_slice(r.get::<Vec<u8>, _>("samples_root").as_slice()),
                sample_count: usize::try_from(r.get::<i32, _>("sample_count")).unwrap_or(0),
                samples_until_ms: u64_of(r.get("samples_until_ms")),
                tx: r
                    .get::<Option<Vec<u8>>, _>("tx_hash")
                    .filter(|h| h.len() == 32)
                    .map(|h| B256::from_slice(&h)),
            })
            .collect())
    }

    /// Leases with reports that are not settled yet (candidates for claiming).
    pub async fn unsettled_leases(&self) -> Result<Vec<U256>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT r.lease_id::text FROM berth_keeper.reports r
             WHERE r.chain_id = $1 AND r.escrow = $2
               AND NOT EXISTS (SELECT 1 FROM berth_keeper.settled s
                   WHERE s.chain_id = r.chain_id AND s.escrow = r.escrow AND s.lease_id = r.lease_id)",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Marks a lease as having nothing left to claim.
    pub async fn settle_lease(&self, lease: U256) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO berth_keeper.settled (chain_id, escrow, lease_id) VALUES ($1, $2, $3::numeric)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a claim and what it paid.
    pub async fn record_claim(
        &self,
        leases: &[U256],
        amount: U256,
        tx: B256,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = leases.iter().map(U256::to_string).collect();
        sqlx::query(
            "INSERT INTO berth_keeper.claims (chain_id, escrow, lease_ids, amount, tx_hash)
             VALUES ($1, $2, $3::numeric[], $4::numeric, $5) ON CONFLICT (tx_hash) DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(&ids)
        .bind(amount.to_string())
        .bind(tx.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Everything claimed so far, base units.
    pub async fn claimed_total(&self) -> Result<U256, StoreError> {
        let total: String = sqlx::query_scalar(
            "SELECT COALESCE(sum(amount), 0)::text FROM berth_keeper.claims WHERE chain_id = $1 AND escrow = $2",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .fetch_one(&self.pool)
        .await?;
        Ok(total.parse().unwrap_or_default())
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn stored_text_never_carries_a_nul_and_is_bounded() {
        assert_eq!(db_text("plain"), "plain");
        assert_eq!(db_text("a\0b"), "a\\0b");
        let long = "é".repeat(MAX_TEXT);
        let cut = db_text(&long);
        assert!(cut.len() <= MAX_TEXT && cut.chars().all(|c| c == 'é'));
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
