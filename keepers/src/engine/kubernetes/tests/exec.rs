//! `pods/exec` over a real WebSocket: kube-rs's mock service cannot complete an HTTP upgrade,
//! so this test plays the API server on a loopback HTTP server (hyper, then tungstenite on
//! the upgraded connection) speaking Kubernetes' channel protocol: 0 stdin, 1 stdout,
//! 2 stderr, 3 the final `Status`, 4 terminal sizes.

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key, protocol::Role};

use super::*;
use crate::engine::exec::ExecRequest;

/// What the fake API server saw: the exec request's path and query, and terminal sizes.
#[derive(Debug, Default)]
struct Seen {
    exec: String,
    sizes: Vec<(u64, u64)>,
}

/// Serves one pod list and one exec on `listener`: the command echoes each stdin line back
/// on stdout (and `err:` lines on stderr) and exits with code 7 when it reads `exit`.
async fn api_server(listener: tokio::net::TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let seen = Arc::clone(&seen);
                async move {
                    let path = req.uri().to_string();
                    if !path.contains("/exec?") {
                        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                            "items": [{"metadata": {"name": "web-b"}}, {"metadata": {"name": "web-a"}}]});
                        return Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(list.to_string()),
                        )));
                    }
                    seen.lock().expect("lock").exec = path;
                    let key = req
                        .headers()
                        .get("sec-websocket-key")
                        .map(|k| derive_accept_key(k.as_bytes()))
                        .unwrap_or_default();
                    let upgraded = hyper::upgrade::on(&mut req);
                    tokio::spawn(play_command(upgraded, seen));
                    Ok(hyper::Response::builder()
                        .status(101)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .header("sec-websocket-accept", key)
                        .header("sec-websocket-protocol", "v4.channel.k8s.io")
                        .body(Full::new(Bytes::new()))
                        .expect("response"))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn play_command(upgraded: hyper::upgrade::OnUpgrade, seen: Arc<Mutex<Seen>>) {
    let Ok(io) = upgraded.await else { return };
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None)
            .await;
    let send = |channel: u8, text: &str| {
        let mut frame = vec![channel];
        frame.extend_from_slice(text.as_bytes());
        Message::Binary(frame.into())
    };
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(data) = msg else { continue };
        let Some((&channel, rest)) = data.split_first() else {
            continue;
        };
        match channel {
            0 => {
                let line = String::from_utf8_lossy(rest).trim().to_owned();
                if line == "exit" {
                    let status = json!({"status": "Failure", "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}});
                    let _ = ws.send(send(3, &status.to_string())).await;
                    let _ = ws.close(None).await;
                    return;
                }
                let (channel, text) = match line.strip_prefix("err:") {
                    Some(e) => (2, e.to_owned()),
                    None => (1, format!("got {line}")),
                };
                let _ = ws.send(send(channel, &text)).await;
            }
            4 => {
                let size: serde_json::Value = serde_json::from_slice(rest).unwrap_or_default();
                let (w, h) = (size["Width"].as_u64(), size["Height"].as_u64());
                seen.lock()
                    .expect("lock")
                    .sizes
                    .push((w.unwrap_or(0), h.unwrap_or(0)));
            }
            _ => {}
        }
    }
}

/// Types `exit` into `session`; its exit code.
async fn exit_after_exit(session: crate::engine::exec::ExecSession) -> Option<i64> {
    session.stdin.send(b"exit\n".to_vec()).await.expect("stdin");
    tokio::time::timeout(std::time::Duration::from_secs(10), session.exit)
        .await
        .expect("ends in time")
        .expect("an exit")
}

#[tokio::test]
async fn a_command_runs_over_the_api_servers_websocket_with_its_sizes_and_exit_code() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(api_server(listener, Arc::clone(&seen)));
    super::super::use_ring_for_tls();
    let config = kube::Config::new(url.parse().expect("url"));
    let engine = KubeEngine::new(Client::try_from(config).expect("client"));

    let req = ExecRequest {
        service: "web".into(),
        replica: 1,
        cmd: vec!["sh".into(), "-c".into(), "echo".into()],
        tty: false,
        size: Some((80, 24)),
    };
    let mut session = engine.exec(&key(), &req).await.expect("exec starts");
    let exec = seen.lock().expect("lock").exec.clone();
    assert!(
        exec.starts_with(&format!("/api/v1/namespaces/{NS}/pods/web-b/exec?")),
        "replica 1 in name order: {exec}"
    );
    for part in [
        "command=sh",
        "command=-c",
        "container=web",
        "stdin=true",
        "stderr=true",
    ] {
        assert!(exec.contains(part), "{part} in {exec}");
    }

    session
        .stdin
        .send(b"hello\n".to_vec())
        .await
        .expect("stdin");
    assert_eq!(
        session.output.recv().await,
        Some((1, b"got hello".to_vec()))
    );
    session
        .stdin
        .send(b"err:oops\n".to_vec())
        .await
        .expect("stdin");
    assert_eq!(session.output.recv().await, Some((2, b"oops".to_vec())));
    assert!(
        session.resize.send((120, 30)).await.is_err(),
        "without a TTY there is nothing to resize"
    );
    assert_eq!(exit_after_exit(session).await, Some(7));
    let sizes = seen.lock().expect("lock").sizes.clone();
    assert!(sizes.is_empty(), "without a TTY no size is sent: {sizes:?}");

    // With a terminal: its first size, then each resize, reach the API server.
    let tty = ExecRequest { tty: true, ..req };
    let session = engine.exec(&key(), &tty).await.expect("exec starts");
    let exec = seen.lock().expect("lock").exec.clone();
    assert!(
        exec.contains("tty=true") && !exec.contains("stderr=true"),
        "{exec}"
    );
    session.resize.send((120, 30)).await.expect("resize");
    let mut sizes = Vec::new();
    for _ in 0..100 {
        sizes = seen.lock().expect("lock").sizes.clone();
        if sizes.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sizes, [(80, 24), (120, 30)]);
    assert_eq!(exit_after_exit(session).await, Some(7));
}
