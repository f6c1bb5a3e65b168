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
    /// The name of replica `replica` of the lease's `service` (pods in name order).
    pub(super) async fn replica_pod(
        &self,
        key: &LeaseKey,
        service: &str,
        replica: usize,
    ) -> Result<String, EngineError> {
        let selector = format!("{LABEL_LEASE}={},{LABEL_SERVICE}={service}", key.lease_id);
        let mut names: Vec<String> = self
            .namespaced::<Pod>(&key.namespace())
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| classify("listing pods", &e))?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        let count = names.len();
        names.into_iter().nth(replica).ok_or_else(|| {
            EngineError::Missing(format!(
                "service {service} of lease {} has no replica {replica} ({count} pods)",
                key.lease_id
            ))
        })
    }

    /// The logs of replica `q.replica` of service `q.service` (pods in name order).
    pub async fn logs(&self, key: &LeaseKey, q: &LogQuery) -> Result<LogStream, EngineError> {
        let pods = self.namespaced::<Pod>(&key.namespace());
        let name = self.replica_pod(key, &q.service, q.replica).await?;
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
            .log_stream(&name, &params)
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

impl KubeEngine {
    /// Restarts of the escrow's containers since `watch` last looked: each container's
    /// restart count against the count seen before (a container first seen is not reported).
    pub async fn restarts(
        &self,
        chain_id: u64,
        escrow: alloy::primitives::Address,
        watch: &mut crate::engine::restarts::RestartWatch,
    ) -> Result<Vec<crate::engine::restarts::Restart>, EngineError> {
        let pods: kube::Api<Pod> = kube::Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default().labels(&LeaseKey::escrow_selector(chain_id, escrow)))
            .await
            .map_err(|e| classify("listing pods", &e))?;
        let mut out = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for pod in list.items {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let (Some(lease), Some(service)) = (
                labels.get(LABEL_LEASE).and_then(|l| l.parse().ok()),
                labels.get(LABEL_SERVICE),
            ) else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            for c in pod
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
            {
                let container = format!("{name}/{}", c.name);
                if let Some(before) = watch.counts.get(&container)
                    && c.restart_count > *before
                {
                    out.push(crate::engine::restarts::Restart {
                        lease,
                        service: service.clone(),
                        container: container.clone(),
                        exit_code: c
                            .last_state
                            .and_then(|s| s.terminated)
                            .map(|t| i64::from(t.exit_code)),
                        mark: i128::from(c.restart_count),
                    });
                }
                seen.insert(container, c.restart_count);
            }
        }
        watch.counts = seen;
        Ok(out)
    }
}
