//! Settlement, run after each pass: usage reports batched on chain (every `report_interval`,
//! and at once for a closed lease's final report), auto top-ups, suspension of leases whose
//! runway fell below the minimum and termination once their grace period is over, and claims
//! of matured charges.

use std::{collections::BTreeMap, time::Duration};

use alloy::{
    eips::BlockId,
    primitives::{B256, U256},
    providers::Provider,
    sol_types::{SolCall, SolEvent},
};
use berth_bindings::{LeaseEscrow, LeaseStatus};

use super::{PassError, Reconciler};
use crate::{
    chain::LeaseView,
    metering,
    signer::{TxJob, TxOutcome},
    store::StoredReport,
};

/// Seconds the wall clock is trusted less than the chain's.
const CLOCK_MARGIN_S: u64 = 2;

/// Most leases in one `claimMany`.
const CLAIM_BATCH: usize = 100;

impl Reconciler {
    /// Settlement work for the leases of this pass.
    pub(super) async fn settle(
        &mut self,
        views: &BTreeMap<U256, LeaseView>,
    ) -> Result<(), PassError> {
        // The time the next block will have at least: the latest block's, or the wall clock
        // less a margin for skew when the chain is idle (a node mines only on demand).
        let wall = crate::metering::sampler::now_ms() / 1000;
        let now = self
            .chain
            .now()
            .await?
            .max(wall.saturating_sub(CLOCK_MARGIN_S));
        self.exhaustion(views, now).await?;
        let due = std::time::Instant::now() >= self.next_report;
        let final_due = views.values().any(|v| self.needs_final_report(v, now));
        tracing::debug!(now, due, final_due, "settle");
        if (due || final_due) && self.report(views, now, due).await? {
            self.next_report = std::time::Instant::now() + self.settings.report_interval;
        }
        if std::time::Instant::now() >= self.next_claim {
            self.claim().await?;
            self.next_claim = std::time::Instant::now() + self.settings.claim_interval;
        }
        Ok(())
    }

    /// Whether `v` is this provider's closed lease still owed its final report at `now`.
    pub(super) fn needs_final_report(&self, v: &LeaseView, now: u64) -> bool {
        v.status == LeaseStatus::Closing
            && v.provider_id == self.settings.provider_id
            && v.billed_until < v.closed_at
            && now <= v.closed_at + self.escrow.final_report_window
    }

    /// Runway work: auto top-ups under tenants' policies, suspension of active leases whose
    /// runway fell below the escrow's minimum (the contract allows it exactly then), and
    /// termination of suspended leases whose grace period is over. Teardown, stops and final
    /// reports follow from the new status in later passes.
    async fn exhaustion(
        &mut self,
        views: &BTreeMap<U256, LeaseView>,
        now: u64,
    ) -> Result<(), PassError> {
        let min = self.escrow.min_runway;
        let mut near = 0;
        let mine = |v: &&LeaseView| v.provider_id == self.settings.provider_id;
        let running: Vec<&LeaseView> = views
            .values()
            .filter(mine)
            .filter(|v| matches!(v.status, LeaseStatus::Active | LeaseStatus::Suspended))
            .collect();
        for v in running {
            if v.depletion_time < now + 2 * min.max(1) {
                near += 1;
            }
            if self.auto_top_up(v, now).await? {
                continue; // the runway is being restored: decide on it next pass
            }
            match v.status {
                LeaseStatus::Active if v.depletion_time < now + min => self.suspend(v, now).await?,
                LeaseStatus::Suspended if now >= v.suspended_at + self.escrow.grace_period => {
                    self.terminate(v, now).await?;
                }
                _ => {}
            }
        }
        self.metrics.set_near_exhaustion(near);
        Ok(())
    }

