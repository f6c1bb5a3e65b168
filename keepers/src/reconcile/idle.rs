//! Scale to zero, the keeper's half. A service whose manifest sets `idle_timeout` is stopped
//! once the gateway has seen no request and no open connection for it that long; the sleep is
//! recorded first and the route table goes out marked asleep before the stop, so a request
//! that arrives meanwhile is held by the gateway and wakes the service right after
//! ([`crate::control`]). Sleeps are rows in the store: a restarted keeper neither restarts a
//! sleeping service nor forgets to wake it.

use std::{collections::HashMap, time::Duration};

use alloy::primitives::U256;
use berth_bindings::LeaseStatus;
use berth_protocol::routing::GatewayActivity;

use super::{Reconciler, decide::Action, observe::Snapshot};
use crate::{control::AppLocks, engine::Engine, render::LeaseKey, store::Sleep};

/// How long a wake waits after a stop of the same app (see [`stop_one`]).
const SETTLE_AFTER_STOP: Duration = Duration::from_secs(1);

/// A running service of an active lease that scales to zero after `timeout_ms` idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The lease.
    pub lease: U256,
    /// The service.
    pub service: String,
    /// Its idle timeout.
    pub timeout_ms: u64,
}

/// The candidates idle long enough by the gateway's count: nothing open and idle for at least
/// the timeout. An app the gateway does not report (no route yet, a restarted gateway) is
/// never put to sleep.
pub fn due(candidates: &[Candidate], activity: &GatewayActivity) -> Vec<Candidate> {
    let seen: HashMap<(U256, &str), (u64, u64)> = activity
        .apps
        .iter()
        .map(|a| ((a.lease, a.service.as_str()), (a.open, a.idle_ms)))
        .collect();
    candidates
        .iter()
        .filter(|c| {
            seen.get(&(c.lease, c.service.as_str()))
                .is_some_and(|(open, idle)| *open == 0 && *idle >= c.timeout_ms)
        })
        .cloned()
        .collect()
}

impl Reconciler {
    /// Records a sleep for every service idle past its timeout, marking it asleep in `snap`
    /// so the route table about to be sent holds its requests. Returns the sleeps to carry
    /// out once the table is out. Any failure leaves the service running.
    pub(super) async fn put_idle_to_sleep(
        &mut self,
        snap: &mut Snapshot,
        plan: &[(U256, Action)],
    ) -> Vec<(Sleep, u64)> {
        let Some(publisher) = self.routes.as_ref() else {
            return Vec::new();
        };
        let mut candidates = Vec::new();
        for (id, action) in plan {
            let (Some(view), Some(workload)) = (snap.views.get(id), snap.workloads.get(id)) else {
                continue;
            };
            if *action != Action::Steady || view.status != LeaseStatus::Active {
                continue;
            }
            for (service, timeout_ms) in publisher.idle_timeouts(*id, view.manifest_version) {
                if workload.services.get(service) == Some(&true) {
                    candidates.push(Candidate {
                        lease: *id,
                        service: service.to_owned(),
                        timeout_ms,
                    });
                }
            }
        }
        if candidates.is_empty() {
            return Vec::new();
        }
        let activity = match publisher.activity().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "gateway activity not read: nothing scales to zero this pass");
                return Vec::new();
            }
        };
        let mut sleeps = Vec::new();
        for c in due(&candidates, &activity) {
            let sleep = Sleep {
                lease: c.lease,
                service: c.service.clone(),
                since_ms: crate::metering::sampler::now_ms(),
            };
            if let Err(e) = self.store.put_sleep(&sleep).await {
                tracing::warn!(lease = %c.lease, service = %c.service, error = %e, "sleep not recorded: the service keeps running");
                continue;
            }
            if let Some(w) = snap.workloads.get_mut(&c.lease) {
                w.asleep.insert(c.service.clone(), sleep.since_ms);
            }
            sleeps.push((sleep, c.timeout_ms));
        }
        sleeps
    }

    /// Stops the services of `sleeps`, all at once, each under its app's lock and only if
    /// it is still asleep and still idle (a wake or a request may have come meanwhile).
    pub(super) async fn stop_sleepers(&self, sleeps: Vec<(Sleep, u64)>) {
        let Some(publisher) = self.routes.as_ref() else {
            return;
        };
        if sleeps.is_empty() {
            return;
        }
        // The gateway's view at the moment of the stops, read once for all of them.
        let now = publisher.activity().await.ok();
        let mut tasks = tokio::task::JoinSet::new();
        for (sleep, timeout_ms) in sleeps {
            let key = self.key(sleep.lease);
            let (engine, store, locks) = (
                self.engine.clone(),
                self.store.clone(),
                self.app_locks.clone(),
            );
            let metrics = self.metrics.clone();
            let still_idle = now.as_ref().is_some_and(|a| {
                !due(
                    &[Candidate {
                        lease: sleep.lease,
                        service: sleep.service.clone(),
                        timeout_ms,
                    }],
                    a,
                )
                .is_empty()
            });
            tasks.spawn(async move {
                if stop_one(&engine, &store, &locks, key, sleep, still_idle).await {
                    metrics.scaled_to_zero();
                }
            });
        }
        let bound = tokio::time::timeout(Duration::from_secs(30), async {
            while tasks.join_next().await.is_some() {}
        });
        if bound.await.is_err() {
            tracing::warn!("scale-to-zero stops still running after 30 s; left to finish");
            tasks.detach_all();
        }
    }
}

