//! Prometheus metrics of the indexer, served as text on a small HTTP endpoint.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[derive(Debug)]
struct Inner {
    started: Instant,
    head_lag_blocks: AtomicU64,
    events_total: AtomicU64,
    reorgs_total: AtomicU64,
    rpc_errors_total: AtomicU64,
}

/// Counters and gauges shared by the indexing loop and the metrics endpoint.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self(Arc::new(Inner {
            started: Instant::now(),
            head_lag_blocks: AtomicU64::new(0),
            events_total: AtomicU64::new(0),
            reorgs_total: AtomicU64::new(0),
            rpc_errors_total: AtomicU64::new(0),
        }))
    }
}

impl Metrics {
    /// Blocks between the chain head and the checkpoint.
    pub fn set_head_lag(&self, blocks: u64) {
        self.0.head_lag_blocks.store(blocks, Ordering::Relaxed);
    }

    /// Logs written.
    pub fn add_events(&self, n: u64) {
        self.0.events_total.fetch_add(n, Ordering::Relaxed);
    }

    /// A reorg rolled back.
    pub fn add_reorg(&self) {
        self.0.reorgs_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed step.
    pub fn add_rpc_error(&self) {
        self.0.rpc_errors_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Logs written so far.
    pub fn events(&self) -> u64 {
        self.0.events_total.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let i = &self.0;
        let secs = i.started.elapsed().as_secs_f64().max(1e-9);
        let events = i.events_total.load(Ordering::Relaxed);
        format!(
            "# HELP berth_indexer_head_lag_blocks Blocks between the chain head and the last indexed block.\n\
             # TYPE berth_indexer_head_lag_blocks gauge\nberth_indexer_head_lag_blocks {}\n\
             # HELP berth_indexer_events_total Logs of the watched contracts written to Postgres.\n\
             # TYPE berth_indexer_events_total counter\nberth_indexer_events_total {events}\n\
             # HELP berth_indexer_events_per_second Average logs written per second since start.\n\
             # TYPE berth_indexer_events_per_second gauge\nberth_indexer_events_per_second {:.1}\n\
             # HELP berth_indexer_reorgs_total Reorgs rolled back.\n\
             # TYPE berth_indexer_reorgs_total counter\nberth_indexer_reorgs_total {}\n\
             # HELP berth_indexer_rpc_errors_total Failed indexing steps (RPC or database), retried.\n\
             # TYPE berth_indexer_rpc_errors_total counter\nberth_indexer_rpc_errors_total {}\n",
            i.head_lag_blocks.load(Ordering::Relaxed),
            events as f64 / secs,
            i.reorgs_total.load(Ordering::Relaxed),
            i.rpc_errors_total.load(Ordering::Relaxed),
        )
    }

    /// Answers every HTTP request on `listener` with the metrics (for Prometheus scrapes).
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (mut socket, _) = listener.accept().await?;
            let metrics = self.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // Read the request head (bounded by the buffer and a timeout); its path is not needed.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), socket.read(&mut buf))
                        .await;
                let body = metrics.render();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.add_events(42);
        m.add_reorg();
        m.set_head_lag(3);
        let text = m.render();
        assert!(text.contains("berth_indexer_events_total 42\n"), "{text}");
        assert!(text.contains("berth_indexer_reorgs_total 1\n"), "{text}");
        assert!(text.contains("berth_indexer_head_lag_blocks 3\n"), "{text}");
    }
}
