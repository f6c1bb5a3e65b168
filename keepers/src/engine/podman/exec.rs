//! A command in a container through libpod's exec endpoints: create the exec, start it on a
//! connection upgraded to a raw stream (`Upgrade: tcp`), resize it, read its exit code.

use http_body_util::Full;
use hyper::{Method, Request, StatusCode, body::Bytes};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{mpsc, oneshot},
};

use super::{API, ContainerSummary, PodmanEngine, url_encode};
use crate::{
    engine::{
        EngineError,
        exec::{ExecRequest, ExecSession},
        logs::FrameDecoder,
    },
    render::{LABEL_SERVICE, LeaseKey},
};

impl PodmanEngine {
    /// Replica `replica` of the lease's service (containers in name order, infra ones aside).
    pub(super) async fn replica(
        &self,
        key: &LeaseKey,
        service: &str,
        replica: usize,
    ) -> Result<ContainerSummary, EngineError> {
        let mut filters = Self::lease_filters(key);
        filters.push(format!("{LABEL_SERVICE}={service}"));
        let mut containers: Vec<_> = self
            .containers(&serde_json::json!({ "label": filters }), true)
            .await?
            .into_iter()
            .filter(|c| !c.is_infra)
            .collect();
        containers.sort_by(|a, b| a.names.cmp(&b.names));
        let count = containers.len();
        containers.into_iter().nth(replica).ok_or_else(|| {
            EngineError::Missing(format!(
                "service {service} of lease {} has no replica {replica} ({count} running or stopped)",
                key.lease_id
            ))
        })
    }

    /// Runs `req.cmd` in the replica's container.
    pub async fn exec(
        &self,
        key: &LeaseKey,
        req: &ExecRequest,
    ) -> Result<ExecSession, EngineError> {
        let container = self.replica(key, &req.service, req.replica).await?;
        let create = serde_json::json!({
            "AttachStdin": true, "AttachStdout": true, "AttachStderr": true,
            "Tty": req.tty, "Cmd": req.cmd, "Env": ["TERM=xterm"],
        });
        let path = format!("/containers/{}/exec", url_encode(&container.id));
        let (status, body) = self
            .call(Method::POST, &path, Some(create.to_string()), self.timeout)
            .await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let err = format!("creating the exec: {status}: {}", text.trim());
            return Err(
                if status == StatusCode::CONFLICT || status == StatusCode::NOT_FOUND {
                    EngineError::Missing(err)
                } else {
                    EngineError::Unavailable(err)
                },
            );
        }
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["Id"].as_str().map(str::to_owned))
            .ok_or_else(|| EngineError::Unavailable("the exec has no id".into()))?;

        // Start it on a connection of its own, upgraded to the raw stream.
        let stream =
            tokio::time::timeout(self.timeout, tokio::net::UnixStream::connect(self.socket()))
                .await
                .map_err(|_| EngineError::Unavailable("connecting to podman timed out".into()))?
                .map_err(|e| EngineError::Unavailable(format!("connecting to podman: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| EngineError::Unavailable(format!("podman handshake: {e}")))?;
        tokio::spawn(conn.with_upgrades());
        let start = Request::builder()
            .method(Method::POST)
            .uri(format!("http://podman{API}/exec/{}/start", url_encode(&id)))
            .header(hyper::header::HOST, "podman")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "tcp")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                serde_json::json!({ "Detach": false, "Tty": req.tty }).to_string(),
            )))
            .map_err(|e| EngineError::Unavailable(format!("exec start request: {e}")))?;
        let resp = tokio::time::timeout(self.timeout, sender.send_request(start))
            .await
            .map_err(|_| EngineError::Unavailable("starting the exec timed out".into()))?
            .map_err(|e| EngineError::Unavailable(format!("starting the exec: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(EngineError::Unavailable(format!(
                "starting the exec: podman answered {} instead of switching protocols",
                resp.status()
            )));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| EngineError::Unavailable(format!("exec stream: {e}")))?;
        let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));

        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(16);
        let (out_tx, out_rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
        let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(4);
        let (exit_tx, exit_rx) = oneshot::channel();

        tokio::spawn(async move {
            while let Some(bytes) = stdin_rx.recv().await {
                if bytes.is_empty() || write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        });
        let resizer = self.clone();
        let resize_id = id.clone();
        let first_size = req.size;
        tokio::spawn(async move {
            if let Some((cols, rows)) = first_size {
                resizer.resize_exec(&resize_id, cols, rows).await;
            }
            while let Some((cols, rows)) = resize_rx.recv().await {
                resizer.resize_exec(&resize_id, cols, rows).await;
            }
        });
        let engine = self.clone();
        let tty = req.tty;
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::default();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunks = if tty {
                    vec![(1u8, buf[..n].to_vec())]
                } else {
                    match decoder.feed(&buf[..n]) {
                        Ok(frames) => frames
                            .into_iter()
                            .map(|(s, b)| (if s == "stderr" { 2 } else { 1 }, b))
                            .collect(),
                        Err(_) => break,
                    }
                };
                for chunk in chunks {
                    if out_tx.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
            let _ = exit_tx.send(engine.exec_exit_code(&id).await);
        });
        Ok(ExecSession {
            stdin: stdin_tx,
            output: out_rx,
            resize: resize_tx,
            exit: exit_rx,
        })
    }

    async fn resize_exec(&self, id: &str, cols: u16, rows: u16) {
        let path = format!("/exec/{}/resize?h={rows}&w={cols}", url_encode(id));
        if let Err(e) = self.call(Method::POST, &path, None, self.timeout).await {
            tracing::debug!(error = %e, "resizing an exec failed");
        }
    }

    /// The exec's exit code, once podman has it (it may take a moment after the stream ends).
    async fn exec_exit_code(&self, id: &str) -> Option<i64> {
        let path = format!("/exec/{}/json", url_encode(id));
        for _ in 0..20 {
            if let Ok((status, body)) = self.call(Method::GET, &path, None, self.timeout).await
                && status.is_success()
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && v["Running"] == false
            {
                return v["ExitCode"].as_i64();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    }
}