async fn stop_one(
    engine: &Engine,
    store: &crate::store::Store,
    locks: &AppLocks,
    key: LeaseKey,
    sleep: Sleep,
    still_idle: bool,
) -> bool {
    let lock = locks.of(sleep.lease, &sleep.service);
    let _held = lock.lock().await;
    let current = store
        .sleep_of(sleep.lease, &sleep.service)
        .await
        .map(|since| since == Some(sleep.since_ms));
    match current {
        Ok(true) if still_idle => {}
        Ok(true) => {
            // A request came between the decision and now: stay up.
            let _ = store.end_sleep(sleep.lease, Some(&sleep.service)).await;
            return false;
        }
        Ok(false) => return false, // woken meanwhile
        Err(e) => {
            tracing::warn!(lease = %sleep.lease, error = %e, "sleep not checked: the service keeps running");
            return false;
        }
    }
    match engine.stop_service(&key, &sleep.service).await {
        Ok(()) => {
            tracing::info!(lease = %sleep.lease, service = %sleep.service, "idle: scaled to zero");
            // podman finishes a stop in the background (its cleanup process tears the pod's
            // network down); a start meeting that cleanup can hang podman 4.3 for seconds.
            // The lock is held a moment longer, so a wake right after a stop waits for it.
            tokio::time::sleep(SETTLE_AFTER_STOP).await;
            true
        }
        Err(e) => {
            tracing::warn!(lease = %sleep.lease, service = %sleep.service, error = %e, "scale to zero failed; the service keeps running");
            let _ = store.end_sleep(sleep.lease, Some(&sleep.service)).await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_protocol::routing::AppActivity;

    use super::*;

    fn app(lease: u64, service: &str, open: u64, idle_ms: u64) -> AppActivity {
        AppActivity {
            lease: U256::from(lease),
            service: service.into(),
            open,
            idle_ms,
        }
    }

    fn candidate(lease: u64, service: &str, timeout_ms: u64) -> Candidate {
        Candidate {
            lease: U256::from(lease),
            service: service.into(),
            timeout_ms,
        }
    }

    #[test]
    fn only_apps_idle_past_their_timeout_with_nothing_open_sleep() {
        let candidates = [
            candidate(1, "web", 10_000), // idle long enough
            candidate(2, "web", 10_000), // idle, not long enough
            candidate(3, "web", 10_000), // a WebSocket open
            candidate(4, "web", 10_000), // unknown to the gateway
            candidate(5, "api", 60_000), // another service, longer timeout
        ];
        let activity = GatewayActivity {
            apps: vec![
                app(1, "web", 0, 10_000),
                app(2, "web", 0, 9_999),
                app(3, "web", 1, 0),
                app(5, "api", 0, 60_001),
                app(5, "web", 0, 999_999),
            ],
        };
        let due: Vec<(u64, String)> = due(&candidates, &activity)
            .into_iter()
            .map(|c| (c.lease.to::<u64>(), c.service))
            .collect();
        assert_eq!(due, vec![(1, "web".into()), (5, "api".into())]);
    }
}
