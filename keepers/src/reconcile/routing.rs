//! The gateway's route table from a pass's snapshot: the leases of ours whose apps are
//! served, their manifests (learned once per version) and their custom domains' proofs.

use alloy::primitives::U256;
use berth_bindings::LeaseStatus;
use berth_protocol::manifest::Manifest;

use super::{Reconciler, observe::Snapshot};
use crate::engine::Workload;

impl Reconciler {
    /// Hands the gateway the routes of every lease of ours whose workload runs (pending ones
    /// too: their endpoint is about to be confirmed). A failure is logged and retried by the
    /// next pass; it never stops the pass.
    pub(super) async fn publish_routes(&mut self, snap: &Snapshot) {
        let served = self.served(snap);
        let Some(publisher) = self.routes.as_mut() else {
            return;
        };
        let claims = publisher.claims(
            served
                .iter()
                .map(|(id, v)| (*id, *v, snap.views[id].tenant)),
        );
        let domains = match self.domains.as_mut() {
            Some(d) if !claims.is_empty() => d.holders(&claims).await,
            _ => Default::default(),
        };
        let table = publisher.table(
            served
                .iter()
                .map(|(id, v)| (*id, *v, snap.views[id].tenant, &snap.workloads[id])),
            &domains,
        );
        if let Err(e) = publisher.publish(table).await {
            self.metrics.lease_error("routes");
            tracing::warn!(error = %e, "routes not sent to the gateway; next pass retries");
        }
    }

    /// Leases of ours whose apps are routed: pending or active, workload running (or asleep).
    fn served(&self, snap: &Snapshot) -> Vec<(U256, u32)> {
        snap.views
            .values()
            .filter(|v| v.provider_id == self.settings.provider_id)
            .filter(|v| matches!(v.status, LeaseStatus::Pending | LeaseStatus::Active))
            .filter(|v| snap.workloads.get(&v.id).is_some_and(Workload::running))
            .map(|v| (v.id, v.manifest_version))
            .collect()
    }

    /// Reads the manifests of served leases the route publisher does not know yet.
    pub(super) async fn learn_manifests(&mut self, snap: &Snapshot) {
        let served = self.served(snap);
        let Some(publisher) = self.routes.as_mut() else {
            return;
        };
        for &(id, version) in &served {
            if publisher.knows(id, version) {
                continue;
            }
            match self.store.manifest(id).await {
                Ok(Some(stored)) => match Manifest::parse(&stored.bytes) {
                    Ok(manifest) => publisher.learn(id, version, &manifest),
                    Err(e) => {
                        tracing::warn!(lease = %id, error = %e, "stored manifest unreadable: no route")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(lease = %id, error = %e, "manifest not read: route waits"),
            }
        }
        publisher.retain(|id| snap.views.contains_key(&id));
    }
}
