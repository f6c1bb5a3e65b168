//! Prometheus metrics of the provider keeper, on `prometheus-client`, served in the text
//! format on the gateway's `/metrics`. Counters carry the `_total` suffix the encoder adds.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Counters, gauges and histograms shared by the reconciler, the sampler and the gateway.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    call: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    passes: Counter,
    pass_errors: Counter,
    deploys: Counter,
    teardowns: Counter,
    confirms: Counter,
    workloads: Gauge,
    uploads: Counter,
    rejects: Family<Reason, Counter>,
    samples: Counter,
    sample_errors: Counter,
    reports: Counter,
    report_batches: Counter,
    gas_spent_wei: Counter<f64, std::sync::atomic::AtomicU64>,
    claimed: Counter<f64, std::sync::atomic::AtomicU64>,
    terminations: Counter,
    suspensions: Counter,
    auto_top_ups: Counter,
    rollouts: Counter,
    refused_updates: Counter,
    sleeps: Counter,
    wakes: Counter,
    near_exhaustion: Gauge,
    lease_errors: Family<ActionLabel, Counter>,
    pass_seconds: Histogram,
    rpc_seconds: Family<Call, Histogram>,
    engine_seconds: Family<Call, Histogram>,
    report_batch_gas: Histogram,
}

/// Records that `call` took `d` in a histogram family labelled by call.
fn timed(family: &Family<Call, Histogram>, call: &str, d: Duration) {
    let label = Call { call: call.into() };
    family.get_or_create(&label).observe(d.as_secs_f64());
}

fn seconds_buckets() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let inner = Inner {
            registry: Registry::default(),
            passes: Counter::default(),
            pass_errors: Counter::default(),
            deploys: Counter::default(),
            teardowns: Counter::default(),
            confirms: Counter::default(),
            workloads: Gauge::default(),
            uploads: Counter::default(),
            rejects: Family::default(),
            samples: Counter::default(),
            sample_errors: Counter::default(),
            reports: Counter::default(),
            report_batches: Counter::default(),
            gas_spent_wei: Counter::default(),
            claimed: Counter::default(),
            terminations: Counter::default(),
            suspensions: Counter::default(),
            auto_top_ups: Counter::default(),
            rollouts: Counter::default(),
            refused_updates: Counter::default(),
            sleeps: Counter::default(),
            wakes: Counter::default(),
            near_exhaustion: Gauge::default(),
            lease_errors: Family::default(),
            pass_seconds: seconds_buckets(),
            rpc_seconds: Family::new_with_constructor(seconds_buckets),
            engine_seconds: Family::new_with_constructor(seconds_buckets),
            // 50k .. ~26M gas
            report_batch_gas: Histogram::new(exponential_buckets(50_000.0, 2.0, 10)),
        };
        let i = &inner;
        let r = &mut registry;
        r.register("berth_keeper_passes", "Reconcile passes.", i.passes.clone());
        r.register(
            "berth_keeper_pass_errors",
            "Passes cut short: the snapshot (head, events, engine list, lease reads) failed.",
            i.pass_errors.clone(),
        );
        r.register(
            "berth_keeper_deploys",
            "Workloads created.",
            i.deploys.clone(),
        );
        r.register(
            "berth_keeper_teardowns",
            "Workloads removed.",
            i.teardowns.clone(),
        );
        r.register(
            "berth_keeper_confirms",
            "Lease confirmations sent.",
            i.confirms.clone(),
        );
        r.register(
            "berth_keeper_manifest_uploads",
            "Signed manifest uploads stored.",
            i.uploads.clone(),
        );
        r.register(
            "berth_keeper_samples",
            "Container samples stored.",
            i.samples.clone(),
        );
        r.register(
            "berth_keeper_sample_errors",
            "Sampling rounds that failed (a gap in the samples).",
            i.sample_errors.clone(),
        );
        r.register(
            "berth_keeper_reports",
            "Usage reports sent.",
            i.reports.clone(),
        );
        r.register(
            "berth_keeper_report_batches",
            "Batched report transactions sent.",
            i.report_batches.clone(),
        );
        r.register(
            "berth_keeper_terminations",
            "Leases terminated after their suspension's grace period.",
            i.terminations.clone(),
        );
        r.register(
            "berth_keeper_suspensions",
            "Leases suspended on low runway.",
            i.suspensions.clone(),
        );
        r.register(
            "berth_keeper_auto_top_ups",
            "Auto top-up transactions sent under tenants' policies.",
            i.auto_top_ups.clone(),
        );
        r.register(
            "berth_keeper_rollouts",
            "Manifest updates rolled out in place.",
            i.rollouts.clone(),
        );
        r.register(
            "berth_keeper_refused_updates",
            "Manifest updates that failed the checks (the workload keeps its version).",
            i.refused_updates.clone(),
        );
        r.register(
            "berth_keeper_scaled_to_zero",
            "Services stopped after their idle timeout with no request through the gateway.",
            i.sleeps.clone(),
        );
        r.register(
            "berth_keeper_wakes",
            "Services scaled to zero started again for a request held by the gateway.",
            i.wakes.clone(),
        );
        r.register(
            "berth_keeper_gas_spent_wei",
            "Fees paid for the keeper's mined transactions.",
            i.gas_spent_wei.clone(),
        );
        r.register(
            "berth_keeper_claimed",
            "Charges claimed, token base units.",
            i.claimed.clone(),
        );
        r.register(
            "berth_keeper_leases_near_exhaustion",
            "Active leases with less than twice the minimum runway.",
            i.near_exhaustion.clone(),
        );
        r.register(
            "berth_keeper_workloads",
            "Workloads in the engine at the last pass.",
            i.workloads.clone(),
        );
        r.register(
            "berth_keeper_rejects",
            "Leases rejected, by reason.",
            i.rejects.clone(),
        );
        r.register(
            "berth_keeper_lease_errors",
            "Lease actions that failed and were retried for that lease alone, by action.",
            i.lease_errors.clone(),
        );
        r.register(
            "berth_keeper_pass_duration_seconds",
            "Time of one reconcile pass, snapshot to settlement.",
            i.pass_seconds.clone(),
        );
        r.register(
            "berth_keeper_rpc_duration_seconds",
            "Time of the keeper's RPC reads, by call.",
            i.rpc_seconds.clone(),
        );
        r.register(
            "berth_keeper_engine_duration_seconds",
            "Time of engine calls, by call.",
            i.engine_seconds.clone(),
        );
        r.register(
            "berth_keeper_report_batch_gas",
            "Gas used by mined report batch transactions.",
            i.report_batch_gas.clone(),
        );
        Self(Arc::new(Inner { registry, ..inner }))
    }
}

