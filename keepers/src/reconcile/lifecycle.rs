//! A confirmed lease's life after confirmation: its workload kept on the manifest version
//! the lease is committed to (an update is rolled out in place), stopped while the lease is
//! suspended and started again when a top-up resumes it.

use std::{collections::BTreeMap, time::Instant};

use alloy::primitives::U256;

use super::{Action, PassError, Reconciler, work::ApplyState};
use crate::{
    chain::LeaseView,
    engine::{EngineError, Workload},
    intake,
};
use berth_bindings::LeaseStatus;

impl Reconciler {
    /// Replaces a running workload with the lease's new manifest version, keeping its public
    /// ports and volumes. A version that fails the checks is logged once and not deployed:
    /// the lease is active and paid for, so the old version keeps running.
    pub(super) async fn roll_out(
        &mut self,
        view: &LeaseView,
        workload: &Workload,
        all: &BTreeMap<U256, Workload>,
    ) -> Result<(), PassError> {
        match self.apply_state(view.id).await {
            ApplyState::Running => return Ok(()),
            ApplyState::Done(Err(e)) => {
                tracing::warn!(lease = %view.id, version = view.manifest_version, error = %e, "rollout failed; trying again");
            }
            ApplyState::Done(Ok(())) | ApplyState::Idle => {}
        }
        let Some(bytes) = self.manifest_bytes(view).await? else {
            return Ok(()); // downloading, or waiting for the tenant's upload
        };
        if alloy::primitives::keccak256(&bytes) != view.manifest_hash {
            return Ok(()); // the stored bytes are an earlier version: wait for the upload
        }
        let checked = match self.check_manifest(view, &bytes) {
            Ok(m) => match self.open_secrets(view, &bytes, &m).await? {
                Ok(secrets) => Ok((m, secrets)),
                Err(r) => Err(r),
            },
            Err(r) => Err(r),
        };
        let (manifest, secrets) = match checked {
            Ok(m) => m,
            Err(r) => {
                self.refused_updates
                    .insert((view.id, view.manifest_version));
                self.metrics.refused_update();
                tracing::error!(
                    lease = %view.id,
                    version = view.manifest_version,
                    reason = ?r.reason,
                    rule = %r.rule,
                    "manifest update refused: the workload keeps its running version"
                );
                return Ok(());
            }
        };
        // New ports get free public ports; ports the workload already publishes keep theirs.
        let used = self.used_ports(all);
        let mut ports =
            intake::assign_ports(&manifest, &self.settings.policy.host_ports, &used, |p| {
                self.bindable(p)
            })
            .unwrap_or_default();
        for (key, public) in ports.iter_mut() {
            if let Some(p) = workload.ports.get(key) {
                *public = *p;
            }
        }
        tracing::info!(
            lease = %view.id,
            from = ?workload.manifest_version,
            to = view.manifest_version,
            "rolling out the lease's manifest update"
        );
        self.metrics.rolled_out();
        let version = view.manifest_version;
        self.note(
            view.id,
            "updated",
            format!("updated:{version}"),
            serde_json::json!({ "version": version, "from": workload.manifest_version }),
        )
        .await;
        self.spawn_replace(view.id, &manifest, ports, view.manifest_version, secrets);
        Ok(())
    }

    /// A suspended lease whose services still run: stop them; its objects and volumes stay
    /// for a resume.
    pub(super) async fn suspended(
        &mut self,
        view: &LeaseView,
        workload: Option<&Workload>,
    ) -> Result<(), PassError> {
        self.abandon(view.id);
        if workload.is_some_and(|w| w.services.values().any(|running| *running)) {
            self.engine.stop(&self.key(view.id)).await?;
            tracing::info!(lease = %view.id, "lease suspended: workload stopped, volumes kept");
        }
        Ok(())
    }

    /// Removes the workloads of ended leases, [`super::TEARDOWN_CONCURRENCY`] at a time; one result
    /// per lease, in order. A lease that owes its final report keeps its volumes (held in the
    /// store first, so a restart still deletes them) until [`Action::DeleteVolumes`].
    pub(super) async fn teardown_all(
        &self,
        ending: &[(U256, LeaseStatus, Action)],
    ) -> Vec<Result<(), EngineError>> {
        use futures::StreamExt;
        futures::stream::iter(ending.iter().map(|(id, status, action)| async move {
            let timer = Instant::now();
            let key = self.key(*id);
            let held = |e: crate::store::StoreError| EngineError::Unavailable(e.to_string());
            let result = match action {
                Action::TearDownKeepingVolumes => match self.store.hold_volumes(*id).await {
                    Ok(()) => self.engine.remove_workload(&key).await,
                    Err(e) => Err(held(e)),
                },
                _ => match self.engine.delete(&key).await {
                    Ok(()) => self.store.release_volumes(*id).await.map_err(held),
                    Err(e) => Err(e),
                },
            };
            self.metrics.engine_call("delete", timer.elapsed());
            match (&result, action) {
                (Ok(()), Action::DeleteVolumes) => {
                    tracing::info!(lease = %id, ?status, "volumes deleted after the final report");
                }
                (Ok(()), _) => {
                    self.metrics.torn_down();
                    tracing::info!(lease = %id, ?status, ?action, "workload torn down");
                }
                (Err(e), _) => {
                    tracing::warn!(lease = %id, error = %e, "teardown failed; retrying next pass")
                }
            }
            result
        }))
        .buffered(super::TEARDOWN_CONCURRENCY)
        .collect()
        .await
    }
}

/// Whether `action` removes something of an ended lease.
pub(super) fn removes(action: Action) -> bool {
    matches!(
        action,
        Action::TearDown | Action::TearDownKeepingVolumes | Action::DeleteVolumes
    )
}
