//! Services scaled to zero ([`Sleep`]): a row per service the keeper stopped for being idle,
//! until the gateway's wake or the lease's end removes it.

use alloy::primitives::U256;
use sqlx::Row;

use super::{Store, StoreError, i64_of, u64_of};

/// A service scaled to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sleep {
    /// The lease.
    pub lease: U256,
    /// The manifest service.
    pub service: String,
    /// When it began (unix ms): the id of this sleep.
    pub since_ms: u64,
}

impl Store {
    /// Every service scaled to zero.
    pub async fn sleeps(&self) -> Result<Vec<Sleep>, StoreError> {
        let rows = sqlx::query(
            "SELECT lease_id::text AS lease, service, since_ms FROM berth_keeper.sleeps
             WHERE chain_id = $1 AND escrow = $2",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Sleep {
                    lease: r.get::<String, _>("lease").parse().ok()?,
                    service: r.get("service"),
                    since_ms: u64_of(r.get("since_ms")),
                })
            })
            .collect())
    }

    /// The current sleep of `service` of `lease` (its start, unix ms), if it sleeps.
    pub async fn sleep_of(&self, lease: U256, service: &str) -> Result<Option<u64>, StoreError> {
        let since: Option<i64> = sqlx::query_scalar(
            "SELECT since_ms FROM berth_keeper.sleeps
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric AND service = $4",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(service)
        .fetch_optional(&self.pool)
        .await?;
        Ok(since.map(u64_of))
    }

    /// Records that `service` of `lease` sleeps from `since_ms` on (a newer sleep replaces an
    /// older row).
    pub async fn put_sleep(&self, sleep: &Sleep) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO berth_keeper.sleeps (chain_id, escrow, lease_id, service, since_ms)
             VALUES ($1, $2, $3::numeric, $4, $5)
             ON CONFLICT (chain_id, escrow, lease_id, service) DO UPDATE SET since_ms = EXCLUDED.since_ms",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(sleep.lease.to_string())
        .bind(&sleep.service)
        .bind(i64_of(sleep.since_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends the sleep of `service` of `lease` (every service of it with `None`).
    pub async fn end_sleep(&self, lease: U256, service: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM berth_keeper.sleeps
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric
               AND ($4::text IS NULL OR service = $4)",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .bind(service)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;
    use sqlx::PgPool;

    use super::*;

    #[sqlx::test(migrations = false)]
    async fn a_sleep_is_recorded_renewed_and_ended(pool: PgPool) -> Result<(), StoreError> {
        let store = Store::open(pool.clone(), 1, Address::ZERO).await?;
        let other = Store::open(pool, 2, Address::ZERO).await?;
        let nap = |lease: u64, service: &str, since_ms| Sleep {
            lease: U256::from(lease),
            service: service.into(),
            since_ms,
        };
        store.put_sleep(&nap(1, "web", 10)).await?;
        store.put_sleep(&nap(1, "web", 20)).await?;
        store.put_sleep(&nap(1, "api", 30)).await?;
        store.put_sleep(&nap(2, "web", 40)).await?;
        other.put_sleep(&nap(1, "web", 50)).await?;
        let mut all = store.sleeps().await?;
        all.sort_by_key(|s| s.since_ms);
        assert_eq!(
            all,
            vec![nap(1, "web", 20), nap(1, "api", 30), nap(2, "web", 40)]
        );
        assert_eq!(store.sleep_of(U256::from(1), "web").await?, Some(20));
        assert_eq!(store.sleep_of(U256::from(3), "web").await?, None);
        store.end_sleep(U256::from(1), Some("web")).await?;
        assert_eq!(store.sleeps().await?.len(), 2);
        store.end_sleep(U256::from(2), None).await?;
        assert_eq!(store.sleeps().await?, vec![nap(1, "api", 30)]);
        assert_eq!(
            other.sleeps().await?,
            vec![nap(1, "web", 50)],
            "another deployment's rows stay"
        );
        Ok(())
    }
}