    /// Triggers the lease's auto top-up when its tenant's policy allows one now. Returns
    /// whether a top-up was sent.
    async fn auto_top_up(&mut self, v: &LeaseView, now: u64) -> Result<bool, PassError> {
        let Some(policy) = self.known.get(&v.id).and_then(|i| i.auto_top_up) else {
            return Ok(false);
        };
        if now >= policy.expires_at
            || v.depletion_time >= now + policy.trigger_runway
            || self
                .top_up_retry
                .get(&v.id)
                .is_some_and(|at| std::time::Instant::now() < *at)
        {
            return Ok(false);
        }
        // At most one try per lease every 5 s, and 30 s after a try that found nothing due: a
        // tenant without allowance gets a failure event now and then, not a stream of them.
        self.top_up_retry
            .insert(v.id, std::time::Instant::now() + Duration::from_secs(5));
        let due = self.chain.auto_top_up_due(v.id).await?;
        if due.is_zero() {
            self.top_up_retry
                .insert(v.id, std::time::Instant::now() + Duration::from_secs(30));
            return Ok(false);
        }
        let input = LeaseEscrow::autoTopUpCall { leaseId: v.id }.abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: v.id,
                action: "auto_top_up",
                detail: format!("{due} under the tenant's policy"),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.auto_topped_up();
            tracing::info!(lease = %v.id, %due, %tx, "auto top-up triggered");
            return Ok(true);
        }
        Ok(false)
    }

    /// Suspends an active lease whose runway is below the minimum (confirmed at the latest
    /// block: a top-up may have moved it).
    async fn suspend(&mut self, v: &LeaseView, now: u64) -> Result<(), PassError> {
        let min = self.escrow.min_runway;
        let latest = self.chain.lease(v.id, BlockId::latest()).await?;
        if latest.status != LeaseStatus::Active || latest.depletion_time >= now + min {
            return Ok(());
        }
        let input = LeaseEscrow::suspendLeaseCall { leaseId: v.id }.abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: v.id,
                action: "suspend",
                detail: format!(
                    "runway {} s below the minimum {min} s",
                    latest.depletion_time.saturating_sub(now)
                ),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.suspended();
            tracing::warn!(lease = %v.id, depletion = latest.depletion_time, now, %tx, "runway below the minimum: lease suspended");
        }
        Ok(())
    }

    /// Terminates a suspended lease whose grace period is over.
    async fn terminate(&mut self, v: &LeaseView, now: u64) -> Result<(), PassError> {
        let latest = self.chain.lease(v.id, BlockId::latest()).await?;
        if latest.status != LeaseStatus::Suspended
            || now < latest.suspended_at + self.escrow.grace_period
        {
            return Ok(());
        }
        let input = LeaseEscrow::terminateLeaseCall { leaseId: v.id }.abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: v.id,
                action: "terminate",
                detail: format!(
                    "suspended since {} and not topped up within the {} s grace period",
                    latest.suspended_at, self.escrow.grace_period
                ),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.terminated();
            tracing::warn!(lease = %v.id, %tx, "grace period over: lease terminated on chain");
        }
        Ok(())
    }

    /// Builds and sends usage reports: every active lease when `periodic`, closed leases that
    /// still owe their final report always. Returns whether the round was sent (or had nothing
    /// to send).
    async fn report(
        &mut self,
        views: &BTreeMap<U256, LeaseView>,
        now: u64,
        periodic: bool,
    ) -> Result<bool, PassError> {
        let mut reports = Vec::new();
        let mut stored = Vec::new();
        for v in views
            .values()
            .filter(|v| v.provider_id == self.settings.provider_id)
        {
            let to = match v.status {
                LeaseStatus::Active | LeaseStatus::Suspended if periodic => now,
                LeaseStatus::Closing if self.needs_final_report(v, now) => v.closed_at,
                _ => continue,
            };
            // Re-read at the latest block: sequence and period must be exact.
            let l = self.chain.lease(v.id, BlockId::latest()).await?;
            let to = if l.status == LeaseStatus::Closing {
                l.closed_at
            } else {
                to
            };
            if to <= l.billed_until
                || !matches!(
                    l.status,
                    LeaseStatus::Active | LeaseStatus::Suspended | LeaseStatus::Closing
                )
            {
                continue;
            }
            let r = self.build_report(&l, to).await?;
            reports.push(LeaseEscrow::UsageReport {
                leaseId: l.id,
                sequence: r.sequence,
                from: alloy::primitives::Uint::from(r.from_s),
                to: alloy::primitives::Uint::from(r.to_s),
                cpuUnits: r.units.cpu,
                memoryUnits: r.units.memory,
                storageUnits: r.units.storage,
                samplesRoot: r.root,
            });
            stored.push(r);
        }
        tracing::debug!(now, periodic, reports = reports.len(), "report round");
        if reports.is_empty() {
            return Ok(true);
        }
        let mut all_sent = true;
        for (chunk, records) in reports
            .chunks(self.settings.report_batch)
            .zip(stored.chunks(self.settings.report_batch))
        {
            let input = LeaseEscrow::reportUsageBatchCall {
                reports: chunk.to_vec(),
            }
            .abi_encode();
            let first = chunk[0].leaseId;
            let outcome = self
                .signer
                .submit(TxJob {
                    lease: U256::ZERO,
                    action: "report",
                    detail: format!("{} reports from lease {first}", chunk.len()),
                    to: self.chain.escrow(),
                    input: input.into(),
                })
                .await?;
            let TxOutcome::Sent(tx) = outcome else {
                // An earlier batch is pending or just mined: build again from the chain later.
                all_sent = false;
                break;
            };
            for r in records {
                self.store
                    .put_report(&StoredReport {
                        tx: Some(tx),
                        ..r.clone()
                    })
                    .await?;
            }
            self.metrics.reported(chunk.len());
            tracing::info!(reports = chunk.len(), %tx, "usage reports sent");
            self.spawn_receipt_watch(tx, None);
        }
        Ok(all_sent)
    }

    /// One lease's report for `(billed_until, to]` from the stored samples.
    async fn build_report(&self, l: &LeaseView, to: u64) -> Result<StoredReport, PassError> {
        let r = metering::build_report(
            &self.store,
            l.id,
            l.report_count + 1,
            l.billed_until,
            to,
            l.running_seconds(l.billed_until, to),
            l.reservation,
            self.settings.max_sample_gap_ms,
            metering::sampler::now_ms(),
        )
        .await?;
        if r.units.clamped {
            tracing::warn!(lease = %l.id, from = r.from_s, to, units = ?r.units, "usage above the reservation: clamped to the cap");
        }
        Ok(r)
    }

    /// Claims matured charges of every lease with something to claim, in batches.
    async fn claim(&mut self) -> Result<(), PassError> {
        let mut due = Vec::new();
        for id in self.store.unsettled_leases().await? {
            let claimable = self.chain.claimable(id).await?;
            if claimable > U256::ZERO {
                due.push(id);
                continue;
            }
            let l = self.chain.lease(id, BlockId::latest()).await?;
            if l.status == LeaseStatus::Closed
                && self.chain.pending_charges(id).await? == U256::ZERO
            {
                self.store.settle_lease(id).await?;
            }
        }
        for chunk in due.chunks(CLAIM_BATCH) {
            let input = LeaseEscrow::claimManyCall {
                leaseIds: chunk.to_vec(),
            }
            .abi_encode();
            let outcome = self
                .signer
                .submit(TxJob {
                    lease: U256::ZERO,
                    action: "claim",
                    detail: format!("{} leases", chunk.len()),
                    to: self.chain.escrow(),
                    input: input.into(),
                })
                .await?;
            if let TxOutcome::Sent(tx) = outcome {
                tracing::info!(leases = chunk.len(), %tx, "claim sent");
                self.spawn_receipt_watch(tx, Some(chunk.to_vec()));
            }
        }
        Ok(())
    }

    /// Waits (bounded) for a receipt off the pass: counts the fee, and for a claim records
    /// what the `ChargesClaimed` events paid.
    fn spawn_receipt_watch(&self, tx: B256, claimed: Option<Vec<U256>>) {
        let provider = self.chain.provider().clone();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for _ in 0..120 {
                match provider.get_transaction_receipt(tx).await {
                    Ok(Some(r)) => {
                        metrics.gas_spent(u128::from(r.gas_used) * r.effective_gas_price);
                        let Some(leases) = claimed else { return };
                        let paid: U256 = r
                            .inner
                            .logs()
                            .iter()
                            .filter_map(|log| {
                                LeaseEscrow::ChargesClaimed::decode_log(&log.inner).ok()
                            })
                            .map(|e| e.data.amount)
                            .fold(U256::ZERO, |a, b| a + b);
                        metrics.claimed(paid.saturating_to());
                        if let Err(e) = store.record_claim(&leases, paid, tx).await {
                            tracing::warn!(%tx, error = %e, "recording a claim failed");
                        }
                        tracing::info!(%tx, %paid, "claim mined");
                        return;
                    }
                    Ok(None) | Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            tracing::warn!(%tx, "no receipt within a minute; the next round checks again");
        });
    }
}
