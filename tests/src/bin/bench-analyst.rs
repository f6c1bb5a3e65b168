//! `cargo run --release -p berth-e2e --bin bench-analyst [-- LEASES]`
//!
//! Loads a generated history into a fresh Postgres database through the indexer's own write
//! path (real event logs, ABI-encoded and decoded, written by `Store::commit_batch` in
//! batches, entity tables maintained as they go), then prints the latency of the analysts'
//! queries documented in `indexer/README.md`, beside the same lookups computed from the
//! event log as the views did before. Finally re-folds the entity tables from scratch and
//! checks they come out identical, and equal to the reference views. Needs DATABASE_URL.
//!
//! The history: 50 providers, 5,000 tenants, LEASES leases (default 100,000) opened 10 per
//! block, 864 s apart (100,000 leases span 100 days). Each lease is opened (and capacity
//! reserved), confirmed, reported four times, topped up once; four in five are then closed
//! (capacity released) and withdrawn. About 10.4 events per lease.

use std::time::Instant;

use alloy::{
    primitives::{Address, B256, LogData, U256, aliases::U40, keccak256},
    sol_types::SolEvent,
};
use berth_bindings::{LeaseEscrow, ProviderRegistry};
use berth_e2e::ScratchDb;
use berth_indexer::{
    events::{Decoder, Watched},
    store::{BlockRef, DecodedRow, LogRow, Store},
};
use eyre::{Context, Result, ensure};
use sqlx::PgPool;

const PROVIDERS: u64 = 50;
const TENANTS: u64 = 5_000;
const OPENED_PER_BLOCK: u64 = 10;
const BLOCK_SECONDS: u64 = 864;
/// 2026-01-01 00:00 UTC.
const T0: u64 = 1_767_225_600;
/// Blocks written per batch (about 20,000 events).
const BATCH_BLOCKS: u64 = 200;
const CHAIN: u64 = 31_337;
const WATCHED: Watched = Watched {
    registry: Address::repeat_byte(0xaa),
    escrow: Address::repeat_byte(0xbb),
};

fn tenant(i: u64) -> Address {
    Address::from_word(B256::from(U256::from(0x1_0000 + i % TENANTS)))
}

