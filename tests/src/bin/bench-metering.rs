//! `cargo run --release -p berth-e2e --bin bench-metering [-- WORKLOADS]`
//!
//! 1. Gas per lease per usage report at batch sizes 1, 10, 50 and 100: 100 confirmed leases on
//!    a local anvil, reported through `reportUsageBatch` (the keeper's call) with realistic
//!    non-zero units and roots, `gasUsed / batch size` of the mined transaction.
//! 2. The keeper's CPU time (this process's user + system time, Postgres excluded) to store 30
//!    sampling rounds of WORKLOADS containers (default 1000) and to build their reports (sums,
//!    clamps, Merkle roots) from Postgres. Needs DATABASE_URL.

use std::time::Instant;

use alloy::primitives::{B256, U256, Uint, keccak256};
use berth_bindings::LeaseEscrow;
use berth_e2e::{
    Chain, ScratchDb, Settings, deploy, fund_tenant, mined, open_lease, register_provider,
};
use berth_keepers::{metering::build_report, store::Store};
use berth_protocol::manifest::policy::Reservation;
use eyre::{Context, Result, ensure};

#[tokio::main]
async fn main() -> Result<()> {
    let workloads: u64 = std::env::args()
        .nth(1)
        .map(|a| {
            a.parse()
                .wrap_err_with(|| format!("WORKLOADS must be a whole number, not `{a}`"))
        })
        .transpose()?
        .unwrap_or(1000);
    ensure!(workloads > 0, "WORKLOADS must be at least 1");
    gas().await?;
    let db = ScratchDb::create("bench_metering").await?;
    let outcome = cpu(&db.url, workloads).await;
    db.drop().await?;
    outcome
}

async fn gas() -> Result<()> {
    let chain = Chain::start()?;
    let settings = Settings {
        min_stake: 0,
        ..Settings::default()
    };
    let c = deploy(&chain, settings).await?;
    register_provider(&chain, &c, [1_000_000, 1000, 1000, 1000]).await?;
    fund_tenant(&chain, &c, 4, U256::from(10u64.pow(15))).await?;
    let operator = LeaseEscrow::new(c.escrow, chain.wallet(3)?);
    let mut leases = Vec::new();
    for _ in 0..100 {
        let id = open_lease(&chain, &c, 4, 10_000_000).await?;
        mined(
            operator.confirmLease(id, "http://127.0.0.1:30000".into()),
            "confirmLease",
        )
        .await?;
        leases.push(id);
    }
    println!("gas per lease per report (reportUsageBatch, execution + calldata, warm provider):");
    for size in [1usize, 10, 50, 100] {
        chain.advance(60).await?;
        let now = chain.now().await?;
        let mut batch = Vec::new();
        for id in &leases[..size] {
            let l = operator.getLease(*id).call().await?;
            let period = now - l.billedUntil.to::<u64>();
            batch.push(LeaseEscrow::UsageReport {
                leaseId: *id,
                sequence: l.reportCount + 1,
                from: l.billedUntil,
                to: Uint::from(now),
                cpuUnits: 250 * period,
                memoryUnits: 200 * period,
                storageUnits: period,
                samplesRoot: keccak256(id.to_be_bytes::<32>()),
            });
        }
        let receipt = operator
            .reportUsageBatch(batch)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "batch of {size} reverted");
        println!(
            "  batch {size:>3}: {:>9} gas in all, {:>7} per lease",
            receipt.gas_used,
            receipt.gas_used / size as u64
        );
    }
    Ok(())
}

fn cpu_time() -> Result<f64> {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(ticks as f64 / 100.0)
}

async fn cpu(db_url: &str, workloads: u64) -> Result<()> {
    let store = Store::connect(db_url, 1, alloy::primitives::Address::repeat_byte(1)).await?;
    const ROUNDS: u64 = 30;
    const INTERVAL_MS: u64 = 10_000;
    let t0 = 1_800_000_000_000u64;
    let (cpu0, wall0) = (cpu_time()?, Instant::now());
    for round in 0..=ROUNDS {
        let rows: Vec<(U256, String, u64, u64)> = (0..workloads)
            .map(|w| {
                (
                    U256::from(w + 1),
                    "web".to_string(),
                    round * 100_000_000 * (w % 5),
                    (64 + w % 64) << 20,
                )
            })
            .collect();
        store.put_samples(t0 + round * INTERVAL_MS, &rows).await?;
    }
    let (cpu1, wall1) = (cpu_time()?, Instant::now());
    let reservation = Reservation {
        cpu_millis: 500,
        memory_mib: 512,
        storage_gib: 1,
    };
    let (from, to) = (t0 / 1000, (t0 + ROUNDS * INTERVAL_MS) / 1000);
    let mut roots = Vec::new();
    for w in 0..workloads {
        let r = build_report(
            &store,
            U256::from(w + 1),
            1,
            from,
            to,
            to - from,
            reservation,
            3 * INTERVAL_MS,
            u64::MAX,
        )
        .await?;
        ensure!(
            r.sample_count == ROUNDS as usize,
            "lease {} has {} samples",
            w + 1,
            r.sample_count
        );
        roots.push(r.root);
    }
    let (cpu2, wall2) = (cpu_time()?, Instant::now());
    ensure!(
        roots.iter().all(|r| *r != B256::ZERO),
        "every report has a root"
    );
    println!(
        "keeper CPU for {workloads} workloads, {ROUNDS} sampling rounds ({} samples):",
        workloads * (ROUNDS + 1)
    );
    println!(
        "  storing the samples: {:.2} s CPU ({:.2} s wall)",
        cpu1 - cpu0,
        (wall1 - wall0).as_secs_f64()
    );
    println!(
        "  building {workloads} reports (sums + Merkle roots): {:.2} s CPU ({:.2} s wall)",
        cpu2 - cpu1,
        (wall2 - wall1).as_secs_f64()
    );
    Ok(())
}
