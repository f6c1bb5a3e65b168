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

use super::{
    PassError, Reconciler,
    decide::{self, RunwayAction},
};
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
    /// Settlement work for the leases of this pass. A lease's failure (a read, a revert) is
    /// logged for that lease and tried again next round; only the chain's clock failing
    /// fails the pass.
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
        self.exhaustion(views, now).await;
        let due = std::time::Instant::now() >= self.next_report;
        let rules = self.rules();
        let final_due = views
            .values()
            .any(|v| self.is_mine(v) && decide::owes_final_report(v, now, rules));
        tracing::debug!(now, due, final_due, "settle");
        if (due || final_due) && self.report(views, now, due).await {
            self.next_report = std::time::Instant::now() + self.settings.report_interval;
        }
        if std::time::Instant::now() >= self.next_claim {
            self.claim().await;
            self.next_claim = std::time::Instant::now() + self.settings.claim_interval;
        }
        Ok(())
    }

    fn is_mine(&self, v: &LeaseView) -> bool {
        v.provider_id == self.settings.provider_id
    }

    /// Runway work, decided per lease by [`decide::runway`]: auto top-ups under tenants'
    /// policies, suspension of active leases whose runway fell below the escrow's minimum
    /// (the contract allows it exactly then), termination of suspended leases whose grace
    /// period is over. Teardown, stops and final reports follow from the new status in later
    /// passes.
    async fn exhaustion(&mut self, views: &BTreeMap<U256, LeaseView>, now: u64) {
        let rules = self.rules();
        let near = views
            .values()
            .filter(|v| self.is_mine(v))
            .filter(|v| matches!(v.status, LeaseStatus::Active | LeaseStatus::Suspended))
            .filter(|v| v.depletion_time < now + 2 * rules.min_runway.max(1))
            .count();
        self.metrics.set_near_exhaustion(near);
        let provider = self.settings.provider_id;
        for v in views.values().filter(|v| v.provider_id == provider) {
            let policy = self.known.get(&v.id).and_then(|i| i.auto_top_up);
            let backoff = self
                .top_up_retry
                .get(&v.id)
                .is_some_and(|at| std::time::Instant::now() < *at);
            let mut action = decide::runway(v, now, rules, policy, backoff);
            if action == RunwayAction::AutoTopUp {
                match self.auto_top_up(v).await {
                    // The runway is being restored: decide on it next pass.
                    Ok(true) => continue,
                    // Nothing due: decide as if no top-up could help now.
                    Ok(false) => action = decide::runway(v, now, rules, policy, true),
                    Err(e) => {
                        tracing::warn!(lease = %v.id, error = %e, "auto top-up not sent");
                        continue;
                    }
                }
            }
            let result = match action {
                RunwayAction::Suspend => self.suspend(v, now).await,
                RunwayAction::Terminate => self.terminate(v, now).await,
                RunwayAction::None | RunwayAction::AutoTopUp => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(lease = %v.id, ?action, error = %e, "runway action not taken; next pass tries again");
            }
        }
    }

    /// Triggers the lease's auto top-up (its policy allows one now). Returns whether a
    /// top-up was sent.
    async fn auto_top_up(&mut self, v: &LeaseView) -> Result<bool, PassError> {
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
    /// to send). A lease whose report cannot be built, or whose report reverts, is logged and
    /// left for the next round; the other leases' reports go on. A batch that fails to send
    /// makes the round run again next pass.
    async fn report(
        &mut self,
        views: &BTreeMap<U256, LeaseView>,
        now: u64,
        periodic: bool,
    ) -> bool {
        let rules = self.rules();
        let due: Vec<U256> = views
            .values()
            .filter(|v| self.is_mine(v))
            .filter(|v| decide::report_until(v, now, periodic, rules).is_some())
            .map(|v| v.id)
            .collect();
        if due.is_empty() {
            return true;
        }
        // Re-read at the latest block, all in one batch: sequence and period must be exact.
        let timer = std::time::Instant::now();
        let latest = match self.chain.leases(&due, BlockId::latest()).await {
            Ok(latest) => latest,
            Err(e) => {
                tracing::warn!(leases = due.len(), error = %e, "report round not read; next pass tries again");
                return false;
            }
        };
        self.metrics.rpc_call("getLease batch", timer.elapsed());
        let mut reports = Vec::new();
        for (id, l) in latest {
            let built = match l {
                Ok(l) => match decide::report_until(&l, now, periodic, rules) {
                    Some(to) => self.build_report(&l, to).await.map(Some),
                    None => Ok(None),
                },
                Err(e) => Err(e.into()),
            };
            match built {
                Ok(Some(r)) => reports.push(r),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(lease = %id, error = %e, "report not built; next round tries again")
                }
            }
        }
        tracing::debug!(now, periodic, reports = reports.len(), "report round");
        let mut all_sent = true;
        for chunk in reports.chunks(self.settings.report_batch) {
            // Each batch is recorded under its first lease: the batches of one round go out
            // together (one nonce after the other) instead of one per pass, and a batch still
            // in flight is not sent twice.
            match self.send_reports(chunk, chunk[0].lease).await {
                // Sent: or this very batch is still pending or just mined (a round repeated
                // after a failure): either way it needs nothing more this round.
                Ok(_) => {}
                // One report reverting would sink the whole batch: send each alone, so that
                // the revert stays with its lease.
                Err(e) if e.is_revert() && chunk.len() > 1 => {
                    tracing::warn!(reports = chunk.len(), error = %e, "report batch would revert; sending its reports one by one");
                    for r in chunk {
                        if let Err(e) = self.send_reports(std::slice::from_ref(r), r.lease).await {
                            all_sent = false;
                            tracing::warn!(lease = %r.lease, error = %e, "report not sent; next round tries again");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(reports = chunk.len(), error = %e, "report batch not sent; next round tries again");
                    all_sent = false;
                    break;
                }
            }
        }
        all_sent
    }

    /// Sends `records` as one `reportUsageBatch` (recorded under `lease`) and stores them
    /// with its hash. Returns false when an earlier one for `lease` is still in flight.
    async fn send_reports(
        &mut self,
        records: &[StoredReport],
        lease: U256,
    ) -> Result<bool, PassError> {
        let input = LeaseEscrow::reportUsageBatchCall {
            reports: records
                .iter()
                .map(|r| LeaseEscrow::UsageReport {
                    leaseId: r.lease,
                    sequence: r.sequence,
                    from: alloy::primitives::Uint::from(r.from_s),
                    to: alloy::primitives::Uint::from(r.to_s),
                    cpuUnits: r.units.cpu,
                    memoryUnits: r.units.memory,
                    storageUnits: r.units.storage,
                    samplesRoot: r.root,
                })
                .collect(),
        }
        .abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease,
                action: "report",
                detail: format!("{} reports from lease {}", records.len(), records[0].lease),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        let TxOutcome::Sent(tx) = outcome else {
            return Ok(false);
        };
        for r in records {
            self.store
                .put_report(&StoredReport {
                    tx: Some(tx),
                    ..r.clone()
                })
                .await?;
        }
        self.metrics.reported(records.len());
        tracing::info!(reports = records.len(), %tx, "usage reports sent");
        self.spawn_receipt_watch(tx, None);
        Ok(true)
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

    /// Claims matured charges of every lease with something to claim, in batches; leases
    /// closed and fully paid out are marked settled. The reads are batched; a lease whose
    /// read fails is left for the next round.
    async fn claim(&mut self) {
        let ids = match self.store.unsettled_leases().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "claim round skipped: unsettled leases not read");
                return;
            }
        };
        let calls = ids
            .iter()
            .map(|id| (*id, LeaseEscrow::claimableOfCall { leaseId: *id }));
        let claimable = match self
            .chain
            .batch_call("claimableOf", calls, BlockId::latest())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claim round skipped: claimable charges not read");
                return;
            }
        };
        let mut due = Vec::new();
        let mut idle = Vec::new();
        for (id, answer) in claimable {
            match answer {
                Ok(amount) if amount > U256::ZERO => due.push(id),
                Ok(_) => idle.push(id),
                Err(e) => tracing::warn!(lease = %id, error = %e, "claimable charges not read"),
            }
        }
        if let Err(e) = self.settle_paid_out(&idle).await {
            tracing::warn!(error = %e, "settled leases not recorded; next round tries again");
        }
        for chunk in due.chunks(CLAIM_BATCH) {
            let input = LeaseEscrow::claimManyCall {
                leaseIds: chunk.to_vec(),
            }
            .abi_encode();
            let job = TxJob {
                lease: U256::ZERO,
                action: "claim",
                detail: format!("{} leases", chunk.len()),
                to: self.chain.escrow(),
                input: input.into(),
            };
            match self.signer.submit(job).await {
                Ok(TxOutcome::Sent(tx)) => {
                    tracing::info!(leases = chunk.len(), %tx, "claim sent");
                    self.spawn_receipt_watch(tx, Some(chunk.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(leases = chunk.len(), error = %e, "claim not sent; next round tries again")
                }
            }
        }
    }

    /// Marks settled the leases of `ids` that are closed with no charge left pending.
    async fn settle_paid_out(&self, ids: &[U256]) -> Result<(), PassError> {
        let closed: Vec<U256> = self
            .chain
            .leases(ids, BlockId::latest())
            .await?
            .into_iter()
            .filter(|(_, l)| l.as_ref().is_ok_and(|l| l.status == LeaseStatus::Closed))
            .map(|(id, _)| id)
            .collect();
        let calls = closed
            .iter()
            .map(|id| (*id, LeaseEscrow::pendingOfCall { leaseId: *id }));
        for (id, pending) in self
            .chain
            .batch_call("pendingOf", calls, BlockId::latest())
            .await?
        {
            if pending.is_ok_and(|p| p.is_zero()) {
                self.store.settle_lease(id).await?;
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
                        let Some(leases) = claimed else {
                            metrics.report_batch_gas(r.gas_used);
                            return;
                        };
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