/// The events of block `b`, in order: whose address emitted them, and what.
fn block_events(b: u64, leases: u64) -> Vec<(Address, LogData)> {
    let (r, e) = (WATCHED.registry, WATCHED.escrow);
    let mut out = Vec::new();
    if b == 0 {
        for p in 1..=PROVIDERS {
            let id = U256::from(p);
            let registered = ProviderRegistry::ProviderRegistered {
                providerId: id,
                owner: Address::with_last_byte(p as u8),
                operator: Address::with_last_byte(p as u8),
                token: Address::repeat_byte(0x70),
                stake: U256::from(1_000_000u64),
                endpoint: format!("https://provider-{p}.example"),
                attributes: "region=eu".into(),
            };
            out.push((r, registered.encode_log_data()));
        }
        return out;
    }
    let time = T0 + b * BLOCK_SECONDS;
    // Leases opened `k` blocks ago have their k-th step in this block.
    for k in 0..=10u64 {
        let Some(opened) = b.checked_sub(k).filter(|o| *o >= 1) else {
            continue;
        };
        for n in 1..=OPENED_PER_BLOCK {
            let i = (opened - 1) * OPENED_PER_BLOCK + n;
            if i > leases {
                continue;
            }
            let (lease, provider) = (U256::from(i), U256::from(1 + (i / 5) % PROVIDERS));
            let closes = !i.is_multiple_of(5);
            let (cpu, mem) = (250 + (i % 4) as u32 * 250, 256);
            match k {
                0 => {
                    let opened = LeaseEscrow::LeaseOpened {
                        leaseId: lease,
                        providerId: provider,
                        tenant: tenant(i),
                        priceVersion: 1,
                        cpuMillis: cpu,
                        memoryMiB: mem,
                        storageGiB: 1,
                        manifestHash: keccak256(i.to_be_bytes()),
                        manifestUri: format!("https://manifests.example/{i}"),
                        deposit: U256::from(1_000_000u64),
                        maxRate: U256::from(100u64),
                    };
                    out.push((e, opened.encode_log_data()));
                    let reserved = ProviderRegistry::CapacityReserved {
                        providerId: provider,
                        cpuMillis: cpu,
                        memoryMiB: mem,
                        storageGiB: 1,
                    };
                    out.push((r, reserved.encode_log_data()));
                }
                1 => {
                    let confirmed = LeaseEscrow::LeaseConfirmed {
                        leaseId: lease,
                        providerId: provider,
                        tenant: tenant(i),
                        endpoint: format!("https://{i}.apps.example"),
                    };
                    out.push((e, confirmed.encode_log_data()));
                }
                2 | 4 | 6 | 8 => {
                    let from = time - 2 * BLOCK_SECONDS;
                    let report = LeaseEscrow::UsageReported {
                        leaseId: lease,
                        providerId: provider,
                        tenant: tenant(i),
                        sequence: (k / 2) as u32,
                        from: U40::from(from),
                        to: U40::from(time),
                        cpuUnits: u64::from(cpu) * 1000,
                        memoryUnits: u64::from(mem) * 1000,
                        storageUnits: 1000,
                        charge: U256::from(1_000 + i % 7),
                        samplesRoot: B256::ZERO,
                    };
                    out.push((e, report.encode_log_data()));
                }
                5 => {
                    let topped = LeaseEscrow::LeaseToppedUp {
                        leaseId: lease,
                        providerId: provider,
                        tenant: tenant(i),
                        from: tenant(i),
                        amount: U256::from(500u64),
                        balance: U256::from(1_000_000u64),
                    };
                    out.push((e, topped.encode_log_data()));
                }
                9 if closes => {
                    let closed = LeaseEscrow::LeaseClosed {
                        leaseId: lease,
                        providerId: provider,
                        tenant: tenant(i),
                        reason: 1 + (i % 2) as u8,
                        closedAt: U256::from(time),
                    };
                    out.push((e, closed.encode_log_data()));
                    let released = ProviderRegistry::CapacityReleased {
                        providerId: provider,
                        cpuMillis: cpu,
                        memoryMiB: mem,
                        storageGiB: 1,
                    };
                    out.push((r, released.encode_log_data()));
                }
                10 if closes => {
                    let withdrawn = LeaseEscrow::LeaseWithdrawn {
                        leaseId: lease,
                        providerId: provider,
                        tenant: tenant(i),
                        amount: U256::from(990_000u64),
                    };
                    out.push((e, withdrawn.encode_log_data()));
                }
                _ => {}
            }
        }
    }
    out
}

/// Blocks `from..=to` decoded and written in one batch, as the indexer writes a range.
async fn write_batch(
    store: &Store,
    decoder: &Decoder,
    from: u64,
    to: u64,
    leases: u64,
) -> Result<usize> {
    let mut rows = Vec::new();
    let mut blocks = Vec::new();
    for b in from..=to {
        let block = BlockRef {
            number: b,
            hash: keccak256(b.to_be_bytes()),
            time: T0 + b * BLOCK_SECONDS,
        };
        for (index, (address, data)) in block_events(b, leases).into_iter().enumerate() {
            let decoded = decoder
                .decode(address, &data)
                .map(|(contract, event)| DecodedRow {
                    contract: contract.as_str(),
                    event: event.name,
                    args: event.args,
                })
                .map_err(|e| e.to_string());
            ensure!(
                decoded.is_ok(),
                "generated log does not decode: {decoded:?}"
            );
            rows.push(LogRow {
                block_number: b,
                block_hash: block.hash,
                block_time: block.time,
                log_index: u32::try_from(index)?,
                tx_hash: keccak256([b.to_be_bytes(), (index as u64).to_be_bytes()].concat()),
                address,
                topics: data.topics().to_vec(),
                data: data.data.clone(),
                decoded,
            });
        }
        if b < to {
            blocks.push(block);
        } else {
            store.commit_batch(from, &rows, &blocks, block, 256).await?;
        }
    }
    Ok(rows.len())
}