impl Metrics {
    /// A reconcile pass finished; `ok` says whether it completed.
    pub fn pass(&self, ok: bool) {
        self.0.passes.inc();
        if !ok {
            self.0.pass_errors.inc();
        }
    }
    /// A completed pass took `d`.
    pub fn pass_duration(&self, d: Duration) {
        self.0.pass_seconds.observe(d.as_secs_f64());
    }
    /// An RPC read (`call`) took `d`.
    pub fn rpc_call(&self, call: &str, d: Duration) {
        timed(&self.0.rpc_seconds, call, d);
    }
    /// An engine call (`call`) took `d`.
    pub fn engine_call(&self, call: &str, d: Duration) {
        timed(&self.0.engine_seconds, call, d);
    }
    /// A lease's `action` failed; it is retried for that lease alone.
    pub fn lease_error(&self, action: &str) {
        let label = ActionLabel {
            action: action.into(),
        };
        self.0.lease_errors.get_or_create(&label).inc();
    }
    /// A workload was created.
    pub fn deployed(&self) {
        self.0.deploys.inc();
    }
    /// A workload was removed.
    pub fn torn_down(&self) {
        self.0.teardowns.inc();
    }
    /// A confirmation was sent.
    pub fn confirmed(&self) {
        self.0.confirms.inc();
    }
    /// A rejection was sent for `reason`.
    pub fn rejected(&self, reason: &str) {
        let label = Reason {
            reason: reason.into(),
        };
        self.0.rejects.get_or_create(&label).inc();
    }
    /// A manifest upload was stored.
    pub fn uploaded(&self) {
        self.0.uploads.inc();
    }
    /// A sampling round stored `n` samples (or failed).
    pub fn sampled(&self, n: Option<usize>) {
        match n {
            Some(n) => self.0.samples.inc_by(n as u64),
            None => self.0.sample_errors.inc(),
        };
    }
    /// A batch of `n` usage reports was sent.
    pub fn reported(&self, n: usize) {
        self.0.reports.inc_by(n as u64);
        self.0.report_batches.inc();
    }
    /// A report batch was mined, using `gas`.
    pub fn report_batch_gas(&self, gas: u64) {
        self.0.report_batch_gas.observe(gas as f64);
    }
    /// A transaction of the keeper was mined, costing `wei`.
    pub fn gas_spent(&self, wei: u128) {
        self.0.gas_spent_wei.inc_by(wei as f64);
    }
    /// A claim paid `amount` base units.
    pub fn claimed(&self, amount: u128) {
        self.0.claimed.inc_by(amount as f64);
    }
    /// A lease was terminated on exhaustion.
    pub fn terminated(&self) {
        self.0.terminations.inc();
    }
    /// A lease was suspended on low runway.
    pub fn suspended(&self) {
        self.0.suspensions.inc();
    }
    /// An auto top-up transaction was sent.
    pub fn auto_topped_up(&self) {
        self.0.auto_top_ups.inc();
    }
    /// A new manifest version started rolling out.
    pub fn rolled_out(&self) {
        self.0.rollouts.inc();
    }
    /// A manifest update failed the checks; the workload keeps its version.
    pub fn refused_update(&self) {
        self.0.refused_updates.inc();
    }
    /// An idle service was scaled to zero.
    pub fn scaled_to_zero(&self) {
        self.0.sleeps.inc();
    }
    /// A service scaled to zero was started for a request.
    pub fn woken(&self) {
        self.0.wakes.inc();
    }
    /// Active leases whose runway is under twice the minimum.
    pub fn set_near_exhaustion(&self, n: usize) {
        self.0.near_exhaustion.set(n as i64);
    }
    /// Workloads found in the engine by the last pass.
    pub fn set_workloads(&self, n: usize) {
        self.0.workloads.set(n as i64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
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
    fn renders_counters_labelled_rejects_and_histograms() {
        let m = Metrics::default();
        m.pass(true);
        m.pass(false);
        m.rejected("policy_violation");
        m.rejected("policy_violation");
        m.pass_duration(Duration::from_millis(20));
        m.rpc_call("getLease batch", Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("berth_keeper_passes_total 2\n"), "{text}");
        assert!(text.contains("berth_keeper_pass_errors_total 1\n"));
        assert!(text.contains("berth_keeper_rejects_total{reason=\"policy_violation\"} 2\n"));
        assert!(
            text.contains("berth_keeper_pass_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_keeper_rpc_duration_seconds_count{call=\"getLease batch\"} 1\n"),
            "{text}"
        );
    }
}
