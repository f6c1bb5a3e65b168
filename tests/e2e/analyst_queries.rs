//! The analysts' queries against the indexer's tables at scale: every query the indexer's
//! README documents must grow at most linearly with the number of leases.

use berth_indexer::store::Store;
use eyre::{Result, ensure};
use sqlx::PgPool;

/// `n` synthetic leases in `berth.events`: opened, confirmed, two reports, a top-up, closed
/// and withdrawn (7 events each), replacing what was there.
async fn seed_leases(pool: &PgPool, n: i64) -> Result<()> {
    sqlx::query("TRUNCATE berth.events").execute(pool).await?;
    sqlx::query(
        "INSERT INTO berth.events (chain_id, block_number, block_hash, block_time, log_index, tx_hash,
                                   contract, event, lease_id, provider_id, args)
         SELECT 1, b, decode(lpad(to_hex(b), 64, '0'), 'hex'), to_timestamp(1700000000 + b * 12), 0,
                '\\x00', 'escrow', ev, l, 1 + l % 5, a
         FROM generate_series(1, $1::BIGINT) AS l,
         LATERAL (VALUES
           (l * 10, 'LeaseOpened', jsonb_build_object('tenant', '0xabc', 'priceVersion', '1', 'cpuMillis', '500',
              'memoryMiB', '256', 'storageGiB', '1', 'manifestHash', '0x00', 'manifestUri', '',
              'deposit', '1000000', 'maxRate', '100')),
           (l * 10 + 1, 'LeaseConfirmed', jsonb_build_object('endpoint', 'http://h:1')),
           (l * 10 + 2, 'UsageReported', jsonb_build_object('sequence', '1', 'from', '1', 'to', '100',
              'cpuUnits', '10', 'memoryUnits', '10', 'storageUnits', '1', 'charge', '1000', 'samplesRoot', '0x')),
           (l * 10 + 3, 'UsageReported', jsonb_build_object('sequence', '2', 'from', '100', 'to', '200',
              'cpuUnits', '10', 'memoryUnits', '10', 'storageUnits', '1', 'charge', '1000', 'samplesRoot', '0x')),
           (l * 10 + 4, 'LeaseToppedUp', jsonb_build_object('from', '0xabc', 'amount', '500', 'balance', '1')),
           (l * 10 + 5, 'LeaseClosed', jsonb_build_object('reason', (1 + l % 2)::TEXT, 'closedAt', '1700009999')),
           (l * 10 + 6, 'LeaseWithdrawn', jsonb_build_object('tenant', '0xabc', 'amount', '10'))
         ) AS e(b, ev, a)",
    )
    .bind(n)
    .execute(pool)
    .await?;
    // Events written behind the indexer's back, as in a database indexed before the entity
    // tables existed: opening the store finds the tables empty and folds the log into them.
    sqlx::query(
        "TRUNCATE berth.lease_state, berth.provider_state, berth.provider_revenue_daily, berth.tenant_spend",
    )
    .execute(pool)
    .await?;
    Store::open(pool.clone(), 1).await?;
    sqlx::query("ANALYZE berth.events").execute(pool).await?;
    Ok(())
}

/// The fastest of three runs of `sql`.
async fn best_of_three(pool: &PgPool, sql: &str) -> Result<std::time::Duration> {
    let mut best = std::time::Duration::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        sqlx::query(sql).fetch_all(pool).await?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

/// No documented query may be worse than linear: four times the leases may cost at most
/// ten times the time (linear is about four; the quadratic plan of `lease_lifetimes` this
/// replaced was about sixteen, and seconds at these sizes).
#[sqlx::test(migrations = false)]
async fn documented_queries_grow_linearly_with_leases(pool: PgPool) -> Result<()> {
    Store::open(pool.clone(), 1).await?;
    let (small, large) = (1_500, 6_000);
    seed_leases(&pool, small).await?;
    let mut small_times = Vec::new();
    for (_, q) in berth_e2e::README_QUERIES {
        small_times.push(best_of_three(&pool, q).await?);
    }
    seed_leases(&pool, large).await?;
    for ((_, q), t_small) in berth_e2e::README_QUERIES.iter().zip(small_times) {
        let t_large = best_of_three(&pool, q).await?;
        println!(
            "{small} leases: {t_small:?}, {large} leases: {t_large:?} — {}",
            q.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        ensure!(
            t_large < t_small * 10 + std::time::Duration::from_millis(20),
            "superlinear: {t_small:?} at {small} leases, {t_large:?} at {large}: {q}"
        );
    }
    let closed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM berth.lease_lifetimes WHERE closed_at IS NOT NULL AND close_reason IS NOT NULL",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(
        closed == large,
        "every seeded lease closed with its reason: {closed}"
    );
    berth_e2e::assert_entities_match_event_log(&pool).await?;
    Ok(())
}
