//! The sampling task: every interval, the CPU and memory of every running container of this
//! escrow, stored durably, and (with a gateway) the bytes each lease's apps moved through it.
//! A failed round is a gap in the samples, never a guessed value.

use std::{path::Path, time::Duration};

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

/// One round: reads the engine (and the gateway at `gateway`, if any) and stores what it
/// read; returns the number of container samples. The gateway's answer is optional: without
/// it the round keeps its container samples and logs the traffic gap.
pub async fn sample_once(
    engine: &Engine,
    store: &Store,
    chain_id: u64,
    escrow: Address,
    gateway: Option<&Path>,
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
    if let Some(socket) = gateway {
        match gateway_traffic(socket).await {
            Ok(traffic) => store
                .put_traffic(taken, &traffic)
                .await
                .map_err(|e| e.to_string())?,
            Err(e) => {
                tracing::warn!(error = %e, "gateway traffic not read: a gap in the traffic samples")
            }
        }
    }
    Ok(rows.len())
}

/// The gateway's byte counters per lease: (lease, request bytes, response bytes).
async fn gateway_traffic(
    socket: &Path,
) -> Result<Vec<(alloy::primitives::U256, u64, u64)>, String> {
    use berth_protocol::routing::{GatewayUsage, admin};
    let req = hyper::Request::builder()
        .uri(format!("http://gateway{}", admin::USAGE))
        .header(hyper::header::HOST, "gateway")
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, body) = berth_runtime::http::unix_call(socket, req, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("gateway answered {status}"));
    }
    let usage: GatewayUsage = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(usage
        .leases
        .into_iter()
        .map(|l| (l.lease, l.request_bytes, l.response_bytes))
        .collect())
}

/// The sampling task's parts.
#[derive(Debug)]
pub struct Sampler {
    /// The engine whose containers are sampled.
    pub engine: Engine,
    /// Where samples go.
    pub store: Store,
    /// The chain.
    pub chain_id: u64,
    /// The escrow whose leases are sampled.
    pub escrow: Address,
    /// How often.
    pub interval: Duration,
    /// The gateway's admin socket, when a gateway fronts HTTP ports.
    pub gateway: Option<std::path::PathBuf>,
    /// Round outcomes.
    pub metrics: Metrics,
}

/// Samples every `interval` until `shutdown`.
pub async fn run(sampler: Sampler, mut shutdown: watch::Receiver<bool>) {
    let Sampler {
        engine,
        store,
        chain_id,
        escrow,
        interval,
        gateway,
        metrics,
    } = sampler;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => continue,
        }
        match tokio::time::timeout(
            interval.max(Duration::from_secs(5)),
            sample_once(&engine, &store, chain_id, escrow, gateway.as_deref()),
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
