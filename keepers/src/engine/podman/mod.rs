//! The podman engine: plays the rendered objects through podman's libpod REST API on a unix
//! socket (`kube play`), finds pods by label, removes them by name.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::primitives::{Address, U256};
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, body::Bytes};
use serde::Deserialize;

mod exec;
mod images;
mod logs;
mod secret_files;
mod secrets;
mod stats;

use super::{EngineError, Workload};
use crate::render::{LABEL_LEASE, LABEL_SERVICE, LeaseKey, Rendered};

/// libpod API version in request paths (podman 4.0 and later).
const API: &str = "/v4.0.0/libpod";

/// A podman REST service on a unix socket.
#[derive(Debug, Clone)]
pub struct PodmanEngine {
    socket: PathBuf,
    timeout: Duration,
    pull_timeout: Duration,
    /// Where the host's cgroup filesystem is mounted (read for the memory working set).
    cgroup_root: PathBuf,
    /// Container id → its cgroup path, as podman reports it (ids never change).
    cgroup_paths: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// The network pods join, created (with `subnet`) before the first pod: podman's
    /// default kube network is a /24, 253 pods at most.
    network: Option<PodNetwork>,
    /// Whether the network is known to exist.
    network_ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where HTTP ports are published when a gateway fronts them (None: on every address,
    /// like TCP ports).
    http_host_ip: Option<String>,
    /// The memory-backed directory secret files are written in ([`secret_files`]).
    secret_files: PathBuf,
}

/// Where secret files go unless configured: under systemd's runtime directory, a tmpfs.
pub const DEFAULT_SECRET_FILES_DIR: &str = "/run/berth-keeper/secret-files";

pub use secret_files::{SecretFilesError, prepare as prepare_secret_files};

/// A podman network for the keeper's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// Its name.
    pub name: String,
    /// Its subnet (CIDR), used when the keeper creates it.
    pub subnet: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PodSummary {
    name: String,
    status: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSummary {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    /// Unix seconds of the container's last start.
    #[serde(default)]
    started_at: i64,
    /// A pod's infra container (no workload of its own).
    #[serde(default)]
    is_infra: bool,
}

impl PodmanEngine {
    /// An engine talking to the socket at `socket`; `timeout` bounds every call but image
    /// pulls, which `pull_timeout` bounds.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration, pull_timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
            pull_timeout,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_paths: std::sync::Arc::default(),
            network: None,
            network_ready: std::sync::Arc::default(),
            http_host_ip: None,
            secret_files: PathBuf::from(DEFAULT_SECRET_FILES_DIR),
        }
    }

    /// Writes secret files in `dir` (checked by [`prepare_secret_files`] first).
    pub fn with_secret_files(mut self, dir: impl Into<PathBuf>) -> Self {
        self.secret_files = dir.into();
        self
    }

