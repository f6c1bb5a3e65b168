//! The sampling task: every interval, the CPU and memory of every running container of this
//! escrow, stored durably. A failed round is a gap in the samples, never a guessed value.

use std::time::Duration;

use alloy::primitives::Address;
use tokio::sync::watch;

use crate::{engine::Engine, metrics::Metrics, store::Store};

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One round: reads the engine and stores what it read; returns the number of samples.
pub async fn sample_once(
    engine: &Engine,
    store: &Store,
    chain_id: u64,
    escrow: Address,
) -> Result<usize, String> {
    let stats = engine
        .stats(chain_id, escrow)
        .await
        .map_err(|e| e.to_string())?;
    let taken = now_ms();
    let rows: Vec<_> = stats
        .into_iter()
        .map(|s| (s.lease, s.container, s.cpu_ns, s.memory_bytes))
        .collect();
    store
        .put_samples(taken, &rows)
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.len())
}

/// Samples every `interval` until `shutdown`.
pub async fn run(
    engine: Engine,
    store: Store,
    chain_id: u64,
    escrow: Address,
    interval: Duration,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => continue,
        }
        match tokio::time::timeout(
            interval.max(Duration::from_secs(5)),
            sample_once(&engine, &store, chain_id, escrow),
        )
        .await
        {
            Ok(Ok(n)) => metrics.sampled(Some(n)),
            Ok(Err(e)) => {
                metrics.sampled(None);
                tracing::warn!(error = %e, "sampling round failed: a gap in the samples");
            }
            Err(_) => {
                metrics.sampled(None);
                tracing::warn!("sampling round timed out: a gap in the samples");
            }
        }
    }
}
