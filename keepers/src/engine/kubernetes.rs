//! The Kubernetes engine: server-side apply of the rendered objects with kube-rs, deletion of
//! the lease's namespace (which takes every object of the lease with it).

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment, core::v1::Namespace, core::v1::Secret, core::v1::Service,
        networking::v1::NetworkPolicy,
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

#[cfg(test)]
mod tests {
    //! kube-rs's mock API server pattern: the client talks to a `tower_test` service and the
    //! test plays the API server, asserting every request exactly.

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock::{Handle, pair};

    use berth_protocol::manifest::Manifest;

    use super::*;
    use crate::render::{PortMap, render};

    const NS: &str = "berth-31337-abababab-7";

    fn key() -> LeaseKey {
        LeaseKey {
            chain_id: 31337,
            escrow: Address::repeat_byte(0xab),
            lease_id: U256::from(7),
        }
    }

    fn engine() -> (KubeEngine, Handle<Request<Body>, Response<Body>>) {
        let (service, handle) = pair::<Request<Body>, Response<Body>>();
        (KubeEngine::new(Client::new(service, "default")), handle)
    }

    fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }

    /// Takes the next request; returns "METHOD path?query", its content type and JSON body.
    async fn next(
        handle: &mut Handle<Request<Body>, Response<Body>>,
    ) -> (
        String,
        String,
        Value,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (req, send) = handle.next_request().await.expect("a request");
        let line = format!("{} {}", req.method(), req.uri());
        let ctype = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (line, ctype, body, send)
    }

    #[tokio::test]
    async fn apply_is_a_server_side_apply_of_each_object_in_order() {
        let (engine, mut handle) = engine();
        let manifest = Manifest::parse(include_bytes!("../../../examples/hello/manifest.yaml"))
            .expect("parses");
        let rendered = render(
            key(),
            &manifest,
            &PortMap::from([(("web".into(), 8080), 30001)]),
        );
        let server = tokio::spawn(async move {
            let q = "force=true&fieldManager=berth-keeper";
            let expected = [
                (format!("PATCH /api/v1/namespaces/{NS}?&{q}"), "Namespace"),
                (
                    format!(
                        "PATCH /apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/isolate-lease?&{q}"
                    ),
                    "NetworkPolicy",
                ),
                (
                    format!("PATCH /api/v1/namespaces/{NS}/services/web?&{q}"),
                    "Service",
                ),
                (
                    format!("PATCH /apis/apps/v1/namespaces/{NS}/deployments/web?&{q}"),
                    "Deployment",
                ),
            ];
            for (line, kind) in expected {
                let (got, ctype, body, send) = next(&mut handle).await;
                assert_eq!(got, line);
                assert_eq!(ctype, "application/apply-patch+yaml");
                assert_eq!(body["kind"], kind);
                assert_eq!(body["metadata"]["labels"]["berth.dev/lease-id"], "7");
                if kind == "Deployment" {
                    let c = &body["spec"]["template"]["spec"]["containers"][0];
                    assert_eq!(c["image"], "localhost/berth-hello:latest");
                    assert_eq!(
                        c["resources"]["limits"],
                        json!({"cpu": "500m", "memory": "256Mi"})
                    );
                    assert_eq!(c["securityContext"]["privileged"], false);
                }
                if kind == "Service" {
                    assert_eq!(body["spec"]["ports"][0]["nodePort"], 30001);
                }
                respond(send, 200, &body);
            }
        });
        engine.apply(&rendered).await.expect("apply");
        server.await.expect("server assertions");
    }

    #[tokio::test]
    async fn behind_the_gateway_http_ports_have_no_node_port_and_admit_only_it() {
        let (engine, mut handle) = engine();
        let engine = engine.with_gateway(GatewayPeers {
            namespace: Some("berth-system".into()),
            cidrs: vec![],
        });
        let manifest = Manifest::parse(include_bytes!("../../../examples/hello/manifest.yaml"))
            .expect("parses");
        let rendered = render(
            key(),
            &manifest,
            &PortMap::from([(("web".into(), 8080), 30001)]),
        );
        let server = tokio::spawn(async move {
            for kind in ["Namespace", "NetworkPolicy", "Service", "Deployment"] {
                let (_, _, body, send) = next(&mut handle).await;
                assert_eq!(body["kind"], kind);
                if kind == "NetworkPolicy" {
                    let rules = body["spec"]["ingress"].as_array().expect("rules");
                    assert_eq!(rules.len(), 2, "own pods + the gateway: {rules:?}");
                    assert_eq!(
                        rules[1]["ports"],
                        json!([{"port": 8080, "protocol": "TCP"}])
                    );
                    assert_eq!(
                        rules[1]["from"],
                        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "berth-system"}}}])
                    );
                }
                if kind == "Service" {
                    assert_eq!(body["spec"]["type"], "ClusterIP");
                    assert!(body["spec"]["ports"][0].get("nodePort").is_none());
                }
                respond(send, 200, &body);
            }
        });
        engine.apply(&rendered).await.expect("apply");
        server.await.expect("server assertions");
    }

    #[tokio::test]
    async fn secrets_are_applied_as_secrets_before_the_pods_that_read_them() {
        let (engine, mut handle) = engine();
        let manifest = Manifest::parse(
            b"version: 1\nsecrets: {key_version: 1, names: [db, login], sealed: QUJD}\nservices:\n  web:\n    image: ghcr.io/o/app:v1\n    pull_secret: login\n    secret_env: {DB_PASSWORD: db}\n    resources: {cpu: 100m, memory: 16Mi}\n",
        )
        .expect("parses");
        let values = berth_protocol::secrets::SecretValues(
            [
                ("db".to_owned(), "pw-1".to_owned()),
                ("login".to_owned(), "ci:pw-2".to_owned()),
            ]
            .into(),
        );
        let rendered =
            render(key(), &manifest, &PortMap::new()).with_secrets(&manifest, Some(values));
        assert!(
            !format!("{rendered:?}").contains("pw-1"),
            "Debug shows no value"
        );
        let server = tokio::spawn(async move {
            let (_, _, ns, send) = next(&mut handle).await;
            respond(send, 200, &ns);
            let (_, _, policy, send) = next(&mut handle).await;
            respond(send, 200, &policy);
            let (line, _, secret, send) = next(&mut handle).await;
            assert!(line.contains("/secrets/berth-secrets?"), "{line}");
            assert_eq!(secret["stringData"]["db"], "pw-1");
            respond(send, 200, &secret);
            let (line, _, pull, send) = next(&mut handle).await;
            assert!(line.contains("/secrets/berth-pull-login?"), "{line}");
            assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
            respond(send, 200, &pull);
            let (_, _, deployment, send) = next(&mut handle).await;
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(
                pod["imagePullSecrets"],
                json!([{"name": "berth-pull-login"}])
            );
            let c = &pod["containers"][0];
            assert_eq!(c["imagePullPolicy"], "Always");
            assert_eq!(
                c["env"][0]["valueFrom"]["secretKeyRef"],
                json!({"name": "berth-secrets", "key": "db", "optional": false})
            );
            respond(send, 200, &deployment);
        });
        engine.apply(&rendered).await.expect("apply");
        server.await.expect("server assertions");
    }

    #[tokio::test]
    async fn stop_scales_every_deployment_of_the_lease_to_zero() {
        let (engine, mut handle) = engine();
        let server = tokio::spawn(async move {
            let (line, _, _, send) = next(&mut handle).await;
            assert_eq!(
                line,
                format!("GET /apis/apps/v1/namespaces/{NS}/deployments?")
            );
            respond(
                send,
                200,
                &json!({
                    "apiVersion": "apps/v1",
                    "kind": "DeploymentList",
                    "metadata": {},
                    "items": [
                        {"metadata": {"name": "web", "namespace": NS}, "spec": {"replicas": 1, "selector": {}, "template": {}}},
                        {"metadata": {"name": "worker", "namespace": NS}, "spec": {"replicas": 2, "selector": {}, "template": {}}}
                    ]
                }),
            );
            for name in ["web", "worker"] {
                let (line, ctype, body, send) = next(&mut handle).await;
                assert_eq!(
                    line,
                    format!("PATCH /apis/apps/v1/namespaces/{NS}/deployments/{name}?")
                );
                assert_eq!(ctype, "application/merge-patch+json");
                assert_eq!(body, json!({"spec": {"replicas": 0}}));
                respond(
                    send,
                    200,
                    &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"replicas": 0, "selector": {}, "template": {}}}),
                );
            }
        });
        engine.stop(&key()).await.expect("stop");
        server.await.expect("server assertions");
    }

    #[tokio::test]
    async fn a_scaled_down_deployment_is_listed_as_stopped() {
        let (engine, mut handle) = engine();
        let server = tokio::spawn(async move {
            let (_, _, _, send) = next(&mut handle).await;
            respond(
                send,
                200,
                &json!({
                    "apiVersion": "apps/v1",
                    "kind": "DeploymentList",
                    "metadata": {},
                    "items": [{
                        "metadata": {"name": "web", "namespace": NS, "labels": {
                            "berth.dev/lease-id": "7", "berth.dev/service": "web",
                            "berth.dev/manifest-version": "2"
                        }},
                        "spec": {"replicas": 0, "selector": {}, "template": {}},
                        "status": {"readyReplicas": 0}
                    }]
                }),
            );
        });
        let all = engine
            .list(31337, Address::repeat_byte(0xab))
            .await
            .expect("list");
        server.await.expect("server assertions");
        let w = &all[&U256::from(7)];
        assert!(!w.running(), "zero replicas is a stopped workload");
        assert_eq!(
            w.manifest_version,
            Some(2),
            "the version label is read back"
        );
    }

    #[tokio::test]
    async fn delete_removes_the_namespace_and_tolerates_its_absence() {
        let (engine, mut handle) = engine();
        let server = tokio::spawn(async move {
            let (line, _, body, send) = next(&mut handle).await;
            assert_eq!(line, format!("DELETE /api/v1/namespaces/{NS}?"));
            assert_eq!(body["propagationPolicy"], "Background");
            respond(
                send,
                200,
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            );
            let (line, _, _, send) = next(&mut handle).await;
            assert_eq!(line, format!("DELETE /api/v1/namespaces/{NS}?"));
            respond(
                send,
                404,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "not found", "reason": "NotFound", "code": 404}),
            );
        });
        engine.delete(&key()).await.expect("first delete");
        engine
            .delete(&key())
            .await
            .expect("second delete finds nothing and succeeds");
        server.await.expect("server assertions");
    }

    #[tokio::test]
    async fn list_reads_leases_ports_and_readiness_from_labels() {
        let (engine, mut handle) = engine();
        let server = tokio::spawn(async move {
            let (line, _, _, send) = next(&mut handle).await;
            assert_eq!(
                line,
                "GET /apis/apps/v1/deployments?&labelSelector=berth.dev%2Fchain-id%3D31337%2Cberth.dev%2Fescrow%3D0xabababababababababababababababababababab"
            );
            let deployment = |lease: &str, ready: i32| {
                json!({
                    "metadata": {"name": "web", "namespace": NS, "labels": {
                        "berth.dev/lease-id": lease, "berth.dev/service": "web", "berth.dev/port-8080": "30001"}},
                    "spec": {"replicas": 1, "selector": {}, "template": {}},
                    "status": {"readyReplicas": ready}
                })
            };
            respond(
                send,
                200,
                &json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {},
                "items": [deployment("7", 1), deployment("8", 0)]}),
            );
        });
        let found = engine
            .list(31337, Address::repeat_byte(0xab))
            .await
            .expect("list");
        server.await.expect("server assertions");
        assert!(found[&U256::from(7)].running());
        assert!(!found[&U256::from(8)].running());
        assert_eq!(
            found[&U256::from(7)].ports[&("web".to_string(), 8080)],
            30001
        );
    }

    #[tokio::test]
    async fn an_invalid_object_is_refused_and_an_outage_is_unavailable() {
        let (engine, mut handle) = engine();
        let server = tokio::spawn(async move {
            let (_, _, _, send) = next(&mut handle).await;
            respond(
                send,
                422,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "invalid", "reason": "Invalid", "code": 422}),
            );
            let (_, _, _, send) = next(&mut handle).await;
            respond(
                send,
                503,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "unavailable", "reason": "ServiceUnavailable", "code": 503}),
            );
        });
        let manifest = Manifest::parse(include_bytes!("../../../examples/hello/manifest.yaml"))
            .expect("parses");
        let rendered = render(key(), &manifest, &PortMap::new());
        let refused = engine.apply(&rendered).await.expect_err("422");
        assert!(matches!(refused, EngineError::Refused(_)), "{refused}");
        let outage = engine.apply(&rendered).await.expect_err("503");
        assert!(matches!(outage, EngineError::Unavailable(_)), "{outage}");
        server.await.expect("server assertions");
    }

    #[tokio::test]
    async fn stats_read_the_metrics_api_and_integrate_cpu_rates() {
        assert_eq!(nanocores("250000000n"), Some(250_000_000));
        assert_eq!(nanocores("12m"), Some(12_000_000));
        assert_eq!(nanocores("2"), Some(2_000_000_000));
        let (engine, mut handle) = engine();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (line, _, _, send) = next(&mut handle).await;
                assert_eq!(
                    line,
                    "GET /apis/metrics.k8s.io/v1beta1/pods?labelSelector=berth.dev%2Fchain-id%3D31337%2Cberth.dev%2Fescrow%3D0xabababababababababababababababababababab"
                );
                respond(
                    send,
                    200,
                    &json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": [{
                        "metadata": {"name": "web-1", "namespace": NS, "labels": {"berth.dev/lease-id": "7"}},
                        "containers": [{"name": "web", "usage": {"cpu": "500000000n", "memory": "64Mi"}}]
                    }]}),
                );
            }
        });
        let first = engine
            .stats(31337, Address::repeat_byte(0xab))
            .await
            .expect("stats");
        assert_eq!(first[0].lease, U256::from(7));
        assert_eq!(first[0].container, "web-1/web");
        assert_eq!(first[0].memory_bytes, 64 << 20);
        assert_eq!(first[0].cpu_ns, 0, "the first reading starts the counter");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let second = engine
            .stats(31337, Address::repeat_byte(0xab))
            .await
            .expect("stats");
        // Half a core for ~200 ms is ~100 ms of CPU.
        assert!(
            (90_000_000..150_000_000).contains(&second[0].cpu_ns),
            "{}",
            second[0].cpu_ns
        );
        server.await.expect("server assertions");
    }

    /// Against a real cluster when `KUBECONFIG` is set: apply, see it listed, delete.
    #[tokio::test]
    async fn real_cluster_round_trip_when_kubeconfig_is_set() {
        if std::env::var_os("KUBECONFIG").is_none() {
            eprintln!("KUBECONFIG not set: skipping the real-cluster test");
            return;
        }
        let engine = KubeEngine::from_env().await.expect("kubeconfig");
        let mut k = key();
        k.lease_id = U256::from(std::process::id());
        let manifest = Manifest::parse(include_bytes!("../../../examples/hello/manifest.yaml"))
            .expect("parses");
        let rendered = render(k, &manifest, &PortMap::new());
        engine.apply(&rendered).await.expect("apply on the cluster");
        let found = engine.list(k.chain_id, k.escrow).await.expect("list");
        assert!(found.contains_key(&k.lease_id));
        engine.delete(&k).await.expect("delete");
    }
}
