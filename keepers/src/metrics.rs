//! Prometheus metrics of the provider keeper, rendered in the text format on the gateway's
//! `/metrics`.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Counters and gauges shared by the reconciler and the gateway.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    passes: AtomicU64,
    pass_errors: AtomicU64,
    deploys: AtomicU64,
    teardowns: AtomicU64,
    confirms: AtomicU64,
    workloads: AtomicU64,
    uploads: AtomicU64,
    rejects: Mutex<BTreeMap<String, u64>>,
    samples: AtomicU64,
    sample_errors: AtomicU64,
    reports: AtomicU64,
    report_batches: AtomicU64,
    gas_spent_wei: Mutex<u128>,
    claimed: Mutex<u128>,
    terminations: AtomicU64,
    suspensions: AtomicU64,
    auto_top_ups: AtomicU64,
    rollouts: AtomicU64,
    refused_updates: AtomicU64,
    near_exhaustion: AtomicU64,
}

impl Metrics {
    /// A reconcile pass finished; `ok` says whether it completed.
    pub fn pass(&self, ok: bool) {
        self.0.passes.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.0.pass_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// A workload was created.
    pub fn deployed(&self) {
        self.0.deploys.fetch_add(1, Ordering::Relaxed);
    }
    /// A workload was removed.
    pub fn torn_down(&self) {
        self.0.teardowns.fetch_add(1, Ordering::Relaxed);
    }
    /// A confirmation was sent.
    pub fn confirmed(&self) {
        self.0.confirms.fetch_add(1, Ordering::Relaxed);
    }
    /// A rejection was sent for `reason`.
    pub fn rejected(&self, reason: &str) {
        if let Ok(mut m) = self.0.rejects.lock() {
            *m.entry(reason.to_string()).or_default() += 1;
        }
    }
    /// A manifest upload was stored.
    pub fn uploaded(&self) {
        self.0.uploads.fetch_add(1, Ordering::Relaxed);
    }
    /// A sampling round stored `n` samples (or failed).
    pub fn sampled(&self, n: Option<usize>) {
        match n {
            Some(n) => self.0.samples.fetch_add(n as u64, Ordering::Relaxed),
            None => self.0.sample_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
    /// A batch of `n` usage reports was sent.
    pub fn reported(&self, n: usize) {
        self.0.reports.fetch_add(n as u64, Ordering::Relaxed);
        self.0.report_batches.fetch_add(1, Ordering::Relaxed);
    }
    /// A transaction of the keeper was mined, costing `wei`.
    pub fn gas_spent(&self, wei: u128) {
        if let Ok(mut g) = self.0.gas_spent_wei.lock() {
            *g += wei;
        }
    }
    /// A claim paid `amount` base units.
    pub fn claimed(&self, amount: u128) {
        if let Ok(mut c) = self.0.claimed.lock() {
            *c += amount;
        }
    }
    /// A lease was terminated on exhaustion.
    pub fn terminated(&self) {
        self.0.terminations.fetch_add(1, Ordering::Relaxed);
    }
    /// A lease was suspended on low runway.
    pub fn suspended(&self) {
        self.0.suspensions.fetch_add(1, Ordering::Relaxed);
    }
    /// An auto top-up transaction was sent.
    pub fn auto_topped_up(&self) {
        self.0.auto_top_ups.fetch_add(1, Ordering::Relaxed);
    }
    /// A new manifest version started rolling out.
    pub fn rolled_out(&self) {
        self.0.rollouts.fetch_add(1, Ordering::Relaxed);
    }
    /// A manifest update failed the checks; the workload keeps its version.
    pub fn refused_update(&self) {
        self.0.refused_updates.fetch_add(1, Ordering::Relaxed);
    }
    /// Active leases whose runway is under twice the minimum.
    pub fn set_near_exhaustion(&self, n: usize) {
        self.0.near_exhaustion.store(n as u64, Ordering::Relaxed);
    }
    /// Workloads found in the engine by the last pass.
    pub fn set_workloads(&self, n: usize) {
        self.0.workloads.store(n as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let i = &self.0;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            "berth_keeper_passes_total",
            "Reconcile passes.",
            i.passes.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_pass_errors_total",
            "Passes cut short by an RPC, engine or database error.",
            i.pass_errors.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_deploys_total",
            "Workloads created.",
            i.deploys.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_teardowns_total",
            "Workloads removed.",
            i.teardowns.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_confirms_total",
            "Lease confirmations sent.",
            i.confirms.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_manifest_uploads_total",
            "Signed manifest uploads stored.",
            i.uploads.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_samples_total",
            "Container samples stored.",
            i.samples.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_sample_errors_total",
            "Sampling rounds that failed (a gap in the samples).",
            i.sample_errors.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_reports_total",
            "Usage reports sent.",
            i.reports.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_report_batches_total",
            "Batched report transactions sent.",
            i.report_batches.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_terminations_total",
            "Leases terminated after their suspension's grace period.",
            i.terminations.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_suspensions_total",
            "Leases suspended on low runway.",
            i.suspensions.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_auto_top_ups_total",
            "Auto top-up transactions sent under tenants' policies.",
            i.auto_top_ups.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_rollouts_total",
            "Manifest updates rolled out in place.",
            i.rollouts.load(Ordering::Relaxed),
        );
        counter(
            "berth_keeper_refused_updates_total",
            "Manifest updates that failed the checks (the workload keeps its version).",
            i.refused_updates.load(Ordering::Relaxed),
        );
        let big = |m: &Mutex<u128>| m.lock().map(|v| *v).unwrap_or(0);
        let _ = write!(
            out,
            "# HELP berth_keeper_gas_spent_wei_total Fees paid for the keeper's mined transactions.\n# TYPE berth_keeper_gas_spent_wei_total counter\nberth_keeper_gas_spent_wei_total {}\n",
            big(&i.gas_spent_wei)
        );
        let _ = write!(
            out,
            "# HELP berth_keeper_claimed_total Charges claimed, token base units.\n# TYPE berth_keeper_claimed_total counter\nberth_keeper_claimed_total {}\n",
            big(&i.claimed)
        );
        let _ = write!(
            out,
            "# HELP berth_keeper_leases_near_exhaustion Active leases with less than twice the minimum runway.\n# TYPE berth_keeper_leases_near_exhaustion gauge\nberth_keeper_leases_near_exhaustion {}\n",
            i.near_exhaustion.load(Ordering::Relaxed)
        );
        let _ = write!(
            out,
            "# HELP berth_keeper_workloads Workloads in the engine at the last pass.\n# TYPE berth_keeper_workloads gauge\nberth_keeper_workloads {}\n",
            i.workloads.load(Ordering::Relaxed)
        );
        let _ = write!(
            out,
            "# HELP berth_keeper_rejects_total Leases rejected, by reason.\n# TYPE berth_keeper_rejects_total counter\n"
        );
        if let Ok(m) = i.rejects.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "berth_keeper_rejects_total{{reason=\"{reason}\"}} {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labelled_rejects() {
        let m = Metrics::default();
        m.pass(true);
        m.pass(false);
        m.rejected("policy_violation");
        m.rejected("policy_violation");
        let text = m.render();
        assert!(text.contains("berth_keeper_passes_total 2\n"), "{text}");
        assert!(text.contains("berth_keeper_pass_errors_total 1\n"));
        assert!(text.contains("berth_keeper_rejects_total{reason=\"policy_violation\"} 2\n"));
    }
}
