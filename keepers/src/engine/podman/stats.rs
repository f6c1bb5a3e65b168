//! Usage readings of a lease's containers: CPU time and memory from podman's stats, read per
//! container, and each container's cgroup path (asked once, remembered).

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use hyper::Method;
use serde::Deserialize;

use super::{PodmanEngine, url_encode};
use crate::{
    engine::{ContainerStats, EngineError},
    render::{LABEL_LEASE, LeaseKey},
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatsReport {
    #[serde(default)]
    stats: Vec<StatsEntry>,
}

#[derive(Debug, Deserialize)]
struct StatsEntry {
    #[serde(rename = "ContainerID")]
    container_id: String,
    #[serde(rename = "CPUNano", default)]
    cpu_nano: u64,
    #[serde(rename = "MemUsage", default)]
    mem_usage: u64,
}

impl PodmanEngine {
    /// The container's cgroup path, asked of podman once and remembered.
    async fn cgroup_path(&self, id: &str) -> Option<String> {
        if let Some(p) = self.paths().get(id) {
            return Some(p.clone());
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inspect {
            state: InspectState,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct InspectState {
            #[serde(default)]
            cgroup_path: String,
        }
        let path = format!("/containers/{}/json", url_encode(id));
        let (status, body) = self
            .call(Method::GET, &path, None, self.timeout)
            .await
            .ok()?;
        if !status.is_success() {
            return None;
        }
        let found = serde_json::from_slice::<Inspect>(&body)
            .ok()?
            .state
            .cgroup_path;
        (!found.is_empty()).then(|| {
            self.paths().insert(id.to_owned(), found.clone());
            found
        })
    }

    fn paths(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.cgroup_paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// CPU (cumulative ns) and memory (bytes) of every running container of `escrow`.
    pub async fn stats(
        &self,
        chain_id: u64,
        escrow: Address,
    ) -> Result<Vec<ContainerStats>, EngineError> {
        let filters: Vec<String> = LeaseKey::escrow_selector(chain_id, escrow)
            .split(',')
            .map(str::to_string)
            .collect();
        let filter = serde_json::json!({ "label": filters, "status": ["running"] });
        let containers = self.containers(&filter, false).await?;
        let mut leases = BTreeMap::new();
        for c in &containers {
            if let Some(lease) = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_LEASE))
                .and_then(|v| v.parse::<U256>().ok())
            {
                // Each start begins a new series (`name@start`): the time a container was
                // stopped (scaled to zero, crashed) bills no memory, and its CPU counter,
                // which starts again from zero, is never compared with the old one's.
                let name = c.names.first().unwrap_or(&c.id);
                leases.insert(c.id.clone(), (lease, format!("{name}@{}", c.started_at)));
            }
        }
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&String> = leases.keys().collect();
        let entries = match self.stats_of(&ids).await {
            Ok(entries) => entries,
            Err(e) => {
                // One container that cannot be read (it stopped, it crash-loops) fails the
                // whole request: read each alone, so the failure costs only its own sample.
                tracing::debug!(error = %e, "batched container stats failed; reading one by one");
                let mut entries = Vec::with_capacity(ids.len());
                for id in &ids {
                    match self.stats_of(&[*id]).await {
                        Ok(mut one) => entries.append(&mut one),
                        Err(e) => {
                            tracing::warn!(container = %id, error = %e, "container not sampled this round")
                        }
                    }
                }
                entries
            }
        };
        // Billed memory is the working set, read from the container's cgroup; podman's
        // MemUsage counts the page cache too. Where the cgroup cannot be read (the keeper on
        // another host), MemUsage it is, and the log says so.
        let live: std::collections::HashSet<&String> = leases.keys().collect();
        self.paths().retain(|id, _| live.contains(id));
        let mut out = Vec::with_capacity(entries.len());
        for s in entries {
            let Some((lease, name)) = leases.get(&s.container_id).cloned() else {
                continue;
            };
            let working_set = match self.cgroup_path(&s.container_id).await {
                Some(path) => crate::engine::cgroup::working_set(&self.cgroup_root, &path),
                None => None,
            };
            let memory_bytes = working_set.unwrap_or_else(|| {
                tracing::warn!(container = %name, "cgroup not readable: billing podman's MemUsage (includes page cache)");
                s.mem_usage
            });
            out.push(ContainerStats {
                lease,
                container: name,
                cpu_ns: s.cpu_nano,
                memory_bytes,
            });
        }
        Ok(out)
    }

    /// One stats request for `ids`.
    async fn stats_of(&self, ids: &[&String]) -> Result<Vec<StatsEntry>, EngineError> {
        let query: Vec<String> = ids.iter().map(|id| format!("containers={id}")).collect();
        let path = format!("/containers/stats?stream=false&{}", query.join("&"));
        let (status, body) = self.call(Method::GET, &path, None, self.timeout).await?;
        if !status.is_success() {
            return Err(EngineError::Unavailable(format!(
                "container stats: {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        let report: StatsReport = serde_json::from_slice(&body)
            .map_err(|e| EngineError::Unavailable(format!("container stats: bad JSON: {e}")))?;
        Ok(report.stats)
    }
}
