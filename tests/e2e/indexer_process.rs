//! The `berth-indexer` binary as a real process: killed with SIGKILL mid-backfill, and facing a
//! node that stops answering.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use alloy::{primitives::U256, providers::Provider, rpc::types::Filter};
use berth_bindings::LeaseEscrow;
use berth_e2e::{
    Chain, Contracts, Settings, database_url, deploy_with_one_lease,
    indexer_harness::IndexerProcess, mined, write_deployment,
};
use eyre::{Result, ensure};
use sqlx::PgPool;

struct History {
    chain: Chain,
    c: Contracts,
    settings: Settings,
}

/// A provider, one lease and `topups` top-ups: one block with events each.
async fn history(topups: usize) -> Result<History> {
    let chain = Chain::start()?;
    let (c, settings) = deploy_with_one_lease(&chain, U256::from(10u64.pow(15))).await?;
    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(4)?);
    for _ in 0..topups {
        mined(escrow.topUp(U256::from(1), U256::from(1)), "topUp").await?;
    }
    Ok(History { chain, c, settings })
}

fn spawn_indexer(
    h: &History,
    db: &sqlx::postgres::PgConnectOptions,
    extra: &[(&str, String)],
) -> Result<IndexerProcess> {
    let deployment = write_deployment(&h.chain, &h.c, h.settings)?;
    IndexerProcess::spawn(&h.chain.rpc_url(), &deployment, &database_url(db), extra)
}

/// Logs of the watched contracts on chain, counted with one eth_getLogs.
async fn chain_log_count(h: &History) -> Result<i64> {
    let p = h.chain.wallet(0)?;
    let logs = p
        .get_logs(
            &Filter::new()
                .address(vec![h.c.registry, h.c.escrow])
                .from_block(0u64),
        )
        .await?;
    Ok(logs.len() as i64)
}

async fn wait_until_indexed(pool: &PgPool, want: i64, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let have: i64 = sqlx::query_scalar(berth_e2e::LOGS_STORED)
            .fetch_one(pool)
            .await
            .unwrap_or(0); // before the indexer first starts, the schema may not exist yet
        if have == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "indexed {have} of {want} logs within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrations = false)]
async fn sigkill_during_backfill_leaves_no_gap_and_no_duplicate(
    pool_opts: sqlx::postgres::PgPoolOptions,
    connect: sqlx::postgres::PgConnectOptions,
) -> Result<()> {
    let pool = pool_opts.connect_with(connect.clone()).await?;
    let h = history(400).await?;
    let want = chain_log_count(&h).await?;
    // One block per batch, so the backfill takes long enough to be killed several times.
    let ranges = [
        ("BERTH_INITIAL_RANGE", "1".to_owned()),
        ("BERTH_MAX_RANGE", "1".to_owned()),
    ];
    for delay_ms in [150u64, 230, 90, 310] {
        let indexer = spawn_indexer(&h, &connect, &ranges)?;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        indexer.kill()?; // SIGKILL
    }
    let partial: i64 = sqlx::query_scalar(berth_e2e::LOGS_STORED)
        .fetch_one(&pool)
        .await?;
    ensure!(
        partial < want,
        "the kills landed mid-backfill ({partial} of {want} logs)"
    );
    let _indexer = spawn_indexer(&h, &connect, &ranges)?;
    wait_until_indexed(&pool, want, Duration::from_secs(60)).await?;
    // No gap: every block with a log of ours is present once, in order.
    let (events, distinct_blocks, max_block): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT block_number), MAX(block_number) FROM berth.events",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(events == want, "events {events} == logs on chain {want}");
    let topups: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM berth.topups")
        .fetch_one(&pool)
        .await?;
    ensure!(topups == 400, "all 400 top-ups, once each: {topups}");
    let checkpoint: i64 = sqlx::query_scalar("SELECT block_number FROM berth.checkpoint")
        .fetch_one(&pool)
        .await?;
    ensure!(
        checkpoint >= max_block && distinct_blocks > 400,
        "checkpoint {checkpoint} covers block {max_block}"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_node_outage_is_retried_with_backoff_and_caught_up(
    pool_opts: sqlx::postgres::PgPoolOptions,
    connect: sqlx::postgres::PgConnectOptions,
) -> Result<()> {
    let pool = pool_opts.connect_with(connect.clone()).await?;
    let h = history(5).await?;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _indexer = spawn_indexer(
        &h,
        &connect,
        &[
            ("BERTH_RPC_TIMEOUT_MS", "300".to_owned()),
            ("BERTH_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
        ],
    )?;
    wait_until_indexed(&pool, chain_log_count(&h).await?, Duration::from_secs(30)).await?;
    // The node stops answering (frozen, so requests hang until the client's timeout).
    let pid = h.chain.pid().to_string();
    ensure!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()?
            .success(),
        "SIGSTOP anvil"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()?
            .success(),
        "SIGCONT anvil"
    );
    // New events after the outage are picked up without any manual action.
    let escrow = LeaseEscrow::new(h.c.escrow, h.chain.wallet(4)?);
    for _ in 0..3 {
        mined(escrow.topUp(U256::from(1), U256::from(1)), "topUp").await?;
    }
    wait_until_indexed(&pool, chain_log_count(&h).await?, Duration::from_secs(30)).await?;
    let metrics = scrape(metrics_port).await?;
    let errors = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_indexer_rpc_errors_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    ensure!(errors > 0, "the outage showed in the metrics:\n{metrics}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_newheads_subscription_wakes_the_indexer_between_polls(
    pool_opts: sqlx::postgres::PgPoolOptions,
    connect: sqlx::postgres::PgConnectOptions,
) -> Result<()> {
    let pool = pool_opts.connect_with(connect.clone()).await?;
    let h = history(2).await?;
    let ws_url = h.chain.rpc_url().replacen("http://", "ws://", 1);
    // Polling once a minute: only the subscription can explain a pickup within seconds.
    let _indexer = spawn_indexer(
        &h,
        &connect,
        &[
            ("BERTH_POLL_INTERVAL_MS", "60000".to_owned()),
            ("BERTH_WS_URL", ws_url),
        ],
    )?;
    wait_until_indexed(&pool, chain_log_count(&h).await?, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // now idle, waiting on its poll
    let escrow = LeaseEscrow::new(h.c.escrow, h.chain.wallet(4)?);
    mined(escrow.topUp(U256::from(1), U256::from(1)), "topUp").await?;
    wait_until_indexed(&pool, chain_log_count(&h).await?, Duration::from_secs(5)).await
}

async fn scrape(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    Ok(out)
}
