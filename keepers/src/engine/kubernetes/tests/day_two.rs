//! Day-two calls against the mock API server: persistent volume claims, logs, restarts.

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_persistent_volume_is_a_claim_applied_before_its_deployment() {
    let (engine, mut handle) = engine();
    let manifest = Manifest::parse(
        b"version: 1\nservices:\n  db:\n    image: x\n    resources: {cpu: 1, memory: 1Mi}\n    volumes: [{name: data, mount: /var/lib/db, persistent: true, size: 2Gi}]\n",
    )
    .expect("parses");
    let rendered = render(key(), &manifest, &PortMap::new());
    let server = tokio::spawn(async move {
        let mut kinds = Vec::new();
        loop {
            let (line, _, body, send) = next(&mut handle).await;
            let kind = body["kind"].as_str().unwrap_or_default().to_string();
            if kind == "PersistentVolumeClaim" {
                assert!(line.starts_with(&format!(
                    "PATCH /api/v1/namespaces/{NS}/persistentvolumeclaims/db.data?"
                )));
                assert_eq!(body["spec"]["accessModes"], json!(["ReadWriteOnce"]));
                assert_eq!(
                    body["spec"]["resources"]["requests"]["storage"],
                    (2u64 << 30).to_string()
                );
                assert_eq!(body["metadata"]["labels"]["berth.dev/lease-id"], "7");
            }
            if kind == "Deployment" {
                let spec = &body["spec"]["template"]["spec"];
                assert_eq!(
                    spec["volumes"],
                    json!([{"name": "data", "persistentVolumeClaim": {"claimName": "db.data"}}])
                );
                assert_eq!(body["spec"]["strategy"], json!({"type": "Recreate"}));
            }
            kinds.push(kind);
            let done = kinds.last().is_some_and(|k| k == "Deployment");
            respond(send, 200, &body);
            if done {
                break;
            }
        }
        kinds
    });
    engine.apply(&rendered).await.expect("applies");
    let kinds = server.await.expect("server");
    assert_eq!(
        kinds,
        [
            "Namespace",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Deployment"
        ]
    );
}

#[tokio::test]
async fn logs_read_the_chosen_replicas_pod_with_timestamps_from_the_cursors_second() {
    use futures::StreamExt;
    let (engine, mut handle) = engine();
    let server = tokio::spawn(async move {
        let (line, _, _, send) = next(&mut handle).await;
        assert_eq!(
            line,
            format!(
                "GET /api/v1/namespaces/{NS}/pods?&labelSelector=berth.dev%2Flease-id%3D7%2Cberth.dev%2Fservice%3Dweb"
            )
        );
        respond(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                {"metadata": {"name": "web-b"}}, {"metadata": {"name": "web-a"}}
            ]}),
        );
        let (line, _, _, send) = next(&mut handle).await;
        assert!(
            line.starts_with(&format!("GET /api/v1/namespaces/{NS}/pods/web-b/log?")),
            "{line}"
        );
        for part in [
            "container=web",
            "follow=true",
            "timestamps=true",
            "sinceSeconds=",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
        send.send_response(
            Response::builder()
                .body(Body::from(
                    b"2026-12-07T00:54:20.1Z one\n2026-12-07T00:54:21.2Z two\n".to_vec(),
                ))
                .expect("response"),
        );
    });
    let q = crate::engine::logs::LogQuery {
        service: "web".into(),
        replica: 1,
        tail: None,
        follow: true,
        after: Some(berth_protocol::logs::Cursor {
            second: 1_796_604_860,
            count: 1,
        }),
    };
    let lines: Vec<_> = engine
        .logs(&key(), &q)
        .await
        .expect("a stream")
        .collect()
        .await;
    server.await.expect("server assertions");
    let texts: Vec<String> = lines.into_iter().map(|l| l.expect("a line").text).collect();
    assert_eq!(texts, ["one", "two"]);

    let (engine, mut handle) = self::engine();
    tokio::spawn(async move {
        let (_, _, _, send) = next(&mut handle).await;
        respond(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
        );
    });
    let missing = engine.logs(&key(), &q).await.err().expect("no replica 1");
    assert!(matches!(missing, EngineError::Missing(_)), "{missing}");
}

#[tokio::test]
async fn removing_a_workload_deletes_its_deployments_and_secrets_but_not_its_claims() {
    let (engine, mut handle) = engine();
    let server = tokio::spawn(async move {
        let mut lines = Vec::new();
        for _ in 0..2 {
            let (line, _, _, send) = next(&mut handle).await;
            lines.push(line);
            let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []});
            respond(send, 200, &list);
        }
        lines
    });
    engine.remove_workload(&key()).await.expect("removed");
    let lines = server.await.expect("server");
    let selector = "labelSelector=berth.dev%2Flease-id%3D7";
    assert!(
        lines[0].starts_with(&format!(
            "DELETE /apis/apps/v1/namespaces/{NS}/deployments?"
        )) && lines[0].contains(selector),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("DELETE /api/v1/namespaces/{NS}/secrets?"))
            && lines[1].contains(selector),
        "{lines:?}"
    );
}

#[tokio::test]
async fn restarts_are_reported_once_each_with_the_last_exit_code() {
    let pod = |count: i32| {
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
            "metadata": {"name": "web-a", "labels": {"berth.dev/lease-id": "7", "berth.dev/service": "web"}},
            "status": {"containerStatuses": [{
                "name": "web", "image": "x", "imageID": "", "ready": true, "restartCount": count,
                "lastState": {"terminated": {"exitCode": 2}}
            }]}
        }]})
    };
    let (engine, mut handle) = engine();
    let server = tokio::spawn(async move {
        for count in [1, 1, 3] {
            let (line, _, _, send) = next(&mut handle).await;
            assert!(
                line.starts_with("GET /api/v1/pods?&labelSelector=berth.dev%2Fchain-id%3D31337"),
                "{line}"
            );
            respond(send, 200, &pod(count));
        }
    });
    let mut watch = crate::engine::restarts::RestartWatch::default();
    let escrow = Address::repeat_byte(0xab);
    let first = engine
        .restarts(31337, escrow, &mut watch)
        .await
        .expect("lists");
    assert!(
        first.is_empty(),
        "restarts before the keeper looked are not news: {first:?}"
    );
    let same = engine
        .restarts(31337, escrow, &mut watch)
        .await
        .expect("lists");
    assert!(same.is_empty(), "{same:?}");
    let more = engine
        .restarts(31337, escrow, &mut watch)
        .await
        .expect("lists");
    server.await.expect("server");
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(
        (more[0].lease, more[0].service.as_str(), more[0].exit_code),
        (U256::from(7), "web", Some(2))
    );
}
