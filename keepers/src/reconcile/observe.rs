//! Observe: one snapshot per pass. The new lease events since the last pass, every workload
//! labelled for this escrow, and the state of every lease worth looking at, read at the
//! confirmed depth in JSON-RPC batches (the number of requests does not grow with the number
//! of leases). A lease whose read failed is left out of this pass, and nothing of it is
//! touched.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use alloy::{eips::BlockId, primitives::U256};

use super::{PassError, Reconciler};
use crate::{chain::LeaseView, engine::Workload};

/// What one pass sees.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The head the pass read at (leases at `head - confirmations`).
    pub(super) head: u64,
    /// Leases read, with what their events say filled in.
    pub(super) views: BTreeMap<U256, LeaseView>,
    /// Workloads in the engine, by lease.
    pub(super) workloads: BTreeMap<U256, Workload>,
    /// Leases whose read failed this pass.
    pub(super) unread: usize,
    /// Ended leases whose volumes are kept until their final report is settled.
    pub(super) held: BTreeSet<U256>,
}

impl Reconciler {
    /// Reads this pass's snapshot at `head` (None: the latest, read now). Fails only when
    /// the head, the events or the engine's list cannot be read: without them no lease can be
    /// judged.
    pub(super) async fn observe(&mut self, head: Option<u64>) -> Result<Snapshot, PassError> {
        let head = match head {
            Some(h) => h,
            None => self.chain.head().await?,
        };
        let from = self.scanned_to.map_or(self.chain.start_block(), |b| b + 1);
        self.chain.scan(from, head, &mut self.known).await?;
        self.scanned_to = Some(head);

        let timer = Instant::now();
        let mut workloads = self.engine.list(self.chain_id, self.chain.escrow()).await?;
        self.metrics.engine_call("list", timer.elapsed());

        let held: BTreeSet<U256> = self.store.held_volumes().await?.into_iter().collect();
        let at = BlockId::number(head.saturating_sub(self.settings.confirmations));
        let ids: Vec<U256> = self
            .known
            .keys()
            .chain(workloads.keys())
            .chain(&held)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let timer = Instant::now();
        let answers = self.chain.leases(&ids, at).await?;
        self.metrics.rpc_call("getLease batch", timer.elapsed());
        let mut views = BTreeMap::new();
        let mut unread = 0;
        for (id, answer) in answers {
            match answer {
                Ok(mut view) => {
                    if let Some(info) = self.known.get(&id) {
                        info.fill(&mut view);
                    }
                    views.insert(id, view);
                }
                Err(e) => {
                    unread += 1;
                    tracing::warn!(lease = %id, error = %e, "lease not read: left alone this pass");
                }
            }
        }
        self.mark_asleep(&views, &mut workloads).await?;
        Ok(Snapshot {
            head,
            views,
            workloads,
            unread,
            held,
        })
    }

    /// Marks the services the keeper scaled to zero (and that are still stopped) asleep in
    /// their workloads, so that they count as running as the chain wants. A sleep of a lease
    /// no longer active ends here: suspension stops everything anyway, and a resumed or
    /// ended lease starts with no sleep.
    async fn mark_asleep(
        &self,
        views: &BTreeMap<U256, LeaseView>,
        workloads: &mut BTreeMap<U256, Workload>,
    ) -> Result<(), PassError> {
        for sleep in self.store.sleeps().await? {
            match views.get(&sleep.lease).map(|v| v.status) {
                Some(berth_bindings::LeaseStatus::Active) => {
                    if let Some(w) = workloads.get_mut(&sleep.lease)
                        && w.services.get(&sleep.service) == Some(&false)
                    {
                        w.asleep.insert(sleep.service, sleep.since_ms);
                    }
                }
                Some(_) => self.store.end_sleep(sleep.lease, None).await?,
                None => {} // not read this pass: left as it is
            }
        }
        Ok(())
    }
}

/// Per-lease retry pacing: a lease whose action failed waits before it is tried again, twice
/// as long after each failure in a row (from [`FIRST_RETRY`] up to [`LAST_RETRY`]), while the
/// other leases go on at every pass.
#[derive(Debug, Default)]
pub(super) struct Retries {
    next: HashMap<U256, (Instant, Duration)>,
}

/// Wait after a lease's first failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a failing lease.
pub const LAST_RETRY: Duration = Duration::from_secs(16);

impl Retries {
    /// Whether the lease is waiting out a failure.
    pub(super) fn waiting(&self, id: U256) -> bool {
        self.next
            .get(&id)
            .is_some_and(|(at, _)| Instant::now() < *at)
    }

    /// Records a failure; returns the wait before the next try.
    pub(super) fn failed(&mut self, id: U256) -> Duration {
        let delay = self
            .next
            .get(&id)
            .map_or(FIRST_RETRY, |(_, d)| (*d * 2).min(LAST_RETRY));
        self.next.insert(id, (Instant::now() + delay, delay));
        delay
    }

    /// The lease got where it was going: its next failure starts the waits over.
    pub(super) fn settled(&mut self, id: U256) {
        self.next.remove(&id);
    }

    /// Leases waiting out a failure.
    pub(super) fn failing(&self) -> usize {
        self.next.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_lease_waits_longer_after_each_failure_up_to_the_cap() {
        let mut r = Retries::default();
        let id = U256::from(3);
        assert!(!r.waiting(id));
        let waits: Vec<Duration> = (0..8).map(|_| r.failed(id)).collect();
        assert_eq!(waits[0], FIRST_RETRY);
        assert_eq!(waits[1], FIRST_RETRY * 2);
        assert_eq!(waits.last(), Some(&LAST_RETRY));
        assert!(r.waiting(id));
        assert!(!r.waiting(U256::from(4)), "other leases are not held back");
        r.settled(id);
        assert!(!r.waiting(id));
        assert_eq!(r.failed(id), FIRST_RETRY, "settled: the waits start over");
    }
}
