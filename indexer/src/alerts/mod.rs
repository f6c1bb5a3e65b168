//! Tenant alerts: a pass every `alert_interval` turns the mirrored chain into alert rows
//! (`berth.alerts`) on transitions only, announces each with `NOTIFY berth_alerts` in the
//! same transaction, and, with a webhook configured, delivers them with retries
//! ([`deliver`]).
//!
//! - **Runway**: an active lease's runway at its maximum rate (`billedUntil + balance ×
//!   PRICE_SCALE / maxRate − now`, `now` the later of the clock and the newest indexed
//!   block) under a threshold (default 24 h and 2 h) raises `runway_low` once per crossing;
//!   it must climb 10 % above a threshold (a top-up) before that threshold can alert again.
//! - **Events**: every `LeaseSuspended` and `AutoTopUpFailed` indexed after the alerter
//!   started raises `suspended` / `auto_top_up_failed`.

pub mod deliver;
pub mod level;

use std::time::Duration;

use alloy::primitives::U256;
use sqlx::{PgPool, Row};
use tokio::sync::watch;

use level::{Level, Thresholds};

/// The NOTIFY channel.
pub const CHANNEL: &str = "berth_alerts";

/// What the alerter needs.
#[derive(Debug, Clone)]
pub struct Alerter {
    /// The indexer's database.
    pub pool: PgPool,
    /// The chain indexed.
    pub chain_id: u64,
    /// Runway thresholds.
    pub thresholds: Thresholds,
    /// Time between passes.
    pub interval: Duration,
}

/// Why a pass failed (it is tried again at the next interval).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The database.
    #[error("alerts: {0}")]
    Db(#[from] sqlx::Error),
}

