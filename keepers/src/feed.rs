//! The engine's half of each lease's event feed: containers the engine restarted (with the
//! exit code of the run before) and crash loops (a service restarted [`CRASH_LOOP_RESTARTS`]
//! times within [`CRASH_LOOP_WINDOW_S`]), polled every few seconds and recorded once each.
//! The reconciler records the rest ([`crate::reconcile`]); `GET /v1/leases/{id}/events`
//! serves the feed.

use std::time::Duration;

use alloy::primitives::Address;
use serde_json::json;
use tokio::sync::watch;

use crate::{
    engine::{Engine, restarts::RestartWatch},
    store::Store,
};

/// Restarts within the window that make a crash loop.
pub const CRASH_LOOP_RESTARTS: i64 = 3;
/// The crash-loop window, seconds.
pub const CRASH_LOOP_WINDOW_S: u64 = 300;

/// Polls the engine every `interval` until `shutdown`.
pub async fn run(
    engine: Engine,
    store: Store,
    chain_id: u64,
    escrow: Address,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Restarts while the keeper was down are caught within a minute (and never twice).
    let mut restarts = RestartWatch::new(60);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => continue,
        }
        let found = match engine.restarts(chain_id, escrow, &mut restarts).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "reading restarts failed; trying again");
                continue;
            }
        };
        for r in found {
            let detail = json!({ "service": r.service, "exit_code": r.exit_code });
            let key = format!("restart:{}:{}", r.container, r.mark);
            match store.record_event(r.lease, "restarted", &key, detail).await {
                Ok(true) => {
                    tracing::info!(lease = %r.lease, service = %r.service, exit_code = ?r.exit_code, "container restarted");
                    crash_loop(&store, r.lease, &r.service).await;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %r.lease, error = %e, "recording a restart failed")
                }
            }
        }
    }
}

/// Records a crash loop when the service restarted often enough lately (once per window).
async fn crash_loop(store: &Store, lease: alloy::primitives::U256, service: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let since = now.saturating_sub(CRASH_LOOP_WINDOW_S);
    let Ok(count) = store.count_events(lease, "restarted", service, since).await else {
        return;
    };
    if count >= CRASH_LOOP_RESTARTS {
        let key = format!("crash_loop:{service}:{}", now / CRASH_LOOP_WINDOW_S);
        let detail =
            json!({ "service": service, "restarts": count, "window_s": CRASH_LOOP_WINDOW_S });
        if let Ok(true) = store.record_event(lease, "crash_loop", &key, detail).await {
            tracing::warn!(lease = %lease, service, restarts = count, "crash loop");
        }
    }
}
