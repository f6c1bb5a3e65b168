//! Each lease's event feed, as the reconciler sees things happen: recorded once per
//! occurrence (a key per event; the store ignores a key it has), remembered in memory so a
//! pass does not write what an earlier pass wrote. A failed write is logged and never fails
//! a pass: the feed informs the tenant, the chain and the engine are the truth.

use alloy::primitives::U256;
use berth_bindings::LeaseStatus;
use serde_json::{Value, json};

use super::{Reconciler, observe::Snapshot};

impl Reconciler {
    /// Records `kind` for `lease` once per `dedupe`.
    pub(super) async fn note(&mut self, lease: U256, kind: &str, dedupe: String, detail: Value) {
        if self.noted.contains(&(lease, dedupe.clone())) {
            return;
        }
        match self.store.record_event(lease, kind, &dedupe, detail).await {
            Ok(_) => {
                self.noted.insert((lease, dedupe));
            }
            Err(e) => {
                tracing::warn!(lease = %lease, kind, error = %e, "recording a lease event failed")
            }
        }
    }

    /// What the snapshot shows happened: confirmation, suspensions and resumptions (from the
    /// chain), the images each service was pinned to (from the engine).
    pub(super) async fn note_snapshot(&mut self, snap: &Snapshot) {
        for (id, view) in &snap.views {
            let confirmed = matches!(
                view.status,
                LeaseStatus::Active | LeaseStatus::Suspended | LeaseStatus::Closing
            );
            if confirmed && !view.endpoint.is_empty() {
                let endpoint = crate::store::db_text(&view.endpoint).into_owned();
                self.note(
                    *id,
                    "confirmed",
                    "confirmed".into(),
                    json!({ "endpoint": endpoint }),
                )
                .await;
            }
            if view.suspended_at > 0 {
                let at = view.suspended_at;
                self.note(
                    *id,
                    "suspended",
                    format!("suspended:{at}"),
                    json!({ "chain_time": at }),
                )
                .await;
            }
            if view.resumed_at > 0 {
                let at = view.resumed_at;
                self.note(
                    *id,
                    "resumed",
                    format!("resumed:{at}"),
                    json!({ "chain_time": at }),
                )
                .await;
            }
        }
        for (id, workload) in &snap.workloads {
            for (service, image) in &workload.images {
                let image = crate::store::db_text(image).into_owned();
                self.note(
                    *id,
                    "image_pulled",
                    format!("image:{service}:{image}"),
                    json!({ "service": service, "image": image }),
                )
                .await;
            }
        }
    }

    /// Records the leases whose workloads the pass removed.
    pub(super) async fn note_teardowns(
        &mut self,
        ending: &[(U256, LeaseStatus, super::Action)],
        removed: &[Result<(), crate::engine::EngineError>],
    ) {
        for ((id, status, action), result) in ending.iter().zip(removed) {
            if result.is_ok() && *action != super::Action::DeleteVolumes {
                let status = format!("{status:?}").to_lowercase();
                self.note(
                    *id,
                    "terminated",
                    "terminated".into(),
                    json!({ "status": status }),
                )
                .await;
            }
        }
    }

    /// Forgets what was recorded for a lease the keeper stops watching.
    pub(super) fn forget_noted(&mut self, lease: U256) {
        self.noted.retain(|(l, _)| *l != lease);
    }
}
