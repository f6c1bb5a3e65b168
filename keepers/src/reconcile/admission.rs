//! A pending lease's admission: runway and capacity, whether its ports are free and its
//! workload answers, and the transactions that settle it (confirm, or reject with a refund).

use std::{collections::BTreeMap, time::Duration};

use alloy::{eips::BlockId, primitives::U256, sol_types::SolCall};
use berth_bindings::{LeaseEscrow, LeaseStatus, RejectReason};

use super::{PassError, Reconciler};
use crate::{
    chain::LeaseView,
    engine::{Engine, Workload},
    intake::Rejection,
    signer::{TxJob, TxOutcome},
};
use berth_protocol::manifest::Manifest;

impl Reconciler {
    /// Whether a public port is free on this host: podman publishes ports here, so a port
    /// another process holds would fail the pod; the cluster owns NodePorts.
    pub(super) fn bindable(&self, port: u16) -> bool {
        match self.engine {
            Engine::Podman(_) => std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
            Engine::Kubernetes(_) => true,
        }
    }

    /// The lease's manifest `bytes` checked against its hash, its reservation and this
    /// keeper's policy.
    pub(super) fn check_manifest(
        &self,
        view: &LeaseView,
        bytes: &[u8],
    ) -> Result<Manifest, Rejection> {
        crate::intake::check_manifest(
            bytes,
            view.manifest_hash,
            view.reservation,
            &self.settings.policy,
        )
    }

    /// Runway and cluster capacity for a new lease.
    pub(super) async fn admit(
        &self,
        view: &LeaseView,
        all: &BTreeMap<U256, Workload>,
        views: &BTreeMap<U256, LeaseView>,
    ) -> Result<Result<(), Rejection>, PassError> {
        let now = self.chain.now().await?;
        let depletion = self.chain.depletion_time(view.id).await?;
        let min = self
            .settings
            .min_runway
            .as_secs()
            .max(self.escrow.min_runway);
        if depletion < now.saturating_add(min) {
            return Ok(Err(Rejection::new(
                RejectReason::InsufficientRunway,
                format!(
                    "runway {} s is below the minimum {min} s",
                    depletion.saturating_sub(now)
                ),
            )));
        }
        let (mut cpu, mut mem) = (
            u64::from(view.reservation.cpu_millis),
            u64::from(view.reservation.memory_mib),
        );
        for id in all.keys() {
            if let Some(v) = views.get(id) {
                cpu += u64::from(v.reservation.cpu_millis);
                mem += u64::from(v.reservation.memory_mib);
            }
        }
        for (what, need, max) in [
            ("cpu millicores", cpu, self.settings.max_cpu_millis),
            ("memory MiB", mem, self.settings.max_memory_mib),
        ] {
            if let Some(max) = max.filter(|m| need > *m) {
                return Ok(Err(Rejection::new(
                    RejectReason::CapacityUnavailable,
                    format!(
                        "{what}: running leases and this one need {need}, the cluster offers {max}"
                    ),
                )));
            }
        }
        Ok(Ok(()))
    }

    /// Probes every public port: an HTTP answer (any status) or an accepted TCP connection.
    pub(super) async fn ready(
        &self,
        lease: U256,
        manifest: &Manifest,
        ports: &crate::render::PortMap,
    ) -> bool {
        for (name, s) in &manifest.services {
            for p in &s.ports {
                let Some(public) = ports.get(&(name.clone(), p.port)) else {
                    continue;
                };
                // HTTP ports behind the gateway are checked where the gateway reaches them.
                let addr = match (&self.settings.gateway, p.expose) {
                    (Some(g), berth_protocol::manifest::Expose::Http) => {
                        g.upstream.addr(&self.key(lease), name, p.port, *public)
                    }
                    _ => format!("{}:{public}", self.settings.public_host),
                };
                let ok = match p.expose {
                    berth_protocol::manifest::Expose::Http => self
                        .http
                        .get(format!("http://{addr}/"))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok(),
                    berth_protocol::manifest::Expose::Tcp => tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(&addr),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok()),
                    berth_protocol::manifest::Expose::None => true,
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }

    /// Re-reads the lease at the latest block; true when it is still pending.
    pub(super) async fn still_pending(&self, id: U256) -> Result<bool, PassError> {
        Ok(self.chain.lease(id, BlockId::latest()).await?.status == LeaseStatus::Pending)
    }

    pub(super) async fn confirm(
        &mut self,
        view: &LeaseView,
        endpoint: String,
    ) -> Result<(), PassError> {
        if !self.still_pending(view.id).await? {
            return Ok(());
        }
        let input = LeaseEscrow::confirmLeaseCall {
            leaseId: view.id,
            endpoint: endpoint.clone(),
        }
        .abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: view.id,
                action: "confirm",
                detail: endpoint.clone(),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.confirmed();
            tracing::info!(lease = %view.id, %endpoint, %tx, "lease confirmed");
        }
        Ok(())
    }

    /// Rejects on chain (a full refund for the tenant) and removes anything deployed.
    pub(super) async fn reject(&mut self, view: &LeaseView, r: Rejection) -> Result<(), PassError> {
        if !self.still_pending(view.id).await? {
            return Ok(());
        }
        self.abandon(view.id);
        self.engine.delete(&self.key(view.id)).await?;
        let reason_name = serde_json::to_value(r.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let input = LeaseEscrow::rejectLeaseCall {
            leaseId: view.id,
            reason: r.reason as u8,
        }
        .abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: view.id,
                action: "reject",
                detail: format!("{reason_name}: {}", r.rule),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        let rule = crate::store::db_text(&r.rule).into_owned();
        self.note(
            view.id,
            "rejected",
            "rejected".into(),
            serde_json::json!({ "reason": reason_name, "rule": rule }),
        )
        .await;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.rejected(&reason_name);
            tracing::warn!(lease = %view.id, reason = %reason_name, rule = %r.rule, %tx, "lease rejected");
        }
        Ok(())
    }
}
