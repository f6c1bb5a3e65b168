//! A pod's logs through the API server's `pods/log` (kube-rs `log_stream`, timestamps on).

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};

use super::{KubeEngine, classify};
use crate::{
    engine::{
        EngineError,
        logs::{LineSplitter, LogQuery, LogStream, parse_line},
    },
    render::{LABEL_LEASE, LABEL_SERVICE, LeaseKey},
};

impl KubeEngine {
    /// The logs of replica `q.replica` of service `q.service` (pods in name order).
    pub async fn logs(&self, key: &LeaseKey, q: &LogQuery) -> Result<LogStream, EngineError> {
        let pods = self.namespaced::<Pod>(&key.namespace());
        let selector = format!(
            "{LABEL_LEASE}={},{LABEL_SERVICE}={}",
            key.lease_id, q.service
        );
        let mut names: Vec<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| classify("listing pods", &e))?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        let Some(name) = names.get(q.replica) else {
            return Err(EngineError::Missing(format!(
                "service {} of lease {} has no replica {} ({} pods)",
                q.service,
                key.lease_id,
                q.replica,
                names.len()
            )));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let params = LogParams {
            container: Some(q.service.clone()),
            follow: q.follow,
            // From the cursor's second on (sinceSeconds counts back from now).
            since_seconds: q.after.map(|c| (now - c.second).max(0) + 1),
            tail_lines: q.tail.map(i64::from),
            timestamps: true,
            ..LogParams::default()
        };
        let mut reader = pods
            .log_stream(name, &params)
            .await
            .map_err(|e| classify("reading logs", &e))?;
        let lines = async_lines(move |tx| async move {
            let mut splitter = LineSplitter::default();
            loop {
                let chunk = match reader.fill_buf().await {
                    Ok([]) => return,
                    Ok(chunk) => chunk.to_vec(),
                    Err(e) => {
                        let _ = tx
                            .send(Err(EngineError::Unavailable(format!("reading logs: {e}"))))
                            .await;
                        return;
                    }
                };
                reader.consume_unpin(chunk.len());
                for (bytes, overflow) in splitter.feed(&chunk) {
                    if let Some(mut line) = parse_line("stdout", &bytes) {
                        line.truncated |= overflow;
                        if tx.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(lines)
    }
}

/// A stream fed by `produce` through a small channel (the producer stops when the stream is
/// dropped).
fn async_lines<F, Fut>(produce: F) -> LogStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<crate::engine::logs::RawLine, EngineError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) }).boxed()
}
