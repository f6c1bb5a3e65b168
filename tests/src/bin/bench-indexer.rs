//! `cargo run --release -p berth-e2e --bin bench-indexer [-- EVENTS]`
//!
//! Builds a dense history on a local anvil (automine off, hundreds of top-ups per block, from
//! pre-signed transactions), then backfills it into a fresh Postgres database with the
//! indexer library and prints events/s and rows/s; finally measures head-follow lag (from a
//! transaction being mined to its row being visible). Needs DATABASE_URL (a server where it
//! may create a database).

use std::time::{Duration, Instant};

use alloy::{
    eips::eip2718::Encodable2718,
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::U256,
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use berth_bindings::LeaseEscrow;
use berth_e2e::{Chain, ScratchDb, deploy_with_one_lease, mined};
use berth_indexer::{
    events::{Decoder, Watched},
    metrics::Metrics,
    store::Store,
    sync::{Indexer, Step, SyncConfig},
};
use eyre::{Context, Result, ensure};

const PER_BLOCK: u64 = 500;

#[tokio::main]
async fn main() -> Result<()> {
    let target: u64 = std::env::args()
        .nth(1)
        .map(|a| {
            a.parse()
                .wrap_err_with(|| format!("EVENTS must be a whole number, not `{a}`"))
        })
        .transpose()?
        .unwrap_or(100_000);

    let chain = Chain::start()?;
    let (c, _) = deploy_with_one_lease(&chain, U256::from(u64::MAX)).await?;
    let tenant = chain.wallet(4)?;

    let started = Instant::now();
    generate(&chain, &tenant, c.escrow, target).await?;
    let head = tenant.get_block_number().await?;
    println!(
        "history: {target} top-ups in {} blocks, generated in {:.1}s",
        head,
        started.elapsed().as_secs_f64()
    );

    // A fresh database for this run.
    let db = ScratchDb::create("bench").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await?;
    // A fresh provider: the raw transactions above bypassed the old one's nonce cache.
    let outcome = measure(
        &chain,
        c.registry,
        c.escrow,
        pool.clone(),
        &chain.wallet(4)?,
    )
    .await;
    pool.close().await;
    db.drop().await?;
    outcome
}

/// Sends `count` pre-signed top-ups with automine off, mining a block every PER_BLOCK.
async fn generate(
    chain: &Chain,
    tenant: &DynProvider,
    escrow: alloy::primitives::Address,
    count: u64,
) -> Result<()> {
    let signer = chain.signer(4)?;
    let wallet = EthereumWallet::from(signer.clone());
    let mut nonce = tenant.get_transaction_count(signer.address()).await?;
    let chain_id = chain.chain_id();
    let input = LeaseEscrow::topUpCall {
        leaseId: U256::from(1),
        amount: U256::from(1),
    }
    .abi_encode();
    let _: serde_json::Value = tenant
        .raw_request("evm_setAutomine".into(), (false,))
        .await?;
    let mut sent = 0;
    while sent < count {
        let n = PER_BLOCK.min(count - sent);
        let mut pending = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let tx = TransactionRequest::default()
                .with_to(escrow)
                .with_input(input.clone())
                .with_nonce(nonce)
                .with_chain_id(chain_id)
                .with_gas_limit(80_000)
                .with_max_fee_per_gas(10_000_000_000)
                .with_max_priority_fee_per_gas(1);
            let envelope = <TransactionRequest as NetworkTransactionBuilder<
                alloy::network::Ethereum,
            >>::build(tx, &wallet)
            .await?;
            let raw: Vec<u8> = envelope.encoded_2718();
            pending.push(raw);
            nonce += 1;
        }
        for raw in pending {
            let _ = tenant.send_raw_transaction(&raw).await?;
        }
        mine_full_block(tenant).await?;
        sent += n;
    }
    // Mine until every transaction is in.
    for _ in 0..100 {
        let status: serde_json::Value = tenant.raw_request("txpool_status".into(), ()).await?;
        let pending = status["pending"].as_str().map_or(Ok(0), |s| {
            u64::from_str_radix(s.trim_start_matches("0x"), 16)
        })?;
        if pending == 0 {
            break;
        }
        let _: serde_json::Value = tenant.raw_request("evm_mine".into(), ()).await?;
    }
    let _: serde_json::Value = tenant
        .raw_request("evm_setAutomine".into(), (true,))
        .await?;
    Ok(())
}

/// Mines a block; full blocks would raise the base fee 12.5% each, so it is pinned at 1 gwei.
async fn mine_full_block(p: &DynProvider) -> Result<()> {
    let _: serde_json::Value = p
        .raw_request(
            "anvil_setNextBlockBaseFeePerGas".into(),
            (U256::from(1_000_000_000u64),),
        )
        .await?;
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
    Ok(())
}

async fn measure(
    chain: &Chain,
    registry: alloy::primitives::Address,
    escrow: alloy::primitives::Address,
    pool: sqlx::PgPool,
    tenant: &DynProvider,
) -> Result<()> {
    let provider = berth_indexer::rpc::http_provider(&chain.rpc_url(), Duration::from_secs(30))?;
    let store = Store::open(pool.clone(), chain.chain_id()).await?;
    let cfg = SyncConfig {
        start_block: 0,
        confirmations: 0,
        initial_range: 50,
        max_range: 5000,
        reorg_window: 256,
        poll_interval: Duration::from_millis(20),
        analyze_after_rows: 10_000,
    };
    let mut indexer = Indexer::new(
        provider,
        store,
        Decoder::new(Watched { registry, escrow }),
        cfg,
        Metrics::default(),
    );

    let started = Instant::now();
    let mut logs = 0usize;
    loop {
        match indexer.step().await? {
            Step::Indexed { logs: n, .. } => logs += n,
            Step::Idle => break,
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM berth.raw_logs) + (SELECT COUNT(*) FROM berth.events) + (SELECT COUNT(*) FROM berth.blocks)",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "backfill: {logs} events in {secs:.2}s = {:.0} events/s, {:.0} rows/s (final range {} blocks)",
        logs as f64 / secs,
        rows as f64 / secs,
        indexer.range()
    );
    let t = indexer.phase_times();
    println!(
        "  where the time went (summed per phase; fetching overlaps writing): fetch {:.2}s, decode {:.2}s, write {:.2}s, commit {:.2}s",
        t.fetch.as_secs_f64(),
        t.decode.as_secs_f64(),
        t.write.as_secs_f64(),
        t.commit.as_secs_f64()
    );

    // Head-follow lag: mine one event, poll like the service does, time until it is stored.
    let escrow_t = LeaseEscrow::new(escrow, tenant);
    let mut lags = Vec::new();
    for _ in 0..20 {
        mined(escrow_t.topUp(U256::from(1), U256::from(1)), "topUp").await?;
        let mined_at = Instant::now();
        loop {
            if let Step::Indexed { logs: n, .. } = indexer.step().await? {
                ensure!(n == 1, "one new event");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lags.push(mined_at.elapsed().as_secs_f64() * 1000.0);
    }
    lags.sort_by(f64::total_cmp);
    println!(
        "head follow (20 polls at 20 ms): lag p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        lags[lags.len() / 2],
        lags[lags.len() * 95 / 100],
        lags[lags.len() - 1]
    );
    Ok(())
}
