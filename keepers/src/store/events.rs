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

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;
    use serde_json::json;
    use sqlx::PgPool;

    use super::*;

    #[sqlx::test(migrations = false)]
    async fn an_event_is_recorded_once_per_key_and_read_in_order(
        pool: PgPool,
    ) -> Result<(), StoreError> {
        let store = Store::open(pool.clone(), 1, Address::ZERO).await?;
        let other_chain = Store::open(pool, 2, Address::ZERO).await?;
        let lease = U256::from(7);
        assert!(
            store
                .record_event(lease, "deployed", "deployed:0", json!({"version": 0}))
                .await?
        );
        assert!(
            !store
                .record_event(lease, "deployed", "deployed:0", json!({}))
                .await?,
            "a key records once"
        );
        for n in 0..3 {
            let key = format!("restart:c:{n}");
            store
                .record_event(
                    lease,
                    "restarted",
                    &key,
                    json!({"service": "web", "exit_code": 1}),
                )
                .await?;
        }
        // A NUL byte (which Postgres text refuses) in a tenant's key is stored escaped.
        assert!(
            store
                .record_event(lease, "rejected", "rejected\0", json!({}))
                .await?
        );
        other_chain
            .record_event(lease, "deployed", "deployed:0", json!({}))
            .await?;

        let all = store.events(lease, 0, 100).await?;
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "deployed",
                "restarted",
                "restarted",
                "restarted",
                "rejected"
            ]
        );
        assert!(all.windows(2).all(|p| p[0].seq < p[1].seq));
        let after = store.events(lease, all[1].seq, 2).await?;
        assert_eq!(
            after.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [all[2].seq, all[3].seq]
        );
        assert_eq!(store.count_events(lease, "restarted", "web", 0).await?, 3);
        assert_eq!(store.count_events(lease, "restarted", "db", 0).await?, 0);
        assert_eq!(
            other_chain.events(lease, 0, 100).await?.len(),
            1,
            "chains apart"
        );
        Ok(())
    }
}
