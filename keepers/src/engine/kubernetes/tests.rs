//! The Kubernetes engine against kube-rs's mock API server: the objects and calls it sends.

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
    let manifest = Manifest::parse(include_bytes!("../../../../examples/hello/manifest.yaml"))
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
    let manifest = Manifest::parse(include_bytes!("../../../../examples/hello/manifest.yaml"))
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
        b"version: 1\nsecrets: {key_version: 1, names: [db, login], sealed: QUJD}\nservices:\n  web:\n    image: ghcr.io/o/app:v1\n    pull_secret: login\n    secret_env: {DB_PASSWORD: db}\n    secret_files: {/etc/app/db: db}\n    resources: {cpu: 100m, memory: 16Mi}\n",
    )
    .expect("parses");
    let values = berth_protocol::secrets::SecretValues(
        [
            ("db".to_owned(), "pw-1".to_owned()),
            ("login".to_owned(), "ci:pw-2".to_owned()),
        ]
        .into(),
    );
    let rendered = render(key(), &manifest, &PortMap::new()).with_secrets(&manifest, Some(values));
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
        // The secret file: one key of the same Secret, read-only, readable by any user.
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "berth-secrets", "mountPath": "/etc/app/db", "subPath": "db", "readOnly": true}])
        );
        assert_eq!(
            pod["volumes"],
            json!([{"name": "berth-secrets", "secret": {"secretName": "berth-secrets", "defaultMode": 0o444, "optional": false}}])
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
    let manifest = Manifest::parse(include_bytes!("../../../../examples/hello/manifest.yaml"))
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
    let manifest = Manifest::parse(include_bytes!("../../../../examples/hello/manifest.yaml"))
        .expect("parses");
    let rendered = render(k, &manifest, &PortMap::new());
    engine.apply(&rendered).await.expect("apply on the cluster");
    let found = engine.list(k.chain_id, k.escrow).await.expect("list");
    assert!(found.contains_key(&k.lease_id));
    engine.delete(&k).await.expect("delete");
}

mod day_two;
mod exec;
