//! Secrets envelopes by the lease that first carried them (migration 0005): the keeper's
//! memory of which lease an envelope belongs to.

use alloy::primitives::{B256, U256};

use super::{Store, StoreError};

impl Store {
    /// Records that `lease` carries the envelope `digest` (sealed to `key_version`) unless
    /// another lease did first; returns the lease that holds it.
    pub async fn claim_envelope(
        &self,
        digest: B256,
        lease: U256,
        key_version: u32,
    ) -> Result<U256, StoreError> {
        sqlx::query(
            "INSERT INTO berth_keeper.envelopes (chain_id, escrow, digest, lease_id, key_version)
             VALUES ($1, $2, $3, $4::numeric, $5) ON CONFLICT DO NOTHING",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(digest.as_slice())
        .bind(lease.to_string())
        .bind(i32::try_from(key_version).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        let owner = self.envelope_owner(digest).await?;
        Ok(owner.unwrap_or(lease))
    }

    /// The lease that first carried the envelope `digest`, if any did.
    pub async fn envelope_owner(&self, digest: B256) -> Result<Option<U256>, StoreError> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT lease_id::text FROM berth_keeper.envelopes
             WHERE chain_id = $1 AND escrow = $2 AND digest = $3",
        )
        .bind(self.chain_id)
        .bind(&self.escrow)
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        Ok(owner.and_then(|l| l.parse().ok()))
    }
}
