//! The Kubernetes engine: server-side apply of the rendered objects with kube-rs, deletion of
//! the lease's namespace (which takes every object of the lease with it).

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment, core::v1::Namespace, core::v1::PersistentVolumeClaim,
        core::v1::Secret, core::v1::Service, networking::v1::NetworkPolicy,
    },
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{ContainerStats, EngineError, Workload};
use crate::render::{GatewayPeers, LeaseKey, Rendered};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "berth-keeper";

/// A Kubernetes cluster reached through kube-rs.
#[derive(Clone)]
pub struct KubeEngine {
    client: Client,
    /// Per container: when it was last read and the CPU time integrated so far (the metrics
    /// API gives CPU rates, not counters).
    cpu: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>>,
    /// With a gateway: who may reach the HTTP ports (no NodePort for them).
    gateway: Option<GatewayPeers>,
}

impl std::fmt::Debug for KubeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEngine").finish_non_exhaustive()
    }
}

fn classify(what: &str, e: &kube::Error) -> EngineError {
    match e {
        // The API server understood and refused the object: fixing it is not a retry away.
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429 => {
            EngineError::Refused(format!("{what}: {e}"))
        }
        _ => EngineError::Unavailable(format!("{what}: {e}")),
    }
}

impl KubeEngine {
    /// An engine using `client` (from a kubeconfig, in-cluster settings, or a test service).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cpu: std::sync::Arc::default(),
            gateway: None,
        }
    }

    /// Puts HTTP ports behind the gateway: no NodePort, and the lease's NetworkPolicy admits
    /// only `peers` to them ([`Rendered::behind_gateway`]).
    pub fn with_gateway(mut self, peers: GatewayPeers) -> Self {
        self.gateway = Some(peers);
        self
    }

    /// An engine from the environment's kubeconfig or in-cluster service account.
    pub async fn from_env() -> Result<Self, EngineError> {
        use_ring_for_tls();
        let client = Client::try_default()
            .await
            .map_err(|e| EngineError::Unavailable(format!("kubeconfig: {e}")))?;
        Ok(Self::new(client))
    }

    /// Every workload of `escrow` on `chain_id`: its deployments, by their labels.
    pub async fn list(
        &self,
        chain_id: u64,
        escrow: Address,
    ) -> Result<BTreeMap<U256, Workload>, EngineError> {
        let api: Api<Deployment> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&LeaseKey::escrow_selector(chain_id, escrow));
        let list = api
            .list(&lp)
            .await
            .map_err(|e| classify("listing deployments", &e))?;
        let mut found = BTreeMap::new();
        for d in list.items {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            // Scaled to zero (a suspension) is stopped, not running.
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            let labels = d.metadata.labels.clone().unwrap_or_default();
            Workload::absorb(&mut found, &labels, want > 0 && ready >= want);
        }
        Ok(found)
    }

    async fn apply_one<K>(&self, api: Api<K>, obj: &K) -> Result<(), EngineError>
    where
        K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &pp, &Patch::Apply(obj))
            .await
            .map(|_| ())
            .map_err(|e| {
                classify(
                    &format!("applying {} {name}", K::kind(&Default::default())),
                    &e,
                )
            })
    }

    fn namespaced<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Server-side applies the namespace, then the policy, services and deployments in it.
    /// Applying the same objects again changes nothing.
    pub async fn apply(&self, r: &Rendered) -> Result<(), EngineError> {
        let isolated;
        let r = match &self.gateway {
            Some(peers) => {
                isolated = r.clone().behind_gateway(peers);
                &isolated
            }
            None => r,
        };
        let ns = r.key.namespace();
        self.apply_one(Api::<Namespace>::all(self.client.clone()), &r.namespace)
            .await?;
        self.apply_one(self.namespaced::<NetworkPolicy>(&ns), &r.network_policy)
            .await?;
        for secret in r.kube_secret().into_iter().chain(r.kube_pull_secrets()) {
            self.apply_one(self.namespaced::<Secret>(&ns), &secret)
                .await?;
        }
        for claim in &r.claims {
            self.apply_one(self.namespaced::<PersistentVolumeClaim>(&ns), claim)
                .await?;
        }
        for s in &r.services {
            self.apply_one(self.namespaced::<Service>(&ns), s).await?;
        }
        for d in &r.deployments {
            self.apply_one(self.namespaced::<Deployment>(&ns), d)
                .await?;
        }
        Ok(())
    }

    /// CPU and memory of every container of `escrow`, from the metrics API
    /// (`metrics.k8s.io/v1beta1` PodMetrics). CPU rates are integrated over the time between
    /// readings into a cumulative counter per container.
    pub async fn stats(
        &self,
        chain_id: u64,
        escrow: Address,
    ) -> Result<Vec<ContainerStats>, EngineError> {
        let selector = LeaseKey::escrow_selector(chain_id, escrow);
        let url = format!(
            "/apis/metrics.k8s.io/v1beta1/pods?labelSelector={}",
            selector
                .replace('/', "%2F")
                .replace('=', "%3D")
                .replace(',', "%2C")
        );
        let req = http::Request::get(url)
            .body(Vec::new())
            .map_err(|e| EngineError::Unavailable(format!("metrics request: {e}")))?;
        let list: serde_json::Value = self
            .client
            .request(req)
            .await
            .map_err(|e| classify("reading pod metrics", &e))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut out = Vec::new();
        let mut cpu = self
            .cpu
            .lock()
            .map_err(|_| EngineError::Unavailable("metrics state poisoned".into()))?;
        for pod in list["items"].as_array().into_iter().flatten() {
            let Some(lease) = pod["metadata"]["labels"][crate::render::LABEL_LEASE]
                .as_str()
                .and_then(|v| v.parse::<U256>().ok())
            else {
                continue;
            };
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            for c in pod["containers"].as_array().into_iter().flatten() {
                let name = format!("{pod_name}/{}", c["name"].as_str().unwrap_or_default());
                let nanocores = c["usage"]["cpu"].as_str().and_then(nanocores).unwrap_or(0);
                let memory = c["usage"]["memory"]
                    .as_str()
                    .and_then(|m| berth_protocol::manifest::quantity::bytes(m).ok())
                    .unwrap_or(0);
                let entry = cpu.entry(name.clone()).or_insert((now_ms, 0));
                let elapsed_ms = now_ms.saturating_sub(entry.0);
                entry.1 += (u128::from(nanocores) * u128::from(elapsed_ms) / 1000) as u64;
                entry.0 = now_ms;
                out.push(ContainerStats {
                    lease,
                    container: name,
                    cpu_ns: entry.1,
                    memory_bytes: memory,
                });
            }
        }
        Ok(out)
    }

    /// Scales every deployment of the lease to zero; its objects and volumes stay, and
    /// `apply` scales them back.
    pub async fn stop(&self, key: &LeaseKey) -> Result<(), EngineError> {
        let api = self.namespaced::<Deployment>(&key.namespace());
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(classify("listing deployments", &e)),
        };
        let patch = serde_json::json!({ "spec": { "replicas": 0 } });
        for d in list.items {
            let name = d.metadata.name.unwrap_or_default();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| classify(&format!("scaling deployment {name} to zero"), &e))?;
        }
        Ok(())
    }

    /// Scales one service's deployment to `replicas` (0: scale to zero).
    pub async fn scale_service(
        &self,
        key: &LeaseKey,
        service: &str,
        replicas: u32,
    ) -> Result<(), EngineError> {
        let api = self.namespaced::<Deployment>(&key.namespace());
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        api.patch(service, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| classify(&format!("scaling deployment {service} to {replicas}"), &e))
    }

    /// Deletes the lease's Deployments (their pods with them) and Secrets; the namespace and
    /// its PersistentVolumeClaims stay until [`Self::delete`].
    pub async fn remove_workload(&self, key: &LeaseKey) -> Result<(), EngineError> {
        let ns = key.namespace();
        let selector = format!("{}={}", crate::render::LABEL_LEASE, key.lease_id);
        let lp = ListParams::default().labels(&selector);
        let dp = DeleteParams::background();
        let gone = |e: kube::Error, what: &str| match e {
            kube::Error::Api(s) if s.code == 404 => Ok(()),
            e => Err(classify(what, &e)),
        };
        if let Err(e) = self
            .namespaced::<Deployment>(&ns)
            .delete_collection(&dp, &lp)
            .await
        {
            gone(e, "deleting deployments")?;
        }
        if let Err(e) = self
            .namespaced::<k8s_openapi::api::core::v1::Secret>(&ns)
            .delete_collection(&dp, &lp)
            .await
        {
            gone(e, "deleting secrets")?;
        }
        Ok(())
    }

    /// Deletes the lease's namespace; every object of the lease goes with it.
    pub async fn delete(&self, key: &LeaseKey) -> Result<(), EngineError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api
            .delete(&key.namespace(), &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(classify("deleting namespace", &e)),
        }
    }
}

/// kube-rs builds its TLS client with rustls' process-wide crypto provider, and the keeper
/// links two (ring for kube, aws-lc-rs for the chain's HTTP client), so rustls cannot pick one
/// by itself and would panic: ring is installed as the default (once; later calls are no-ops).
pub(crate) fn use_ring_for_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A CPU quantity of the metrics API (`250000000n`, `1500u`, `12m`, `2`) in nanocores.
fn nanocores(q: &str) -> Option<u64> {
    let (digits, scale) = if let Some(n) = q.strip_suffix('n') {
        (n, 1)
    } else if let Some(u) = q.strip_suffix('u') {
        (u, 1_000)
    } else if let Some(m) = q.strip_suffix('m') {
        (m, 1_000_000)
    } else {
        (q, 1_000_000_000)
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

mod exec;
mod logs;

#[cfg(test)]
mod tests;
