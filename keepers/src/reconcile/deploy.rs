//! Act, for a lease that must be deployed: a pending lease taken in (manifest, checks,
//! admission, ports), deployed, waited on and confirmed or rejected; an active lease whose
//! workload is missing or stopped started again as it was confirmed.

use std::{collections::BTreeMap, time::Instant};

use alloy::primitives::U256;
use berth_bindings::RejectReason;
use berth_protocol::manifest::Manifest;

use super::{PassError, Reconciler, confirmed_port, work::ApplyState};
use crate::{
    chain::LeaseView,
    engine::{EngineError, Workload},
    intake::{self, Rejection},
};

impl Reconciler {
    /// A pending lease: intake and deploy, wait for readiness, confirm. Returns whether it is
    /// still waiting for its workload.
    pub(super) async fn pending(
        &mut self,
        view: &LeaseView,
        workload: Option<&Workload>,
        all: &BTreeMap<U256, Workload>,
        views: &BTreeMap<U256, LeaseView>,
    ) -> Result<bool, PassError> {
        let id = view.id;
        let Some(bytes) = self.manifest_bytes(view).await? else {
            let now = self.chain.now().await?;
            if now.saturating_sub(view.created_at) > self.settings.manifest_timeout.as_secs() {
                let rule = format!(
                    "no manifest uploaded or downloadable within {} s",
                    self.settings.manifest_timeout.as_secs()
                );
                self.reject(
                    view,
                    Rejection::new(RejectReason::ManifestUnavailable, rule),
                )
                .await?;
            }
            return Ok(false);
        };
        let manifest = match self.check_manifest(view, &bytes) {
            Ok(m) => m,
            Err(r) => {
                self.reject(view, r).await?;
                return Ok(false);
            }
        };
        let secrets = match self.open_secrets(view, &bytes, &manifest).await? {
            Ok(s) => s,
            Err(r) => {
                self.reject(view, r).await?;
                return Ok(false);
            }
        };

        match self.apply_state(id).await {
            ApplyState::Running => return Ok(true),
            ApplyState::Done(Err(EngineError::Refused(why))) => {
                self.reject(view, Rejection::new(RejectReason::ManifestInvalid, why))
                    .await?;
                return Ok(false);
            }
            ApplyState::Done(Err(EngineError::ImageUnavailable(why))) => {
                self.reject(view, Rejection::new(RejectReason::ImageUnavailable, why))
                    .await?;
                return Ok(false);
            }
            ApplyState::Done(Err(EngineError::Full(why))) => {
                self.reject(view, Rejection::new(RejectReason::CapacityUnavailable, why))
                    .await?;
                return Ok(false);
            }
            ApplyState::Done(Err(e)) => return Err(e.into()),
            ApplyState::Done(Ok(())) if workload.is_none() => return Ok(true),
            ApplyState::Done(Ok(())) | ApplyState::Idle => {}
        }
        let Some(workload) = workload else {
            if let Err(r) = self.admit(view, all, views).await? {
                self.reject(view, r).await?;
                return Ok(false);
            }
            let used = self.used_ports(all);
            let ports = match intake::assign_ports(
                &manifest,
                &self.settings.policy.host_ports,
                &used,
                |p| self.bindable(p),
            ) {
                Ok(p) => p,
                Err(r) => {
                    self.reject(view, r).await?;
                    return Ok(false);
                }
            };
            self.spawn_apply(id, &manifest, ports, Some(view.manifest_version), secrets);
            let version = view.manifest_version;
            self.note(
                id,
                "deployed",
                format!("deployed:{version}"),
                serde_json::json!({ "version": version }),
            )
            .await;
            self.metrics.deployed();
            self.started.insert(id, Instant::now());
            tracing::info!(lease = %id, engine = self.engine.name(), "deploying");
            return Ok(true);
        };

        if !workload.running() {
            let ports = workload.ports.clone();
            self.spawn_apply(id, &manifest, ports, Some(view.manifest_version), secrets);
        }
        let started = *self.started.entry(id).or_insert_with(Instant::now);
        let web = self.routes.as_ref().map(|r| (r.apps(), id));
        let endpoint =
            intake::endpoint(&manifest, &workload.ports, &self.settings.public_host, web);
        if workload.running() && self.ready(id, &manifest, &workload.ports).await {
            self.confirm(view, endpoint).await?;
            return Ok(false);
        }
        if started.elapsed() > self.settings.ready_timeout {
            let rule = format!(
                "workload did not answer within {} s",
                self.settings.ready_timeout.as_secs()
            );
            self.reject(view, Rejection::new(RejectReason::ManifestInvalid, rule))
                .await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// An active lease whose workload is missing or stopped: bring it back as confirmed.
    pub(super) async fn redeploy(
        &mut self,
        view: &LeaseView,
        workload: Option<&Workload>,
        all: &BTreeMap<U256, Workload>,
    ) -> Result<(), PassError> {
        let Some(bytes) = self.manifest_bytes(view).await? else {
            tracing::error!(lease = %view.id, "active lease without a stored manifest: cannot redeploy");
            return Ok(());
        };
        let Ok(manifest) = Manifest::parse(&bytes) else {
            tracing::error!(lease = %view.id, "stored manifest of an active lease no longer parses");
            return Ok(());
        };
        let secrets = match self.open_secrets(view, &bytes, &manifest).await? {
            Ok(s) => s,
            Err(r) => {
                tracing::error!(lease = %view.id, rule = %r.rule, "the active lease's secrets no longer open: cannot redeploy");
                return Ok(());
            }
        };
        match self.apply_state(view.id).await {
            ApplyState::Running => return Ok(()),
            ApplyState::Done(Err(e)) => {
                tracing::warn!(lease = %view.id, error = %e, "redeploy failed; trying again");
            }
            ApplyState::Done(Ok(())) | ApplyState::Idle => {}
        }
        let ports = match workload {
            Some(w) => w.ports.clone(),
            None => {
                // Keep the confirmed endpoint: reuse the ports it names when they are free.
                let used = self.used_ports(all);
                let mut ports =
                    intake::assign_ports(&manifest, &self.settings.policy.host_ports, &used, |p| {
                        self.bindable(p)
                    })
                    .unwrap_or_default();
                for ((svc, port), public) in ports.iter_mut() {
                    if let Some(p) =
                        confirmed_port(&view.endpoint, svc, *port, &self.settings.public_host)
                        && !used.contains(&p)
                    {
                        *public = p;
                    }
                }
                ports
            }
        };
        tracing::warn!(lease = %view.id, "active lease's workload is missing or stopped: (re)starting it");
        // Bytes of an earlier version (the update not delivered yet) run unlabelled, so that
        // the rollout replaces them once the new version arrives.
        let current = alloy::primitives::keccak256(&bytes) == view.manifest_hash;
        self.spawn_apply(
            view.id,
            &manifest,
            ports,
            current.then_some(view.manifest_version),
            secrets,
        );
        self.metrics.deployed();
        Ok(())
    }
}
