//! A command in a pod's container through the API server's `pods/exec` (kube-rs `exec`, a
//! WebSocket with Kubernetes' channel protocol).

use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, TerminalSize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{mpsc, oneshot},
};

use super::{KubeEngine, classify};
use crate::{
    engine::{
        EngineError,
        exec::{ExecRequest, ExecSession},
    },
    render::LeaseKey,
};

impl KubeEngine {
    /// Runs `req.cmd` in the service's container of replica `req.replica` (pods in name order).
    pub async fn exec(
        &self,
        key: &LeaseKey,
        req: &ExecRequest,
    ) -> Result<ExecSession, EngineError> {
        let pods = self.namespaced::<Pod>(&key.namespace());
        let name = self.replica_pod(key, &req.service, req.replica).await?;
        let params = AttachParams::default()
            .container(req.service.clone())
            .stdin(true)
            .stdout(true)
            .stderr(!req.tty)
            .tty(req.tty);
        let mut attached = pods
            .exec(&name, req.cmd.clone(), &params)
            .await
            .map_err(|e| classify("starting the exec", &e))?;
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Vec<u8>>(16);
        let (out_tx, out_rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
        let (resize_tx, mut resize_rx) = mpsc::channel::<(u16, u16)>(4);
        let (exit_tx, exit_rx) = oneshot::channel();
        if let Some(mut stdin) = attached.stdin() {
            tokio::spawn(async move {
                while let Some(bytes) = stdin_rx.recv().await {
                    if bytes.is_empty() || stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                let _ = stdin.shutdown().await;
            });
        }
        if let Some(mut sizes) = attached.terminal_size() {
            let first = req.size;
            tokio::spawn(async move {
                if let Some((width, height)) = first {
                    let _ = sizes.send(TerminalSize { width, height }).await;
                }
                while let Some((width, height)) = resize_rx.recv().await {
                    if sizes.send(TerminalSize { width, height }).await.is_err() {
                        break;
                    }
                }
            });
        }
        for (channel, reader) in [
            (1u8, attached.stdout().map(boxed)),
            (2u8, attached.stderr().map(boxed)),
        ] {
            let Some(mut reader) = reader else { continue };
            let out = out_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = reader.read(&mut buf).await {
                    if n == 0 || out.send((channel, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(out_tx);
        let status = attached.take_status();
        tokio::spawn(async move {
            let code = match status {
                Some(status) => status.await.map(|s| exit_code(&s)),
                None => None,
            };
            // Kept until the command ended: dropping it would end the session early.
            drop(attached);
            let _ = exit_tx.send(code.flatten());
        });
        Ok(ExecSession {
            stdin: stdin_tx,
            output: out_rx,
            resize: resize_tx,
            exit: exit_rx,
        })
    }
}

fn boxed<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    r: R,
) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(r)
}

/// The exit code in the API server's final status: 0 on `Success`, else the `ExitCode` cause.
fn exit_code(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Option<i64> {
    if s.status.as_deref() == Some("Success") {
        return Some(0);
    }
    s.details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_deref()?
        .parse()
        .ok()
}
