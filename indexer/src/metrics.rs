//! Prometheus metrics of the indexer, on `prometheus-client`, served in the text format on
//! their own endpoint ([`berth_runtime::serve_metrics`]).

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Instant,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

#[derive(Debug)]
struct Inner {
    registry: Registry,
    started: Instant,
    head_lag_blocks: Gauge,
    events: Counter,
    events_per_second: Gauge<f64, AtomicU64>,
    reorgs: Counter,
    rpc_errors: Counter,
}

/// Counters and gauges shared by the indexing loop and the metrics endpoint.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let (head_lag_blocks, events, events_per_second, reorgs, rpc_errors) = (
            Gauge::default(),
            Counter::default(),
            Gauge::<f64, AtomicU64>::default(),
            Counter::default(),
            Counter::default(),
        );
        registry.register(
            "berth_indexer_head_lag_blocks",
            "Blocks between the chain head and the last indexed block.",
            head_lag_blocks.clone(),
        );
        registry.register(
            "berth_indexer_events",
            "Logs of the watched contracts written to Postgres.",
            events.clone(),
        );
        registry.register(
            "berth_indexer_events_per_second",
            "Average logs written per second since start.",
            events_per_second.clone(),
        );
        registry.register(
            "berth_indexer_reorgs",
            "Reorgs rolled back.",
            reorgs.clone(),
        );
        registry.register(
            "berth_indexer_rpc_errors",
            "Failed indexing steps (RPC or database), retried.",
            rpc_errors.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            started: Instant::now(),
            head_lag_blocks,
            events,
            events_per_second,
            reorgs,
            rpc_errors,
        }))
    }
}

impl Metrics {
    /// Blocks between the chain head and the checkpoint.
    pub fn set_head_lag(&self, blocks: u64) {
        self.0.head_lag_blocks.set(blocks as i64);
    }

    /// Logs written.
    pub fn add_events(&self, n: u64) {
        self.0.events.inc_by(n);
    }

    /// A reorg rolled back.
    pub fn add_reorg(&self) {
        self.0.reorgs.inc();
    }

    /// A failed step.
    pub fn add_rpc_error(&self) {
        self.0.rpc_errors.inc();
    }

    /// Logs written so far.
    pub fn events(&self) -> u64 {
        self.0.events.get()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let secs = self.0.started.elapsed().as_secs_f64().max(1e-9);
        self.0
            .events_per_second
            .set(self.0.events.get() as f64 / secs);
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.0.registry) {
            tracing::warn!(error = %e, "metrics not encoded");
        }
        out
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
