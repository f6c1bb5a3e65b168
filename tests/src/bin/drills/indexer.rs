//! The indexer drill: a real `berth-indexer` process reading anvil through a proxy that adds
//! 30–150 ms to every RPC request (as a remote node would), SIGKILLed at random moments of
//! its backfill and of following the head, with anvil reorganising 1–5 blocks (`anvil_reorg`)
//! while it is down or running. After each round the indexer catches up on its own and the
//! database is compared with the chain: every log stored once and nothing from an orphaned
//! branch, every lease as `getLease` shows it, every entity table equal to the event log.

use std::time::Duration;

use alloy::{
    primitives::{U256, aliases::U40, keccak256},
    providers::{DynProvider, Provider},
};
use berth_bindings::LeaseEscrow;
use berth_e2e::{
    Chain, Contracts, ScratchDb, assert_entities_match_event_log, deploy_with_one_lease,
    indexer_harness::{
        IndexerProcess, assert_events_match_chain, assert_leases_match_chain, wait_caught_up,
    },
    mined, open_lease,
    rpc_proxy::RpcProxy,
    write_deployment,
};
use eyre::Result;
use sqlx::PgPool;

use crate::{Rng, Tally};

/// Top-ups on chain before the indexer first starts: the first kills land mid-backfill.
const HISTORY_BLOCKS: usize = 120;
/// Leases the traffic may open besides lease 1 (each reserves provider capacity).
const MAX_OPENED: u32 = 10;
/// `LeaseStatus` values on chain.
const PENDING: u8 = 1;
const ACTIVE: u8 = 2;

struct Drill {
    chain: Chain,
    c: Contracts,
    proxy: RpcProxy,
    pool: PgPool,
    db_url: String,
    deployment: std::path::PathBuf,
    tenant: DynProvider,
    opened: u32,
    kills: u32,
    mid_backfill: u32,
    reorg_depths: Vec<u64>,
}

pub async fn run(rounds: u32, rng: &mut Rng) -> Result<()> {
    let chain = Chain::start()?;
    let (c, settings) = deploy_with_one_lease(&chain, U256::from(10u64.pow(18))).await?;
    let proxy = RpcProxy::start(chain.rpc_url()).await?;
    proxy.latency(30, 150);
    let db = ScratchDb::create("drill_indexer").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await?;
    let deployment = write_deployment(&chain, &c, settings)?;
    let tenant = chain.wallet(4)?;
    let escrow = LeaseEscrow::new(c.escrow, &tenant);
    for _ in 0..HISTORY_BLOCKS {
        mined(escrow.topUp(U256::from(1), U256::from(1)), "topUp").await?;
    }
    println!(
        "chain: {HISTORY_BLOCKS} blocks of top-ups to backfill; RPC through a proxy adding 30-150 ms"
    );
    let mut drill = Drill {
        chain,
        c,
        proxy,
        pool,
        db_url: db.url.clone(),
        deployment,
        tenant,
        opened: 0,
        kills: 0,
        mid_backfill: 0,
        reorg_depths: Vec::new(),
    };
    let mut tally = Tally::default();
    let mut indexer = Some(drill.spawn()?);
    for round in 1..=rounds {
        let outcome = drill.round(rng, &mut indexer).await;
        tally.record(round, outcome);
    }
    drop(indexer);
    println!(
        "totals: {} kills ({} mid-backfill), {} reorgs (depths {:?}), {} RPC calls through the proxy",
        drill.kills,
        drill.mid_backfill,
        drill.reorg_depths.len(),
        drill.reorg_depths,
        drill.proxy.calls()
    );
    drill.pool.close().await;
    db.drop().await?;
    tally.finish("indexer drill")
}

impl Drill {
    fn spawn(&self) -> Result<IndexerProcess> {
        IndexerProcess::spawn(
            self.proxy.url(),
            &self.deployment,
            &self.db_url,
            &[
                // Small ranges: a backfill takes many steps, so kills land inside it.
                ("BERTH_INITIAL_RANGE", "2".to_owned()),
                ("BERTH_MAX_RANGE", "8".to_owned()),
                ("BERTH_CONFIRMATIONS", "0".to_owned()),
            ],
        )
    }

    async fn head(&self) -> Result<u64> {
        Ok(self.tenant.get_block_number().await?)
    }

    async fn checkpoint(&self) -> Option<u64> {
        sqlx::query_scalar::<_, i64>("SELECT block_number FROM berth.checkpoint")
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
    }

