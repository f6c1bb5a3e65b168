//! Where workloads run: podman on one host, or a Kubernetes cluster. Both take the same
//! rendered objects ([`crate::render`]) and report what runs by the labels on them.

pub mod cgroup;
pub mod exec;
pub mod kubernetes;
pub mod logs;
pub mod podman;
pub mod restarts;

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};

use crate::render::{
    LABEL_LEASE, LABEL_MANIFEST_VERSION, LABEL_PORT_PREFIX, LABEL_SERVICE, LeaseKey, PortMap,
    Rendered,
};

pub use kubernetes::KubeEngine;
pub use podman::{PodNetwork, PodmanEngine};

/// What an engine runs for one lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Running state by manifest service.
    pub services: BTreeMap<String, bool>,
    /// Public ports, from the objects' labels.
    pub ports: PortMap,
    /// The manifest version every object runs (None: objects disagree or carry no version).
    pub manifest_version: Option<u32>,
    /// Services the keeper scaled to zero that are still stopped, with the id of their sleep
    /// (filled in by the reconciler from its store, not by the engine).
    pub asleep: BTreeMap<String, u64>,
    /// The image each service runs, pinned to the digest pulled (`repository@sha256:…`),
    /// where the engine records it.
    pub images: BTreeMap<String, String>,
}

impl Workload {
    /// Every service of the workload runs, or sleeps until a request wakes it.
    pub fn running(&self) -> bool {
        !self.services.is_empty()
            && self
                .services
                .iter()
                .all(|(name, r)| *r || self.asleep.contains_key(name))
    }

    /// Folds one labelled object (pod or deployment) into the workload of its lease.
    fn absorb(found: &mut BTreeMap<U256, Self>, labels: &BTreeMap<String, String>, running: bool) {
        let (Some(lease), Some(service)) = (
            labels.get(LABEL_LEASE).and_then(|v| v.parse::<U256>().ok()),
            labels.get(LABEL_SERVICE),
        ) else {
            return;
        };
        let w = found.entry(lease).or_default();
        let version = labels
            .get(LABEL_MANIFEST_VERSION)
            .and_then(|v| v.parse::<u32>().ok());
        w.manifest_version = if w.services.is_empty() || w.manifest_version == version {
            version
        } else {
            None
        };
        let entry = w.services.entry(service.clone()).or_insert(true);
        *entry &= running;
        if let Some(image) = labels.get(crate::render::LABEL_IMAGE) {
            w.images.insert(service.clone(), image.clone());
        }
        for (k, v) in labels {
            if let (Some(port), Ok(public)) = (k.strip_prefix(LABEL_PORT_PREFIX), v.parse::<u16>())
                && let Ok(port) = port.parse::<u16>()
            {
                w.ports.insert((service.clone(), port), public);
            }
        }
    }
}

/// One reading of one container of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    /// Lease.
    pub lease: U256,
    /// Container name (unique within the lease).
    pub container: String,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
}

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached or answered with a server error: try again later,
    /// and never take it as a reason to tear anything down.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The engine refused the objects themselves (an invalid object, an image that cannot
    /// be pulled): retrying the same objects will not help.
    #[error("engine refused the workload: {0}")]
    Refused(String),
    /// The host has no room for the workload (addresses, ports): the lease is rejected for
    /// capacity, not for its manifest.
    #[error("no room for the workload: {0}")]
    Full(String),
    /// An image cannot be pulled: no such image, or the registry refused the lease's
    /// credentials (or their absence).
    #[error("image unavailable: {0}")]
    ImageUnavailable(String),
    /// What was asked for does not exist (a service or replica the lease does not run).
    #[error("not found: {0}")]
    Missing(String),
}

/// The configured engine.
#[derive(Debug, Clone)]
pub enum Engine {
    /// podman's REST API on a unix socket.
    Podman(PodmanEngine),
    /// A Kubernetes API server through kube-rs.
    Kubernetes(KubeEngine),
}

