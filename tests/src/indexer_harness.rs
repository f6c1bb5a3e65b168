//! The `berth-indexer` process and the checks that its database equals the chain, shared by
//! the end-to-end tests and the drills.

use std::process::{Child, Command, Stdio};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
    rpc::types::Filter,
};
use berth_bindings::LeaseEscrow;
use eyre::{Result, WrapErr, ensure};
use sqlx::{PgPool, Row};

use crate::{Chain, indexer_binary};

/// The indexer process; killed (SIGKILL) and reaped when dropped, so nothing leaks one.
#[derive(Debug)]
pub struct IndexerProcess(Child);

impl IndexerProcess {
    /// Starts `berth-indexer` against `rpc_url` for the deployment file `deployment`,
    /// writing to `database_url`, with extra `BERTH_*` settings.
    pub fn spawn(
        rpc_url: &str,
        deployment: &std::path::Path,
        database_url: &str,
        extra: &[(&str, String)],
    ) -> Result<Self> {
        let mut cmd = Command::new(indexer_binary()?);
        cmd.env_clear()
            .env("BERTH_DATABASE_URL", database_url)
            .env("BERTH_RPC_URL", rpc_url)
            .env("BERTH_DEPLOYMENT", deployment)
            .env("BERTH_METRICS_ADDR", "")
            .env("BERTH_POLL_INTERVAL_MS", "20")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Ok(Self(cmd.spawn().wrap_err("spawning berth-indexer")?))
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) -> Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for IndexerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails unless `berth.events` holds exactly the logs of `contracts` on the node's chain up
/// to the indexer's checkpoint (same blocks, hashes, positions and transactions: none
/// missing, duplicated or left from an orphaned branch), and `berth.raw_logs` holds none
/// (every log decodes). Returns how many logs were compared.
pub async fn assert_events_match_chain(
    chain: &Chain,
    contracts: [Address; 2],
    pool: &PgPool,
) -> Result<usize> {
    let checkpoint: i64 = sqlx::query_scalar("SELECT block_number FROM berth.checkpoint")
        .fetch_one(pool)
        .await?;
    let logs = chain
        .wallet(0)?
        .get_logs(
            &Filter::new()
                .address(contracts.to_vec())
                .from_block(0u64)
                .to_block(u64::try_from(checkpoint)?),
        )
        .await?;
    let stored: Vec<(i64, i32, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT block_number, log_index, block_hash, tx_hash FROM berth.events
         ORDER BY block_number, log_index",
    )
    .fetch_all(pool)
    .await?;
    let raw: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM berth.raw_logs")
        .fetch_one(pool)
        .await?;
    ensure!(raw == 0, "{raw} logs did not decode");
    ensure!(
        stored.len() == logs.len(),
        "{} events stored, {} logs on chain up to block {checkpoint}",
        stored.len(),
        logs.len()
    );
    for (log, (number, index, hash, tx)) in logs.iter().zip(&stored) {
        let on_chain = (
            log.block_number.map(|n| n as i64),
            log.log_index.map(|i| i as i32),
            log.block_hash.map(|h| h.to_vec()),
            log.transaction_hash.map(|h| h.to_vec()),
        );
        ensure!(
            on_chain
                == (
                    Some(*number),
                    Some(*index),
                    Some(hash.clone()),
                    Some(tx.clone())
                ),
            "stored event at block {number} index {index} differs from the chain's log {on_chain:?}"
        );
    }
    Ok(logs.len())
}

/// Compares every lease's row in `berth.leases` with `getLease` on chain; returns how many
/// leases were compared.
pub async fn assert_leases_match_chain(
    chain: &Chain,
    escrow_address: Address,
    pool: &PgPool,
) -> Result<usize> {
    let reader = chain.wallet(0)?;
    let escrow = LeaseEscrow::new(escrow_address, &reader);
    let count: u64 = escrow.leaseCount().call().await?.to();
    let rows = sqlx::query(
        "SELECT lease_id::TEXT AS id, status, balance::TEXT AS balance, report_count, disputed::TEXT AS disputed,
                earned_unpaid::TEXT AS earned, EXTRACT(EPOCH FROM billed_until)::BIGINT AS billed,
                EXTRACT(EPOCH FROM closed_at)::BIGINT AS closed, endpoint
         FROM berth.leases ORDER BY lease_id",
    )
    .fetch_all(pool)
    .await?;
    ensure!(
        rows.len() as u64 == count,
        "{} leases indexed, {count} on chain",
        rows.len()
    );
    let names = [
        "none",
        "pending",
        "active",
        "closing",
        "closed",
        "rejected",
        "cancelled",
        "suspended",
    ];
    for row in rows {
        let id: U256 = row.get::<String, _>("id").parse()?;
        let l = escrow.getLease(id).call().await?;
        let on_chain_earned = l.claimable + l.pending;
        ensure!(
            row.get::<String, _>("status") == names[l.status as usize],
            "lease {id}: status"
        );
        ensure!(
            row.get::<String, _>("balance") == l.balance.to_string(),
            "lease {id}: balance"
        );
        ensure!(
            row.get::<i64, _>("report_count") == i64::from(l.reportCount),
            "lease {id}: reportCount"
        );
        ensure!(
            row.get::<String, _>("disputed") == l.disputed.to_string(),
            "lease {id}: disputed"
        );
        ensure!(
            row.get::<String, _>("earned") == on_chain_earned.to_string(),
            "lease {id}: earned"
        );
        let billed: Option<i64> = row.get("billed");
        ensure!(
            billed.unwrap_or(0) == l.billedUntil.to::<i64>(),
            "lease {id}: billedUntil"
        );
        let closed: Option<i64> = row.get("closed");
        ensure!(
            closed.unwrap_or(0) == l.closedAt.to::<i64>(),
            "lease {id}: closedAt"
        );
        let endpoint: Option<String> = row.get("endpoint");
        ensure!(
            endpoint.unwrap_or_default()
                == crate::keeper::endpoint_of(chain, escrow_address, id).await?,
            "lease {id}: endpoint"
        );
    }
    Ok(count as usize)
}

/// Waits until the indexer's checkpoint is the node's head block, with the head's hash.
pub async fn wait_caught_up(
    chain: &Chain,
    pool: &PgPool,
    limit: std::time::Duration,
) -> Result<()> {
    let node = chain.wallet(0)?;
    let started = std::time::Instant::now();
    loop {
        let head = node.get_block_number().await?;
        let block = node
            .get_block_by_number(head.into())
            .await?
            .map(|b| b.header.hash.to_vec());
        let stored: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT block_number, block_hash FROM berth.checkpoint")
                .fetch_optional(pool)
                .await
                .ok()
                .flatten();
        if let Some((n, hash)) = &stored
            && u64::try_from(*n).ok() == Some(head)
            && Some(hash) == block.as_ref()
        {
            return Ok(());
        }
        eyre::ensure!(
            started.elapsed() < limit,
            "the indexer did not catch up within {limit:?} (checkpoint {:?}, head {head})",
            stored.map(|s| s.0)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