    /// Publishes HTTP ports on `ip` only (the gateway's side of the host), so that no app is
    /// reachable around the gateway; TCP ports stay public.
    pub fn with_http_host_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.http_host_ip = Some(ip.to_string());
        self
    }

    /// Pods join `network` (created at the first deploy when missing) instead of podman's
    /// default kube network.
    pub fn with_network(mut self, network: PodNetwork) -> Self {
        self.network = Some(network);
        self
    }

    /// Creates the pods' network unless it exists; remembered once it does.
    async fn ensure_network(&self, network: &PodNetwork) -> Result<(), EngineError> {
        use std::sync::atomic::Ordering;
        if self.network_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let path = format!("/networks/{}/exists", url_encode(&network.name));
        let (status, _) = self.call(Method::GET, &path, None, self.timeout).await?;
        if status != StatusCode::NO_CONTENT {
            let body = serde_json::json!({
                "name": network.name,
                "driver": "bridge",
                "subnets": [{ "subnet": network.subnet }],
            });
            let (status, answer) = self
                .call(
                    Method::POST,
                    "/networks/create",
                    Some(body.to_string()),
                    self.timeout,
                )
                .await?;
            // 409: created meanwhile by another keeper or an operator.
            if !status.is_success() && status != StatusCode::CONFLICT {
                return Err(EngineError::Unavailable(format!(
                    "creating network {} ({}): {status}: {}",
                    network.name,
                    network.subnet,
                    String::from_utf8_lossy(&answer).trim()
                )));
            }
            tracing::info!(network = %network.name, subnet = %network.subnet, "pod network created");
        }
        self.network_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Containers matching `filters` (libpod's filter object); stopped ones too with `all`.
    async fn containers(
        &self,
        filters: &serde_json::Value,
        all: bool,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let path = format!(
            "/containers/json?all={all}&filters={}",
            url_encode(&filters.to_string())
        );
        let (status, body) = self.call(Method::GET, &path, None, self.timeout).await?;
        if !status.is_success() {
            return Err(EngineError::Unavailable(format!(
                "listing containers: {status}"
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| EngineError::Unavailable(format!("listing containers: bad JSON: {e}")))
    }

    /// Gives every container of the lease the CPU weight of its reservation: `kube play`
    /// leaves each at the default (1,024 shares) whatever it reserved, so under load a
    /// lease would not get the CPU it pays for.
    async fn set_cpu_weights(&self, rendered: &Rendered) -> Result<(), EngineError> {
        let mut millis_of = BTreeMap::new();
        for d in &rendered.deployments {
            let service = d.metadata.name.clone().unwrap_or_default();
            let cpu = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("cpu"))
                .and_then(|q| berth_protocol::manifest::quantity::cpu_millis(&q.0).ok());
            if let Some(cpu) = cpu {
                millis_of.insert(service, cpu);
            }
        }
        let filter = serde_json::json!({ "label": Self::lease_filters(&rendered.key) });
        for c in self.containers(&filter, true).await? {
            let Some(millis) = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE))
                .and_then(|s| millis_of.get(s))
            else {
                continue;
            };
            let shares = super::cgroup::cpu_shares(*millis);
            let body = serde_json::json!({ "cpu": { "shares": shares } }).to_string();
            let path = format!("/containers/{}/update", url_encode(&c.id));
            let (status, answer) = self
                .call(Method::POST, &path, Some(body), self.timeout)
                .await?;
            if !status.is_success() {
                return Err(EngineError::Unavailable(format!(
                    "setting the CPU weight of {}: {status}: {}",
                    c.id,
                    String::from_utf8_lossy(&answer).trim()
                )));
            }
        }
        Ok(())
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), EngineError> {
        self.call_with(method, path, body, timeout, None).await
    }

    /// [`Self::call`] with an `X-Registry-Auth` header (a pull with a registry login).
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        timeout: Duration,
        registry_auth: Option<String>,
    ) -> Result<(StatusCode, Bytes), EngineError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://podman{API}{path}"))
            .header(hyper::header::HOST, "podman");
        if let Some(auth) = registry_auth {
            req = req.header("X-Registry-Auth", auth);
        }
        if let Some(b) = &body {
            // Objects go as YAML (kube play), settings as JSON.
            let kind = if b.starts_with('{') {
                "application/json"
            } else {
                "application/yaml"
            };
            req = req.header(hyper::header::CONTENT_TYPE, kind);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| EngineError::Unavailable(format!("podman request {path}: {e}")))?;
        berth_runtime::http::unix_call(&self.socket, req, timeout)
            .await
            .map_err(|e| EngineError::Unavailable(format!("podman {e}")))
    }

    async fn pods(&self, filters: &[String]) -> Result<Vec<PodSummary>, EngineError> {
        let filter = serde_json::json!({ "label": filters }).to_string();
        let path = format!("/pods/json?filters={}", url_encode(&filter));
        let (status, body) = self.call(Method::GET, &path, None, self.timeout).await?;
        if !status.is_success() {
            return Err(EngineError::Unavailable(format!(
                "listing pods: {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| EngineError::Unavailable(format!("listing pods: bad JSON: {e}")))
    }

    /// Every workload of `escrow` on `chain_id`.
    pub async fn list(
        &self,
        chain_id: u64,
        escrow: Address,
    ) -> Result<BTreeMap<U256, Workload>, EngineError> {
        let filters: Vec<String> = LeaseKey::escrow_selector(chain_id, escrow)
            .split(',')
            .map(str::to_string)
            .collect();
        let mut found = BTreeMap::new();
        for pod in self.pods(&filters).await? {
            let labels = pod.labels.unwrap_or_default();
            Workload::absorb(&mut found, &labels, pod.status == "Running");
        }
        Ok(found)
    }

    fn lease_filters(key: &LeaseKey) -> Vec<String> {
        let mut f: Vec<String> = LeaseKey::escrow_selector(key.chain_id, key.escrow)
            .split(',')
            .map(str::to_string)
            .collect();
        f.push(format!("{LABEL_LEASE}={}", key.lease_id));
        f
    }

    /// Plays the deployments that have no pod yet and starts pods that stopped.
    pub async fn apply(&self, rendered: &Rendered) -> Result<(), EngineError> {
        let existing = self.pods(&Self::lease_filters(&rendered.key)).await?;
        let ns = rendered.key.namespace();
        let mut missing = rendered.clone();
        missing.deployments.retain(|d| {
            let name = format!("{ns}-{}", d.metadata.name.as_deref().unwrap_or_default());
            !existing
                .iter()
                .any(|p| p.name.starts_with(&format!("{name}-pod")))
        });
        // First, so that a stopped pod finds its files (gone with the tmpfs after a reboot).
        self.put_secret_files(rendered).await?;
        self.start_stopped(&existing).await?;
        if missing.deployments.is_empty() {
            return Ok(());
        }
        let missing = self.pull_images(&missing).await?;
        self.put_secret(rendered).await?;
        let yaml = missing
            .to_podman_yaml(self.http_host_ip.as_deref(), &self.secret_files)
            .map_err(|e| EngineError::Refused(format!("rendering YAML: {e}")))?;
        let mut play = String::from("/play/kube?start=true");
        if let Some(network) = &self.network {
            self.ensure_network(network).await?;
            play.push_str(&format!("&network={}", url_encode(&network.name)));
        }
        let (status, body) = self
            .call(Method::POST, &play, Some(yaml), self.timeout)
            .await?;
        let verdict = play_verdict(status, &body);
        if verdict.is_ok() {
            return self.set_cpu_weights(&missing).await;
        }
        // A half-created pod must not survive as a duplicate candidate: remove the lease's
        // pods and report; a refusal rejects the lease, an outage is tried again.
        let _ = self.delete(&rendered.key).await;
        verdict
    }

    /// Removes every pod of the lease (its containers with it). The lease is over on chain, so
    /// its containers get SIGKILL rather than a grace period: teardown takes well under a
    /// second even for a process that ignores SIGTERM as PID 1.
    pub async fn delete(&self, key: &LeaseKey) -> Result<(), EngineError> {
        self.remove_pods(key).await?;
        self.delete_volumes(key).await?;
        self.delete_secret_files(key).await?;
        self.delete_secret(key).await
    }

    /// Removes the lease's pods and secrets; its named volumes stay.
    pub async fn remove_workload(&self, key: &LeaseKey) -> Result<(), EngineError> {
        self.remove_pods(key).await?;
        self.delete_secret_files(key).await?;
        self.delete_secret(key).await
    }

    /// Replaces the lease's pods with `rendered`; named volumes outlive their pods.
    pub async fn replace(&self, rendered: &Rendered) -> Result<(), EngineError> {
        self.remove_pods(&rendered.key).await?;
        self.apply(rendered).await
    }

    /// Stops the lease's running pods (SIGTERM, then SIGKILL after 10 s); they and their
    /// volumes stay for `apply` to start again.
    pub async fn stop(&self, key: &LeaseKey) -> Result<(), EngineError> {
        self.stop_pods(Self::lease_filters(key), Duration::from_secs(10))
            .await
    }

    /// Scales one service to zero: stops its pods (SIGTERM, SIGKILL after 2 s, as an idle
    /// app has nothing to finish). Its pods go whole: `kube play` pods stop their infra
    /// container when the last app container exits anyway (exit policy `stop`).
    /// [`Self::start_service`] starts them again.
    pub async fn stop_service(&self, key: &LeaseKey, service: &str) -> Result<(), EngineError> {
        let mut filters = Self::lease_filters(key);
        filters.push(format!("{LABEL_SERVICE}={service}"));
        self.stop_pods(filters, Duration::from_secs(2)).await
    }

    /// Starts one service's stopped pods.
    pub async fn start_service(&self, key: &LeaseKey, service: &str) -> Result<(), EngineError> {
        let mut filters = Self::lease_filters(key);
        filters.push(format!("{LABEL_SERVICE}={service}"));
        let pods = self.pods(&filters).await?;
        if pods.is_empty() {
            return Err(EngineError::Refused(format!(
                "service {service} of lease {} has no pod",
                key.lease_id
            )));
        }
        self.start_stopped(&pods).await
    }

    /// Starts every pod of `pods` that does not run.
    async fn start_stopped(&self, pods: &[PodSummary]) -> Result<(), EngineError> {
        for pod in pods.iter().filter(|p| p.status != "Running") {
            let path = format!("/pods/{}/start", url_encode(&pod.name));
            let (status, body) = self.call(Method::POST, &path, None, self.timeout).await?;
            if !status.is_success() && status != StatusCode::NOT_MODIFIED {
                return Err(EngineError::Unavailable(format!(
                    "starting pod {}: {status}: {}",
                    pod.name,
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        Ok(())
    }

    async fn stop_pods(&self, filters: Vec<String>, grace: Duration) -> Result<(), EngineError> {
        for pod in self.pods(&filters).await? {
            if pod.status != "Running" && pod.status != "Degraded" {
                continue;
            }
            let path = format!("/pods/{}/stop?t={}", url_encode(&pod.name), grace.as_secs());
            let (status, body) = self
                .call(Method::POST, &path, None, self.timeout + grace)
                .await?;
            if !status.is_success() && status != StatusCode::NOT_MODIFIED {
                return Err(EngineError::Unavailable(format!(
                    "stopping pod {}: {status}: {}",
                    pod.name,
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        Ok(())
    }

    /// Removes every pod of the lease, its containers with it, keeping its volumes.
    async fn remove_pods(&self, key: &LeaseKey) -> Result<(), EngineError> {
        for pod in self.pods(&Self::lease_filters(key)).await? {
            if pod.status == "Running" || pod.status == "Degraded" {
                let kill = format!("/pods/{}/kill?signal=SIGKILL", url_encode(&pod.name));
                // A pod that stopped meanwhile answers 409; the removal below settles it.
                self.call(Method::POST, &kill, None, self.timeout).await?;
            }
            let path = format!("/pods/{}?force=true", url_encode(&pod.name));
            let (status, body) = self.call(Method::DELETE, &path, None, self.timeout).await?;
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(EngineError::Unavailable(format!(
                    "removing pod {}: {status}: {}",
                    pod.name,
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        Ok(())
    }

    /// Removes the lease's volumes (they outlive their pods in podman).
    async fn delete_volumes(&self, key: &LeaseKey) -> Result<(), EngineError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct VolumeSummary {
            name: String,
        }
        let (status, body) = self
            .call(Method::GET, "/volumes/json", None, self.timeout)
            .await?;
        if !status.is_success() {
            return Err(EngineError::Unavailable(format!(
                "listing volumes: {status}"
            )));
        }
        let volumes: Vec<VolumeSummary> = serde_json::from_slice(&body)
            .map_err(|e| EngineError::Unavailable(format!("listing volumes: bad JSON: {e}")))?;
        let prefix = key.volume_prefix();
        for v in volumes.iter().filter(|v| v.name.starts_with(&prefix)) {
            let path = format!("/volumes/{}?force=true", url_encode(&v.name));
            let (status, body) = self.call(Method::DELETE, &path, None, self.timeout).await?;
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(EngineError::Unavailable(format!(
                    "removing volume {}: {status}: {}",
                    v.name,
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        Ok(())
    }
}

/// What `kube play`'s answer means. podman answers 200 even when a container of the pod
/// could not be created or started (an invalid value, a port another process holds, a
/// mount it refuses) and lists why in `ContainerErrors`: that, like a 4xx, is the
/// workload's fault and final for these objects; only a 5xx is the engine's.
fn play_verdict(status: StatusCode, body: &[u8]) -> Result<(), EngineError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct PlayReport {
        #[serde(default)]
        pods: Vec<PlayPod>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct PlayPod {
        #[serde(default)]
        container_errors: Option<Vec<String>>,
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if status.is_server_error() {
        return Err(EngineError::Unavailable(format!(
            "kube play: {status}: {text}"
        )));
    }
    if status.is_client_error() || !status.is_success() {
        return Err(EngineError::Refused(format!("kube play: {status}: {text}")));
    }
    let errors: Vec<String> = serde_json::from_slice::<PlayReport>(body)
        .map(|r| {
            r.pods
                .into_iter()
                .flat_map(|p| p.container_errors.unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let joined = errors.join("; ");
    if errors.is_empty() {
        Ok(())
    } else if joined.contains("IPAM error") || joined.contains("failed to find free IP") {
        // The host's network is full: the provider's capacity, not the tenant's manifest.
        Err(EngineError::Full(format!(
            "kube play: the pod network has no free address: {joined}"
        )))
    } else {
        Err(EngineError::Refused(format!(
            "kube play: a container failed: {joined}"
        )))
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