impl Alerter {
    /// Runs passes until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => continue,
            }
            match self.pass().await {
                Ok(0) => {}
                Ok(raised) => tracing::info!(raised, "alerts raised"),
                Err(e) => tracing::warn!(error = %e, "alert pass failed; trying again"),
            }
        }
    }

    /// One pass; returns how many alerts it raised.
    pub async fn pass(&self) -> Result<u64, AlertError> {
        let mut tx = self.pool.begin().await?;
        let chain = self.chain_id as i64;
        let mut raised = self.event_alerts(&mut tx, chain).await?;
        raised += self.runway_alerts(&mut tx, chain).await?;
        tx.commit().await?;
        Ok(raised)
    }

    async fn event_alerts(
        &self,
        tx: &mut sqlx::PgConnection,
        chain: i64,
    ) -> Result<u64, AlertError> {
        let Some(head) = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT block_number FROM berth.checkpoint WHERE chain_id = $1",
        )
        .bind(chain)
        .fetch_optional(&mut *tx)
        .await?
        .flatten() else {
            return Ok(0);
        };
        // The first pass starts at the head: alerts are for what happens from now on.
        let from: i64 = sqlx::query_scalar(
            "INSERT INTO berth.alert_cursor (chain_id, block_number) VALUES ($1, $2)
             ON CONFLICT (chain_id) DO UPDATE SET block_number = berth.alert_cursor.block_number
             RETURNING block_number",
        )
        .bind(chain)
        .bind(head)
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "INSERT INTO berth.alerts (chain_id, lease_id, tenant, provider_id, kind, source, detail)
             SELECT e.chain_id, e.lease_id,
                    (SELECT o.args->>'tenant' FROM berth.events o
                      WHERE o.lease_id = e.lease_id AND o.chain_id = e.chain_id
                        AND o.event = 'LeaseOpened' LIMIT 1),
                    e.provider_id,
                    CASE e.event WHEN 'LeaseSuspended' THEN 'suspended' ELSE 'auto_top_up_failed' END,
                    'event:' || encode(e.block_hash, 'hex') || ':' || e.log_index,
                    e.args || jsonb_build_object('block_number', e.block_number, 'block_time', e.block_time)
             FROM berth.events e
             WHERE e.chain_id = $1 AND e.block_number > $2 AND e.block_number <= $3
               AND e.contract = 'escrow' AND e.event IN ('LeaseSuspended', 'AutoTopUpFailed')
             ORDER BY e.block_number, e.log_index
             ON CONFLICT (chain_id, lease_id, source) DO NOTHING
             RETURNING id",
        )
        .bind(chain)
        .bind(from)
        .bind(head)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE berth.alert_cursor SET block_number = $2 WHERE chain_id = $1")
            .bind(chain)
            .bind(head)
            .execute(&mut *tx)
            .await?;
        for r in &rows {
            notify(tx, r.get::<i64, _>("id")).await?;
        }
        Ok(rows.len() as u64)
    }

    async fn runway_alerts(
        &self,
        tx: &mut sqlx::PgConnection,
        chain: i64,
    ) -> Result<u64, AlertError> {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let newest: Option<i64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM MAX(block_time))::BIGINT FROM berth.blocks WHERE chain_id = $1",
        )
        .bind(chain)
        .fetch_one(&mut *tx)
        .await?;
        let now = clock.max(newest.unwrap_or(0));
        let leases = sqlx::query(
            "SELECT l.lease_id::TEXT AS lease, l.tenant, l.provider_id::TEXT AS provider,
                    l.balance::TEXT AS balance, l.max_rate::TEXT AS max_rate,
                    EXTRACT(EPOCH FROM l.billed_until)::BIGINT AS billed_until,
                    r.level, r.episode
             FROM berth.leases l
             LEFT JOIN berth.runway_levels r ON r.chain_id = l.chain_id AND r.lease_id = l.lease_id
             WHERE l.chain_id = $1 AND l.status = 'active'",
        )
        .bind(chain)
        .fetch_all(&mut *tx)
        .await?;
        let mut raised = 0;
        for row in &leases {
            let number = |name: &str| {
                row.get::<Option<String>, _>(name)
                    .and_then(|v| v.parse::<U256>().ok())
                    .unwrap_or_default()
            };
            let Some(runway) = runway_s(
                number("balance"),
                number("max_rate"),
                row.get::<Option<i64>, _>("billed_until").unwrap_or(now),
                now,
            ) else {
                continue;
            };
            let lease: String = row.get("lease");
            let was = Level {
                level: row.get::<Option<i32>, _>("level").unwrap_or(0) as usize,
                episode: row.get::<Option<i32>, _>("episode").unwrap_or(0),
            };
            let (next, crossed) = self.thresholds.next(was, runway);
            for threshold in crossed {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO berth.alerts
                       (chain_id, lease_id, tenant, provider_id, kind, threshold_s, runway_s, source, detail)
                     VALUES ($1, $2::NUMERIC, $3, $4::NUMERIC, 'runway_low', $5, $6, $7,
                             jsonb_build_object('depletes_at', to_timestamp($8)))
                     ON CONFLICT (chain_id, lease_id, source) DO NOTHING RETURNING id",
                )
                .bind(chain)
                .bind(&lease)
                .bind(row.get::<Option<String>, _>("tenant").unwrap_or_default())
                .bind(row.get::<Option<String>, _>("provider"))
                .bind(threshold as i64)
                .bind(runway)
                .bind(format!("runway:{threshold}:{}", next.episode))
                .bind((now + runway) as f64)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = id {
                    notify(tx, id).await?;
                    raised += 1;
                }
            }
            if next != was {
                sqlx::query(
                    "INSERT INTO berth.runway_levels (chain_id, lease_id, level, episode)
                     VALUES ($1, $2::NUMERIC, $3, $4)
                     ON CONFLICT (chain_id, lease_id) DO UPDATE SET level = $3, episode = $4",
                )
                .bind(chain)
                .bind(&lease)
                .bind(next.level as i32)
                .bind(next.episode)
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(raised)
    }
}

/// Seconds of runway at the maximum rate at `now` (negative: overdue); None without a rate.
pub fn runway_s(balance: U256, max_rate: U256, billed_until: i64, now: i64) -> Option<i64> {
    if max_rate.is_zero() {
        return None;
    }
    let funded = balance.saturating_mul(U256::from(berth_bindings::PRICE_SCALE)) / max_rate;
    let funded = i64::try_from(funded).unwrap_or(i64::MAX / 2);
    Some(billed_until.saturating_add(funded).saturating_sub(now))
}

async fn notify(tx: &mut sqlx::PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_notify($1, json_build_object('id', id, 'chain_id', chain_id, 'lease_id', lease_id::TEXT,
                                                'tenant', tenant, 'kind', kind, 'threshold_s', threshold_s,
                                                'runway_s', runway_s)::TEXT)
         FROM berth.alerts WHERE id = $2",
    )
    .bind(CHANNEL)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runway_counts_the_unbilled_time_since_the_last_report() {
        // 100 tokens at 1 token/s (PRICE_SCALE per second), billed until 1,000.
        let rate = U256::from(berth_bindings::PRICE_SCALE);
        assert_eq!(runway_s(U256::from(100), rate, 1_000, 1_000), Some(100));
        assert_eq!(runway_s(U256::from(100), rate, 1_000, 1_060), Some(40));
        assert_eq!(runway_s(U256::from(100), rate, 1_000, 1_200), Some(-100));
        assert_eq!(runway_s(U256::from(100), U256::ZERO, 1_000, 1_000), None);
        assert!(runway_s(U256::MAX, U256::from(1), 0, 0).is_some_and(|r| r > 0));
    }
}
