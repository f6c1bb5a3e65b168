//! Each lease's event feed (migration 0006): recorded idempotently by a key per occurrence,
//! read back in order.

use alloy::primitives::U256;
use berth_protocol::api::LeaseEvent;
use sqlx::Row;

use super::{Store, StoreError, db_text};

/// Most events returned at once.
pub const MAX_EVENTS: i64 = 500;

impl Store {
    /// Records `kind` for `lease` once per `dedupe` key; returns whether it is new.
    pub async fn record_event(
        &self,
        lease: U256,
        kind: &str,
        dedupe: &str,
        detail: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO berth_keeper.lease_events (chain_id, escrow, lease_id, kind, detail, dedupe)
             VALUES ($1, $2, $3::numeric, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(kind)
        .bind(sqlx::types::Json(detail))
        .bind(db_text(dedupe).as_ref())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// The lease's events after `after` (a sequence number), oldest first, at most `limit`.
    pub async fn events(
        &self,
        lease: U256,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LeaseEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, EXTRACT(EPOCH FROM at)::BIGINT AS at, kind, detail FROM berth_keeper.lease_events
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND seq > $4
             ORDER BY seq LIMIT $5",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(after)
        .bind(limit.clamp(1, MAX_EVENTS))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| LeaseEvent {
                seq: r.get("seq"),
                at: u64::try_from(r.get::<i64, _>("at")).unwrap_or(0),
                kind: r.get("kind"),
                detail: r.get::<sqlx::types::Json<serde_json::Value>, _>("detail").0,
            })
            .collect())
    }

    /// How many `kind` events the lease has had since `since_s` (unix seconds) for `service`.
    pub async fn count_events(
        &self,
        lease: U256,
        kind: &str,
        service: &str,
        since_s: u64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM berth_keeper.lease_events
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND kind = $4
               AND detail->>'service' = $5 AND at >= to_timestamp($6)",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(kind)
        .bind(service)
        .bind(since_s as f64)
        .fetch_one(&self.pool)
        .await?)
    }
}