/// Latencies of `run` over `n` calls: (p50, p99, max) in milliseconds.
async fn latencies<F, Fut>(n: u64, mut run: F) -> Result<(f64, f64, f64)>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        run(i).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    Ok((at(50), at(99), times[times.len() - 1]))
}

fn report(what: &str, (p50, p99, max): (f64, f64, f64), goal_ms: Option<f64>) {
    let verdict = goal_ms.map_or(String::new(), |g| {
        format!(
            "  goal < {g} ms: {}",
            if p99 < g { "met" } else { "NOT MET" }
        )
    });
    println!("  {what:<58} p50 {p50:>8.2} ms  p99 {p99:>8.2} ms  max {max:>8.2} ms{verdict}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let leases: u64 = std::env::args()
        .nth(1)
        .map(|a| {
            a.parse()
                .wrap_err_with(|| format!("LEASES must be a whole number, not `{a}`"))
        })
        .transpose()?
        .unwrap_or(100_000);
    ensure!(leases >= 1_000, "LEASES must be at least 1000");
    let db = ScratchDb::create("analyst").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await?;
    let outcome = run(&pool, leases).await;
    pool.close().await;
    db.drop().await?;
    outcome
}

async fn run(pool: &PgPool, leases: u64) -> Result<()> {
    let store = Store::open(pool.clone(), CHAIN).await?;
    let decoder = Decoder::new(WATCHED);
    let last_block = leases.div_ceil(OPENED_PER_BLOCK) + 10;
    let started = Instant::now();
    let mut events = 0;
    let mut from = 0;
    while from <= last_block {
        let to = (from + BATCH_BLOCKS - 1).min(last_block);
        events += write_batch(&store, &decoder, from, to, leases).await?;
        from = to + 1;
    }
    let load = started.elapsed().as_secs_f64();
    sqlx::query("ANALYZE").execute(pool).await?;
    let days = (last_block * BLOCK_SECONDS).div_ceil(86_400);
    println!(
        "history: {events} events over {leases} leases, {PROVIDERS} providers, {TENANTS} tenants, {last_block} blocks ({days} days)"
    );
    println!(
        "  written by the indexer's write path (decode, COPY, entity tables, checkpoint) in {load:.1}s = {:.0} events/s",
        events as f64 / load
    );
    let chain = i64::try_from(CHAIN)?;
    let lease = |i: u64| (i * 7_919) % leases + 1;
    println!(
        "analysts' queries (each run 200 times with different ids, one connection at a time):"
    );
    let one_lease = "SELECT * FROM berth.leases WHERE chain_id = $1 AND lease_id = $2::NUMERIC";
    let t = latencies(200, |i| async move {
        let rows = sqlx::query(one_lease)
            .bind(chain)
            .bind(lease(i).to_string())
            .fetch_all(pool)
            .await?;
        ensure!(rows.len() == 1, "one row for lease {}", lease(i));
        Ok(())
    })
    .await?;
    report("one lease by id (berth.leases)", t, Some(5.0));
    let provider_active =
        "SELECT * FROM berth.active_leases WHERE chain_id = $1 AND provider_id = $2::NUMERIC";
    let t = latencies(200, |i| async move {
        let rows = sqlx::query(provider_active)
            .bind(chain)
            .bind((1 + i % PROVIDERS).to_string())
            .fetch_all(pool)
            .await?;
        ensure!(
            !rows.is_empty(),
            "provider {} has active leases",
            1 + i % PROVIDERS
        );
        Ok(())
    })
    .await?;
    report(
        &format!(
            "one provider's active leases (~{} rows)",
            leases / 5 / PROVIDERS
        ),
        t,
        Some(20.0),
    );
    let month = "SELECT day, provider_id, charged, reports FROM berth.provider_revenue_daily
                 WHERE chain_id = $1 AND day >= to_timestamp($2) AND day < to_timestamp($2) + interval '30 days'
                 ORDER BY day, provider_id";
    let month_days = days.saturating_sub(30).max(1);
    let t = latencies(200, |i| async move {
        let start = T0 + (i % month_days) * 86_400;
        let rows = sqlx::query(month)
            .bind(chain)
            .bind(i64::try_from(start)?)
            .fetch_all(pool)
            .await?;
        ensure!(!rows.is_empty(), "a month of revenue from day {i}");
        Ok(())
    })
    .await?;
    report("one month of daily revenue, all providers", t, Some(100.0));
    let spend = "SELECT * FROM berth.tenant_spend WHERE chain_id = $1 AND tenant = $2";
    let t = latencies(200, |i| async move {
        let rows = sqlx::query(spend)
            .bind(chain)
            .bind(tenant(i * 13).to_checksum(None))
            .fetch_all(pool)
            .await?;
        ensure!(
            rows.len() == 1,
            "one spend row for tenant {}",
            tenant(i * 13)
        );
        Ok(())
    })
    .await?;
    report("one tenant's spend", t, None);
    println!("the same lookups computed from the event log (the *_from_events views, as before):");
    let t = latencies(3, |i| async move {
        sqlx::query(&one_lease.replace("berth.leases", "berth.leases_from_events"))
            .bind(chain)
            .bind(lease(i).to_string())
            .fetch_all(pool)
            .await?;
        Ok(())
    })
    .await?;
    report("one lease by id (berth.leases_from_events)", t, None);
    let t = latencies(3, |i| async move {
        sqlx::query(&month.replace(
            "berth.provider_revenue_daily",
            "berth.provider_revenue_daily_from_events",
        ))
        .bind(chain)
        .bind(i64::try_from(T0 + i * 86_400)?)
        .fetch_all(pool)
        .await?;
        Ok(())
    })
    .await?;
    report("one month of daily revenue (from events)", t, None);
    println!("the example queries of indexer/README.md (whole tables; 3 runs each):");
    for (what, sql) in berth_e2e::README_QUERIES {
        let t = latencies(3, |_| async move {
            sqlx::query(sql).fetch_all(pool).await?;
            Ok(())
        })
        .await?;
        report(what, t, None);
    }
    reindex(pool, &store).await
}

/// Re-folds the entity tables from the event log and checks the result is identical to what
/// the incremental writes built, and equal to the reference views.
async fn reindex(pool: &PgPool, store: &Store) -> Result<()> {
    const TABLES: [&str; 4] = [
        "lease_state",
        "provider_state",
        "provider_revenue_daily",
        "tenant_spend",
    ];
    sqlx::query("CREATE SCHEMA bench_snapshot")
        .execute(pool)
        .await?;
    for t in TABLES {
        sqlx::query(&format!(
            "CREATE TABLE bench_snapshot.{t} AS SELECT * FROM berth.{t}"
        ))
        .execute(pool)
        .await?;
    }
    let started = Instant::now();
    store.rebuild_entities().await?;
    let rebuilt = started.elapsed();
    let mut rows = 0;
    for t in TABLES {
        let (differ, n): (i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT COUNT(*) FROM ((SELECT * FROM berth.{t} EXCEPT ALL SELECT * FROM bench_snapshot.{t})
                     UNION ALL (SELECT * FROM bench_snapshot.{t} EXCEPT ALL SELECT * FROM berth.{t})) d),
                    (SELECT COUNT(*) FROM berth.{t})"
        ))
        .fetch_one(pool)
        .await?;
        ensure!(
            differ == 0,
            "re-indexing changed {differ} rows of berth.{t}"
        );
        rows += n;
    }
    println!(
        "re-indexing from scratch (the whole event log folded again): {:.1}s, {rows} rows identical to the incremental tables",
        rebuilt.as_secs_f64()
    );
    let started = Instant::now();
    let compared = berth_e2e::assert_entities_match_event_log(pool).await?;
    println!(
        "entity tables equal the reference views over the event log: {compared} rows compared in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
