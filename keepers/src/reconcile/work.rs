//! The slow parts of a lease's work, run off the pass in a task per lease: manifest downloads
//! (a URL that never answers or trickles) and engine applies (image pulls, `kube play`). The
//! pass starts them, looks at their outcome when it comes round again, and moves on.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use alloy::{primitives::U256, transports::http::reqwest};
use tokio::task::JoinHandle;

use super::{PassError, Reconciler, used_ports};
use crate::{
    chain::LeaseView,
    engine::{EngineError, Workload},
    render::{Rendered, render},
};
use berth_protocol::manifest::{MAX_MANIFEST_BYTES, Manifest};

/// An engine apply running in its own task, with the public ports it will publish.
#[derive(Debug)]
pub(super) struct Applying {
    pub(super) task: JoinHandle<Result<(), EngineError>>,
    pub(super) ports: crate::render::PortMap,
}

/// Where a lease's apply stands.
#[derive(Debug)]
pub(super) enum ApplyState {
    /// None was started (or its outcome was already taken).
    Idle,
    /// Still running.
    Running,
    /// Finished with this outcome.
    Done(Result<(), EngineError>),
}

/// Engine applies (deploys, rollouts) running at once; the others wait for a turn.
pub const APPLY_CONCURRENCY: usize = 8;

/// How long a failed manifest download waits before it is tried again.
const DOWNLOAD_RETRY: Duration = Duration::from_secs(10);

impl Reconciler {
    /// Starts applying a lease's objects in a task of its own: an image pull or a slow
    /// engine holds up only this lease.
    pub(super) fn spawn_apply(
        &mut self,
        id: U256,
        manifest: &Manifest,
        ports: crate::render::PortMap,
        version: Option<u32>,
        secrets: Option<berth_protocol::secrets::SecretValues>,
    ) {
        let mut rendered = render(self.key(id), manifest, &ports).with_secrets(manifest, secrets);
        if let Some(v) = version {
            rendered = rendered.with_manifest_version(v);
        }
        self.spawn_engine(id, ports, rendered, false);
    }

    /// Starts replacing a lease's running objects with a new manifest version, in a task of
    /// its own; the volumes stay.
    pub(super) fn spawn_replace(
        &mut self,
        id: U256,
        manifest: &Manifest,
        ports: crate::render::PortMap,
        version: u32,
        secrets: Option<berth_protocol::secrets::SecretValues>,
    ) {
        let rendered = render(self.key(id), manifest, &ports)
            .with_manifest_version(version)
            .with_secrets(manifest, secrets);
        self.spawn_engine(id, ports, rendered, true);
    }

    /// Runs an engine apply (or, with `replace`, a replacement) of `rendered` in a task of
    /// its own, at most [`APPLY_CONCURRENCY`] at once: a thousand new leases queue here
    /// instead of piling onto the engine's socket and timing out there.
    fn spawn_engine(
        &mut self,
        id: U256,
        ports: crate::render::PortMap,
        rendered: Rendered,
        replace: bool,
    ) {
        let (engine, metrics) = (self.engine.clone(), self.metrics.clone());
        let permits = self.apply_permits.clone();
        let task = tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let timer = Instant::now();
            let (call, result) = if replace {
                ("replace", engine.replace(&rendered).await)
            } else {
                ("apply", engine.apply(&rendered).await)
            };
            metrics.engine_call(call, timer.elapsed());
            result
        });
        self.applying.insert(id, Applying { task, ports });
    }

    /// Where the lease's apply stands; a finished outcome is taken (returned once).
    pub(super) async fn apply_state(&mut self, id: U256) -> ApplyState {
        match self.applying.get(&id) {
            None => ApplyState::Idle,
            Some(a) if !a.task.is_finished() => ApplyState::Running,
            Some(_) => match self.applying.remove(&id) {
                Some(a) => ApplyState::Done(a.task.await.unwrap_or_else(|e| {
                    Err(EngineError::Unavailable(format!("apply task ended: {e}")))
                })),
                None => ApplyState::Idle,
            },
        }
    }

    /// Stops the lease's download and apply, if any.
    pub(super) fn abandon(&mut self, id: U256) {
        if let Some(a) = self.applying.remove(&id) {
            a.task.abort();
        }
        if let Some(d) = self.downloads.remove(&id) {
            d.abort();
        }
        self.download_retry.remove(&id);
    }

    /// Public ports held by workloads and by applies under way.
    pub(super) fn used_ports(&self, all: &BTreeMap<U256, Workload>) -> BTreeSet<u16> {
        let mut used = used_ports(all);
        used.extend(
            self.applying
                .values()
                .flat_map(|a| a.ports.values().copied()),
        );
        used
    }

    /// The stored manifest, or one downloaded from the lease's URI (then stored).
    pub(super) async fn manifest_bytes(
        &mut self,
        view: &LeaseView,
    ) -> Result<Option<Vec<u8>>, PassError> {
        let uri = view.manifest_uri.clone();
        if let Some(m) = self.store.manifest(view.id).await?
            // Bytes that do not hash to the lease's manifest are what the tenant delivered when
            // there is nowhere to download from (the caller checks the hash and says so); with
            // a URI they are an earlier version, and the new one is downloaded.
            && (uri.is_empty() || alloy::primitives::keccak256(&m.bytes) == view.manifest_hash)
        {
            return Ok(Some(m.bytes));
        }
        if uri.is_empty() || view.manifest_hash.is_zero() {
            return Ok(None);
        }
        if let Some(task) = self.downloads.get(&view.id) {
            if !task.is_finished() {
                return Ok(None);
            }
            let result = match self.downloads.remove(&view.id) {
                Some(task) => task
                    .await
                    .unwrap_or_else(|e| Err(format!("download task: {e}"))),
                None => return Ok(None),
            };
            return match result {
                Ok(bytes) => {
                    self.store
                        .put_manifest(view.id, &bytes, view.manifest_hash, &uri, None)
                        .await?;
                    Ok(Some(bytes))
                }
                Err(e) => {
                    tracing::warn!(lease = %view.id, uri = %uri.escape_debug(), error = %e, "manifest download failed");
                    self.download_retry
                        .insert(view.id, Instant::now() + DOWNLOAD_RETRY);
                    Ok(None)
                }
            };
        }
        if self
            .download_retry
            .get(&view.id)
            .is_some_and(|at| Instant::now() < *at)
        {
            return Ok(None);
        }
        // In a task of its own, bounded in time and size: a server that never answers, or
        // trickles, holds up only this lease.
        let (http, limit) = (self.http.clone(), self.settings.download_timeout);
        let task = tokio::spawn(async move {
            tokio::time::timeout(limit, download(&http, &uri))
                .await
                .unwrap_or_else(|_| Err(format!("no complete answer within {} s", limit.as_secs())))
        });
        self.downloads.insert(view.id, task);
        Ok(None)
    }
}

/// Downloads at most [`MAX_MANIFEST_BYTES`] + 1 bytes from an `http(s)` URI (one more than
/// allowed, so an oversized manifest is seen as such and rejected).
async fn download(http: &reqwest::Client, uri: &str) -> Result<Vec<u8>, String> {
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err("only http and https manifest URIs are supported".into());
    }
    let mut resp = http.get(uri).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        let room = MAX_MANIFEST_BYTES + 1 - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() > MAX_MANIFEST_BYTES {
            break;
        }
    }
    Ok(bytes)
}