    /// A few transactions, each in a block of its own: top-ups, now and then a new lease.
    async fn traffic(&mut self, rng: &mut Rng) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(60), self.send_traffic(rng))
            .await
            .map_err(|_| eyre::eyre!("the drill's own transactions were not mined within 60 s"))?
    }

    async fn send_traffic(&mut self, rng: &mut Rng) -> Result<()> {
        for _ in 0..rng.between(1, 6) {
            // Fresh providers each time: reorgs drop transactions and `open_lease` signs with
            // its own, so a cached nonce would be wrong.
            let (tenant, operator) = (self.chain.wallet(4)?, self.chain.wallet(3)?);
            let as_tenant = LeaseEscrow::new(self.c.escrow, &tenant);
            let as_operator = LeaseEscrow::new(self.c.escrow, &operator);
            let count: u64 = as_tenant.leaseCount().call().await?.to();
            let id = U256::from(rng.between(1, count));
            let lease = as_tenant.getLease(id).call().await?;
            let roll = rng.between(1, 100);
            if roll <= 15 && self.opened < MAX_OPENED {
                open_lease(&self.chain, &self.c, 4, 1_000_000).await?;
                self.opened += 1;
            } else if roll <= 35 && lease.status == PENDING {
                let endpoint = format!("http://127.0.0.1:{}", 30_000 + id.to::<u64>());
                mined(as_operator.confirmLease(id, endpoint), "confirmLease").await?;
            } else if roll <= 60 && lease.status == ACTIVE {
                let to = self.chain.now().await?;
                let from = lease.billedUntil.to::<u64>();
                if to > from {
                    let period = to - from;
                    let report = as_operator.reportUsage(
                        id,
                        lease.reportCount + 1,
                        lease.billedUntil.to(),
                        U40::from(to),
                        250 * period,
                        256 * period,
                        period,
                        keccak256(to.to_be_bytes()),
                    );
                    mined(report, "reportUsage").await?;
                }
            } else if roll <= 65 && lease.status == ACTIVE && id != U256::from(1) {
                mined(as_tenant.closeLease(id), "closeLease").await?;
            } else {
                let amount = U256::from(rng.between(1, 1000));
                mined(as_tenant.topUp(U256::from(1), amount), "topUp").await?;
            }
        }
        Ok(())
    }

    async fn reorg(&mut self, rng: &mut Rng) -> Result<u64> {
        let depth = rng.between(1, 5);
        let _: serde_json::Value = self
            .tenant
            .raw_request("anvil_reorg".into(), (depth, Vec::<()>::new()))
            .await?;
        self.reorg_depths.push(depth);
        Ok(depth)
    }

    async fn round(
        &mut self,
        rng: &mut Rng,
        indexer: &mut Option<IndexerProcess>,
    ) -> Result<String> {
        let mut did = Vec::new();
        for _ in 0..rng.between(1, 3) {
            self.traffic(rng).await?;
            tokio::time::sleep(Duration::from_millis(rng.between(0, 1500))).await;
            let (head, at) = (self.head().await?, self.checkpoint().await);
            if let Some(process) = indexer.take() {
                process.kill()?;
            }
            self.kills += 1;
            let behind = head.saturating_sub(at.unwrap_or(0));
            if behind > 3 {
                self.mid_backfill += 1;
            }
            let mut what = format!("killed {behind} blocks behind the head");
            if rng.chance(60) {
                what += &format!(", reorg of {} while down", self.reorg(rng).await?);
            }
            *indexer = Some(self.spawn()?);
            if rng.chance(30) {
                tokio::time::sleep(Duration::from_millis(rng.between(0, 800))).await;
                what += &format!(", reorg of {} while running", self.reorg(rng).await?);
            }
            did.push(what);
        }
        wait_caught_up(&self.chain, &self.pool, Duration::from_secs(120)).await?;
        let events =
            assert_events_match_chain(&self.chain, [self.c.registry, self.c.escrow], &self.pool)
                .await?;
        let leases = assert_leases_match_chain(&self.chain, self.c.escrow, &self.pool).await?;
        let rows = assert_entities_match_event_log(&self.pool).await?;
        Ok(format!(
            "{}; then {events} events equal the chain's logs, {leases} leases equal getLease, {rows} entity rows equal the event log",
            did.join("; ")
        ))
    }
}