impl Engine {
    /// Every workload of `escrow` on `chain_id`, by lease id.
    pub async fn list(
        &self,
        chain_id: u64,
        escrow: Address,
    ) -> Result<BTreeMap<U256, Workload>, EngineError> {
        match self {
            Self::Podman(e) => e.list(chain_id, escrow).await,
            Self::Kubernetes(e) => e.list(chain_id, escrow).await,
        }
    }

    /// Creates what is missing of a lease's objects and starts what stopped; running
    /// objects are left alone, so applying twice never duplicates a workload.
    pub async fn apply(&self, rendered: &Rendered) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.apply(rendered).await,
            Self::Kubernetes(e) => e.apply(rendered).await,
        }
    }

    /// Replaces a lease's running objects with `rendered` (a new manifest version), keeping
    /// its volumes.
    pub async fn replace(&self, rendered: &Rendered) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.replace(rendered).await,
            // Server-side apply updates every object in place.
            Self::Kubernetes(e) => e.apply(rendered).await,
        }
    }

    /// Stops a lease's workload (suspension): nothing runs, every object and volume stays,
    /// and `apply` starts it again.
    pub async fn stop(&self, key: &LeaseKey) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.stop(key).await,
            Self::Kubernetes(e) => e.stop(key).await,
        }
    }

    /// Scales one service of a lease to zero (it was idle): its objects and volumes stay.
    pub async fn stop_service(&self, key: &LeaseKey, service: &str) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.stop_service(key, service).await,
            Self::Kubernetes(e) => e.scale_service(key, service, 0).await,
        }
    }

    /// Starts one service scaled to zero again, with its manifest's `replicas`.
    pub async fn start_service(
        &self,
        key: &LeaseKey,
        service: &str,
        replicas: u32,
    ) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.start_service(key, service).await,
            Self::Kubernetes(e) => e.scale_service(key, service, replicas).await,
        }
    }

    /// Removes every object of a lease; a lease with nothing left is not an error.
    pub async fn delete(&self, key: &LeaseKey) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.delete(key).await,
            Self::Kubernetes(e) => e.delete(key).await,
        }
    }

    /// Removes a lease's workload and secrets but keeps its volumes (for [`Self::delete`]
    /// later); a lease with nothing left is not an error.
    pub async fn remove_workload(&self, key: &LeaseKey) -> Result<(), EngineError> {
        match self {
            Self::Podman(e) => e.remove_workload(key).await,
            Self::Kubernetes(e) => e.remove_workload(key).await,
        }
    }

    /// CPU and memory of every running container of `escrow` on `chain_id`.
    pub async fn stats(
        &self,
        chain_id: u64,
        escrow: Address,
    ) -> Result<Vec<ContainerStats>, EngineError> {
        match self {
            Self::Podman(e) => e.stats(chain_id, escrow).await,
            Self::Kubernetes(e) => e.stats(chain_id, escrow).await,
        }
    }

    /// The logs of one replica of one of the lease's services.
    pub async fn logs(
        &self,
        key: &LeaseKey,
        q: &logs::LogQuery,
    ) -> Result<logs::LogStream, EngineError> {
        match self {
            Self::Podman(e) => e.logs(key, q).await,
            Self::Kubernetes(e) => e.logs(key, q).await,
        }
    }

    /// Runs a command in one replica of one of the lease's services.
    pub async fn exec(
        &self,
        key: &LeaseKey,
        req: &exec::ExecRequest,
    ) -> Result<exec::ExecSession, EngineError> {
        match self {
            Self::Podman(e) => e.exec(key, req).await,
            Self::Kubernetes(e) => e.exec(key, req).await,
        }
    }

    /// Containers restarted since `watch` last looked.
    pub async fn restarts(
        &self,
        chain_id: u64,
        escrow: Address,
        watch: &mut restarts::RestartWatch,
    ) -> Result<Vec<restarts::Restart>, EngineError> {
        match self {
            Self::Podman(e) => e.restarts(chain_id, escrow, watch).await,
            Self::Kubernetes(e) => e.restarts(chain_id, escrow, watch).await,
        }
    }

    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Podman(_) => "podman",
            Self::Kubernetes(_) => "kubernetes",
        }
    }
}
