//! The indexer against a real anvil and a real Postgres (one database per test).

use alloy::{
    primitives::{U256, aliases::U40, keccak256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use berth_bindings::{LeaseEscrow, PRICE_SCALE, ProviderRegistry, RejectReason};
use berth_e2e::{
    Chain, Contracts, Settings, deploy, fund_tenant, mined, open_lease, register_provider,
};
use berth_indexer::{
    events::{Decoder, Watched},
    metrics::Metrics,
    store::Store,
    sync::{Indexer, Step, SyncConfig, SyncError},
};
use eyre::{Result, ensure};
use sqlx::PgPool;

const RATES: [u128; 4] = [
    10_000 * PRICE_SCALE as u128 / 3600,
    20_000 * PRICE_SCALE as u128 / 3_600_000,
    10_000 * PRICE_SCALE as u128 / (1024 * 3600),
    0,
];

/// Anvil accounts: 2 owns the provider, 3 is its operator, 4 and 5 are tenants.
struct World {
    chain: Chain,
    c: Contracts,
    operator: DynProvider,
}

impl World {
    async fn new() -> Result<Self> {
        let chain = Chain::start()?;
        let c = deploy(
            &chain,
            Settings {
                min_stake: 0,
                ..Settings::default()
            },
        )
        .await?;
        register_provider(&chain, &c, RATES).await?;
        for tenant in [4, 5] {
            fund_tenant(&chain, &c, tenant, U256::from(10u64.pow(12))).await?;
        }
        let operator = chain.wallet(3)?;
        Ok(Self { chain, c, operator })
    }

    async fn open(&self, tenant: usize, deposit: u64) -> Result<U256> {
        open_lease(&self.chain, &self.c, tenant, deposit).await
    }

    fn escrow(&self) -> LeaseEscrow::LeaseEscrowInstance<&DynProvider> {
        LeaseEscrow::new(self.c.escrow, &self.operator)
    }

    async fn report_full(&self, lease: U256) -> Result<()> {
        let l = self.escrow().getLease(lease).call().await?;
        let to = if l.status == 3 {
            l.closedAt.to::<u64>()
        } else {
            self.chain.now().await?
        };
        let period = to - l.billedUntil.to::<u64>();
        mined(
            self.escrow().reportUsage(
                lease,
                l.reportCount + 1,
                l.billedUntil,
                U40::from(to),
                250 * period,
                512 * period,
                period,
                keccak256(to.to_be_bytes()),
            ),
            "reportUsage",
        )
        .await
    }

    fn watched(&self) -> Watched {
        Watched {
            registry: self.c.registry,
            escrow: self.c.escrow,
        }
    }

    async fn indexer(&self, pool: PgPool, watched: Watched) -> Result<Indexer<DynProvider>> {
        self.indexer_via(pool, watched, &self.chain.rpc_url()).await
    }

    /// An indexer reading the chain through `rpc_url` (a proxy, say).
    async fn indexer_via(
        &self,
        pool: PgPool,
        watched: Watched,
        rpc_url: &str,
    ) -> Result<Indexer<DynProvider>> {
        let provider = ProviderBuilder::new()
            .connect_http(rpc_url.parse()?)
            .erased();
        let store = Store::open(pool, self.chain.chain_id()).await?;
        let cfg = SyncConfig {
            start_block: 0,
            confirmations: 0,
            initial_range: 4,
            max_range: 1000,
            reorg_window: 64,
            poll_interval: std::time::Duration::from_millis(50),
            // Tiny tables: statistics after every batch, so the tests see them refreshed.
            analyze_after_rows: 1,
        };
        Ok(Indexer::new(
            provider,
            store,
            Decoder::new(watched),
            cfg,
            Metrics::default(),
        ))
    }
}

async fn catch_up(indexer: &mut Indexer<DynProvider>) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for _ in 0..1000 {
        let step = indexer.step().await?;
        if step == Step::Idle {
            return Ok(steps);
        }
        steps.push(step);
    }
    eyre::bail!("indexer did not catch up in 1000 steps")
}

async fn assert_leases_match_chain(world: &World, pool: &PgPool) -> Result<usize> {
    berth_e2e::indexer_harness::assert_leases_match_chain(&world.chain, world.c.escrow, pool).await
}

#[sqlx::test(migrations = false)]
async fn database_equals_chain_after_a_scripted_history(pool: PgPool) -> Result<()> {
    let w = World::new().await?;
    let escrow = w.escrow();
    let deposit = 50_000_000;
    let (a, b, c, d) = (
        w.open(4, deposit).await?,
        w.open(4, deposit).await?,
        w.open(5, deposit).await?,
        w.open(5, deposit).await?,
    );
    mined(
        escrow.confirmLease(a, "http://127.0.0.1:30001".into()),
        "confirm a",
    )
    .await?;
    mined(
        escrow.confirmLease(b, "http://127.0.0.1:30002".into()),
        "confirm b",
    )
    .await?;
    mined(
        escrow.rejectLease(c, RejectReason::PolicyViolation as u8),
        "reject c",
    )
    .await?;
    w.chain.advance(600).await?;
    w.report_full(a).await?;
    w.report_full(b).await?;
    // b: a top-up by someone else, a dispute ruled half and half.
    let t5 = LeaseEscrow::new(w.c.escrow, w.chain.wallet(5)?);
    mined(t5.topUp(b, U256::from(1_000_000)), "topUp").await?;
    let t4 = LeaseEscrow::new(w.c.escrow, w.chain.wallet(4)?);
    mined(t4.dispute(b), "dispute").await?;
    let disputed = escrow.getLease(b).call().await?.disputed;
    let arbiter = LeaseEscrow::new(w.c.escrow, w.chain.wallet(1)?);
    mined(
        arbiter.resolveDispute(b, disputed / U256::from(2)),
        "resolve",
    )
    .await?;
    // a: matures and is claimed, then closed, final report, withdrawn.
    w.chain
        .advance(Settings::default().challenge_window + 1)
        .await?;
    mined(escrow.claim(a), "claim").await?;
    mined(t4.closeLease(a), "close").await?;
    w.report_full(a).await?;
    mined(t4.withdraw(a), "withdraw").await?;
    // d stays pending.
    let _ = d;

    let mut indexer = w.indexer(pool.clone(), w.watched()).await?;
    catch_up(&mut indexer).await?;
    let n = assert_leases_match_chain(&w, &pool).await?;
    ensure!(n == 4, "four leases");
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM berth.leases ORDER BY lease_id")
            .fetch_all(&pool)
            .await?;
    ensure!(
        statuses == ["closed", "active", "rejected", "pending"],
        "statuses {statuses:?}"
    );
    let reason: String =
        sqlx::query_scalar("SELECT close_reason FROM berth.leases WHERE lease_id = 3")
            .fetch_one(&pool)
            .await?;
    ensure!(reason == "policy_violation", "reject reason {reason}");
    let p = ProviderRegistry::new(w.c.registry, &w.operator)
        .getProvider(U256::from(1))
        .call()
        .await?;
    let (active, cpu): (i64, i64) = sqlx::query_as(
        "SELECT active_leases, allocated_cpu_millis FROM berth.providers WHERE provider_id = 1",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(
        active == i64::from(p.activeLeases),
        "provider active leases {active}"
    );
    ensure!(
        cpu == i64::from(p.allocatedCpuMillis),
        "provider allocated cpu {cpu}"
    );

    // Indexing again from scratch over the same history adds no duplicate.
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM berth.events")
        .fetch_one(&pool)
        .await?;
    sqlx::query("DELETE FROM berth.checkpoint")
        .execute(&pool)
        .await?;
    catch_up(&mut indexer).await?;
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM berth.events")
        .fetch_one(&pool)
        .await?;
    ensure!(
        before == after && before > 0,
        "re-indexing duplicated rows: {before} -> {after}"
    );
    // The indexer refreshed the planner statistics after its backfill (in the background).
    berth_e2e::keeper::wait_for(
        "berth.events to be analyzed by the indexer",
        std::time::Duration::from_secs(20),
        || async {
            let analyzed: bool = sqlx::query_scalar(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
                 WHERE schemaname = 'berth' AND relname = 'events'",
            )
            .fetch_one(&pool)
            .await?;
            Ok(analyzed.then_some(()))
        },
    )
    .await?;
    // The entity tables, kept incrementally through the reorgs, equal the event log.
    berth_e2e::assert_entities_match_event_log(&pool).await?;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_reorg_removes_orphaned_rows_and_indexes_the_new_branch(pool: PgPool) -> Result<()> {
    let w = World::new().await?;
    let mut indexer = w.indexer(pool.clone(), w.watched()).await?;
    catch_up(&mut indexer).await?;
    let p = w.chain.wallet(0)?;
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await?;

    // Branch 1: a lease with deposit 11, indexed.
    let orphan = w.open(4, 11_000_000).await?;
    catch_up(&mut indexer).await?;
    let deposit: String =
        sqlx::query_scalar("SELECT deposit::TEXT FROM berth.leases WHERE lease_id = $1::NUMERIC")
            .bind(orphan.to_string())
            .fetch_one(&pool)
            .await?;
    ensure!(deposit == "11000000", "branch 1 indexed");

    // Branch 2 replaces it: same lease id, another deposit, and a longer chain.
    let _: bool = p.raw_request("evm_revert".into(), (snapshot,)).await?;
    let replacement = w.open(5, 22_000_000).await?;
    ensure!(replacement == orphan, "the new branch reuses the lease id");
    for _ in 0..3 {
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
    }
    let steps = catch_up(&mut indexer).await?;
    ensure!(
        matches!(steps.first(), Some(Step::Rewound { .. })),
        "reorg detected: {steps:?}"
    );
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT deposit::TEXT, tenant FROM berth.leases WHERE lease_id = $1::NUMERIC",
    )
    .bind(orphan.to_string())
    .fetch_all(&pool)
    .await?;
    ensure!(
        rows.len() == 1,
        "exactly one row for the lease id: {rows:?}"
    );
    ensure!(
        rows[0].0 == "22000000",
        "the new branch's deposit: {rows:?}"
    );
    assert_leases_match_chain(&w, &pool).await?;
    // The entity tables, kept incrementally through the reorgs, equal the event log.
    berth_e2e::assert_entities_match_event_log(&pool).await?;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn logs_that_do_not_decode_are_recorded_and_skipped(pool: PgPool) -> Result<()> {
    let w = World::new().await?;
    // Watch the token as if it were the registry: its Transfer/Approval logs are unknown events.
    let watched = Watched {
        registry: w.c.token,
        escrow: w.c.escrow,
    };
    w.open(4, 5_000_000).await?;
    let mut indexer = w.indexer(pool.clone(), watched).await?;
    catch_up(&mut indexer).await?;
    let undecoded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM berth.raw_logs WHERE event IS NULL AND decode_error LIKE 'unknown event%'",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(
        undecoded >= 4,
        "token logs recorded as unknown events: {undecoded}"
    );
    let opened: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM berth.lease_openings")
        .fetch_one(&pool)
        .await?;
    ensure!(opened == 1, "the escrow's event is still indexed");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_reorg_deeper_than_the_window_stops_the_indexer(pool: PgPool) -> Result<()> {
    let w = World::new().await?;
    let p = w.chain.wallet(0)?;
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await?;
    for _ in 0..6 {
        w.open(4, 5_000_000).await?;
    }
    // A window of two stored blocks, one block per batch: the fork point falls outside it.
    let provider = ProviderBuilder::new()
        .connect_http(w.chain.rpc_url().parse()?)
        .erased();
    let store = Store::open(pool.clone(), w.chain.chain_id()).await?;
    let cfg = SyncConfig {
        start_block: 0,
        confirmations: 0,
        initial_range: 1,
        max_range: 1,
        reorg_window: 2,
        poll_interval: std::time::Duration::from_millis(10),
        analyze_after_rows: 10_000,
    };
    let mut indexer = Indexer::new(
        provider,
        store,
        Decoder::new(w.watched()),
        cfg,
        Metrics::default(),
    );
    catch_up(&mut indexer).await?;
    let _: bool = p.raw_request("evm_revert".into(), (snapshot,)).await?;
    for _ in 0..8 {
        w.open(5, 7_000_000).await?;
    }
    let err = loop {
        match indexer.step().await {
            Ok(Step::Idle) => eyre::bail!("the orphaned checkpoint went unnoticed"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    ensure!(
        matches!(err, SyncError::ReorgTooDeep { .. }),
        "stopped loudly: {err}"
    );
    // Nothing of the new branch was written over the old one.
    let deposits: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT deposit::TEXT FROM berth.lease_openings")
            .fetch_all(&pool)
            .await?;
    ensure!(
        deposits == ["5000000"],
        "only the old branch's rows: {deposits:?}"
    );
    Ok(())
}

/// The race of issue 11: a reorg that lands after the checkpoint's hash was checked and
/// before the next range is fetched. The proxy holds the indexer's `eth_blockNumber` (the
/// call between the two) while the test replaces the checkpoint's block; the fetched range
/// must not be written on top of the orphaned checkpoint.
#[sqlx::test(migrations = false)]
async fn a_reorg_between_the_checkpoint_check_and_the_fetch_is_caught(pool: PgPool) -> Result<()> {
    let w = World::new().await?;
    let proxy = berth_e2e::rpc_proxy::RpcProxy::start(w.chain.rpc_url()).await?;
    proxy.latency(30, 80);
    let mut indexer = w
        .indexer_via(pool.clone(), w.watched(), proxy.url())
        .await?;
    catch_up(&mut indexer).await?;
    let p = w.chain.wallet(0)?;
    let snapshot: U256 = p.raw_request("evm_snapshot".into(), ()).await?;
    let orphan = w.open(4, 11_000_000).await?;
    catch_up(&mut indexer).await?;

    // The checkpoint now sits on the block that opened `orphan`. Hold the next step where
    // it asks for the head, and reorganise meanwhile.
    proxy.hold(Some("eth_blockNumber"));
    let step = tokio::spawn(async move {
        let r = indexer.step().await;
        (indexer, r)
    });
    proxy.wait_held(std::time::Duration::from_secs(10)).await?;
    let _: bool = p.raw_request("evm_revert".into(), (snapshot,)).await?;
    let replacement = w.open(5, 22_000_000).await?;
    ensure!(replacement == orphan, "the new branch reuses the lease id");
    for _ in 0..3 {
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
    }
    proxy.release();
    let (mut indexer, first) = step.await?;
    first?;
    let steps = catch_up(&mut indexer).await?;
    ensure!(
        steps.iter().any(|s| matches!(s, Step::Rewound { .. })),
        "the reorg was never noticed: {steps:?}"
    );
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT deposit::TEXT, tenant FROM berth.leases WHERE lease_id = $1::NUMERIC",
    )
    .bind(orphan.to_string())
    .fetch_all(&pool)
    .await?;
    ensure!(
        rows.len() == 1 && rows[0].0 == "22000000",
        "the canonical lease: {rows:?}"
    );
    assert_leases_match_chain(&w, &pool).await?;
    // The entity tables, kept incrementally through the reorgs, equal the event log.
    berth_e2e::assert_entities_match_event_log(&pool).await?;
    Ok(())
}

/// Strings a provider or tenant controls may hold NUL bytes and invalid UTF-8: they are
/// stored exactly (hex) and never stop indexing.
#[sqlx::test(migrations = false)]
async fn hostile_strings_are_stored_exactly_and_never_stop_indexing(pool: PgPool) -> Result<()> {
    let w = World::new().await?;
    let mut indexer = w.indexer(pool.clone(), w.watched()).await?;
    let uri = "http://x/\0\u{7f}m";
    let escrow = LeaseEscrow::new(w.c.escrow, w.chain.wallet(4)?);
    let call = escrow.openLease(
        U256::from(1),
        500,
        512,
        1,
        keccak256(b"m"),
        uri.to_string(),
        U256::from(10_000_000u64),
        U256::MAX,
    );
    let gas = call.estimate_gas().await?;
    mined(call.gas(gas * 3 / 2), "openLease").await?;
    let after = w.open(5, 12_000_000).await?;
    catch_up(&mut indexer).await?;
    let stored: serde_json::Value = sqlx::query_scalar(
        "SELECT args->'manifestUri' FROM berth.events WHERE event = 'LeaseOpened' AND lease_id = $1::NUMERIC",
    )
    .bind((after - U256::from(1)).to_string())
    .fetch_one(&pool)
    .await?;
    ensure!(
        stored["hex"] == alloy::hex::encode_prefixed(uri.as_bytes()),
        "exact bytes kept: {stored}"
    );
    let later: i64 =
        sqlx::query_scalar("SELECT count(*) FROM berth.leases WHERE lease_id = $1::NUMERIC")
            .bind(after.to_string())
            .fetch_one(&pool)
            .await?;
    ensure!(later == 1, "indexing went on past the hostile string");
    // The entity tables, kept incrementally through the reorgs, equal the event log.
    berth_e2e::assert_entities_match_event_log(&pool).await?;
    Ok(())
}
