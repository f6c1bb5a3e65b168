//! Observe and decide for a lease's secrets: who first carried the envelope, which key the
//! registry holds now; then [`crate::secrets::open`] decides.

use alloy::primitives::U256;
use berth_bindings::RejectReason;
use berth_protocol::{manifest::Manifest, secrets::SecretValues};

use super::{PassError, Reconciler};
use crate::{
    chain::LeaseView,
    intake::Rejection,
    secrets::{LeaseSecrets, envelope_digest},
};

impl Reconciler {
    /// Opens `manifest`'s secrets (from `bytes`) for `view`'s lease, and records the envelope
    /// as this lease's the first time. `Ok(Err(_))`: the lease's secrets cannot be used.
    pub(super) async fn open_secrets(
        &self,
        view: &LeaseView,
        bytes: &[u8],
        manifest: &Manifest,
    ) -> Result<Result<Option<SecretValues>, Rejection>, PassError> {
        let (Some(digest), Some(sealed)) = (envelope_digest(manifest), &manifest.secrets) else {
            return Ok(Ok(None));
        };
        let owner = self.store.envelope_owner(digest).await?;
        let current_version = match owner {
            Some(_) => sealed.key_version,
            None => self.chain.encryption_key().await?.1,
        };
        let lease = LeaseSecrets {
            chain_id: self.chain_id,
            escrow: self.chain.escrow(),
            provider_id: U256::from(view.provider_id),
            lease: view.id,
            tenant: view.tenant,
            text: std::str::from_utf8(bytes).unwrap_or_default(),
            owner,
            current_version,
        };
        let values = match crate::secrets::open(&self.settings.secret_keys, manifest, &lease) {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        if owner.is_none() {
            let holder = self
                .store
                .claim_envelope(digest, view.id, sealed.key_version)
                .await?;
            if holder != view.id {
                return Ok(Err(Rejection::new(
                    RejectReason::SecretsUnreadable,
                    format!("the secrets envelope was first carried by lease {holder}: replayed"),
                )));
            }
        }
        Ok(Ok(values))
    }
}
