//! Volumes kept after a lease's workload is gone, until its final report is settled
//! (`berth_keeper.volume_holds`).

use alloy::primitives::U256;

use super::{Store, StoreError};

impl Store {
    /// Leases whose volumes are kept for now.
    pub async fn held_volumes(&self) -> Result<Vec<U256>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT lease_id::text FROM berth_keeper.volume_holds
             WHERE chain_id = $1 AND escrow = $2 ORDER BY lease_id",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// Keeps `lease`'s volumes until [`Self::release_volumes`].
    pub async fn hold_volumes(&self, lease: U256) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO berth_keeper.volume_holds (chain_id, escrow, lease_id)
             VALUES ($1, $2, $3::numeric) ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `lease`'s volumes are gone (or were never kept).
    pub async fn release_volumes(&self, lease: U256) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM berth_keeper.volume_holds
             WHERE chain_id = $1 AND escrow = $2 AND lease_id = $3::numeric",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(lease.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[sqlx::test(migrations = false)]
    async fn a_hold_is_kept_once_and_released(pool: sqlx::PgPool) {
        let store = Store::open(pool, 31337, alloy::primitives::Address::repeat_byte(1))
            .await
            .expect("store");
        let (a, b) = (U256::from(7), U256::from(70));
        store.hold_volumes(a).await.expect("hold");
        store.hold_volumes(a).await.expect("again: nothing new");
        store.hold_volumes(b).await.expect("hold");
        assert_eq!(store.held_volumes().await.expect("read"), [a, b]);
        store.release_volumes(a).await.expect("release");
        store.release_volumes(a).await.expect("released already");
        assert_eq!(store.held_volumes().await.expect("read"), [b]);
    }
}
