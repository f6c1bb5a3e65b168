//! The reconciler's decisions, as pure functions of what one pass observed: a lease's view on
//! chain, its workload in the engine and what the keeper itself remembers. No I/O here, so
//! every combination is covered by the table tests below; `mod.rs` and `settle.rs` act on the
//! answers.

use berth_bindings::LeaseStatus;

use crate::{
    chain::{AutoTopUpPolicy, LeaseView},
    engine::Workload,
};

/// What the engine shows of a lease's workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadState {
    /// No object of the lease exists.
    Absent,
    /// Objects exist and every service runs.
    Running {
        /// The manifest version all objects carry (None: they disagree or carry none).
        version: Option<u32>,
    },
    /// Objects exist; some service runs, some does not.
    Partial,
    /// Objects exist and nothing runs (stopped, crashed or still starting).
    Stopped,
}

impl WorkloadState {
    /// The state of `workload` (None: no objects).
    pub fn of(workload: Option<&Workload>) -> Self {
        match workload {
            None => Self::Absent,
            Some(w) if w.running() => Self::Running {
                version: w.manifest_version,
            },
            Some(w) if w.services.values().any(|r| *r) => Self::Partial,
            Some(_) => Self::Stopped,
        }
    }

    fn exists(self) -> bool {
        self != Self::Absent
    }
}

/// What the keeper remembers of a lease beyond the chain and the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// The keeper has already decided to reject it (the confirmed depth may not show it yet).
    pub rejected: bool,
    /// The lease's current manifest version failed the checks: the workload keeps its own.
    pub update_refused: bool,
    /// The lease still owes its final usage report (closed, within the report window).
    pub owes_final_report: bool,
    /// Its workload is gone but its volumes are kept until the final report is settled.
    pub holds_volumes: bool,
}

/// What to do for one lease in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Another provider's lease: forget it and touch nothing.
    NotOurs,
    /// Not at the confirmed depth yet (or gone in a reorg) and nothing runs: look again.
    Wait,
    /// Ended on chain, or unknown at the confirmed depth while labelled for this escrow:
    /// remove its objects and volumes.
    TearDown,
    /// Ended, but its final report is still owed: remove its workload and keep its volumes
    /// until the report is settled.
    TearDownKeepingVolumes,
    /// Ended and removed, but its final report is still owed: keep watching it.
    AwaitFinalReport,
    /// Ended, removed and settled, volumes kept until now: delete them.
    DeleteVolumes,
    /// Ended, removed and settled: forget it.
    Forget,
    /// Rejected by this keeper already: drop any work under way, never deploy again.
    Abandon,
    /// Pending: take its manifest, check it, deploy, wait for readiness, confirm or reject.
    Admit,
    /// Active but its workload is missing or not fully running: start it as confirmed.
    Redeploy,
    /// Active and running an older manifest version: roll the lease's version out in place.
    RollOut,
    /// Suspended with services still running: stop them, keep objects and volumes.
    Stop,
    /// Running as the chain says (or suspended and stopped): nothing to do.
    Steady,
}

/// The decision for `view` given its workload and the keeper's memory; `provider_id` is this
/// keeper's provider.
pub fn decide(
    view: &LeaseView,
    workload: WorkloadState,
    memory: Memory,
    provider_id: u32,
) -> Action {
    if view.status != LeaseStatus::None && view.provider_id != provider_id {
        return Action::NotOurs;
    }
    match view.status {
        LeaseStatus::None if workload.exists() => Action::TearDown,
        LeaseStatus::None => Action::Wait,
        LeaseStatus::Pending if memory.rejected => Action::Abandon,
        LeaseStatus::Pending => Action::Admit,
        LeaseStatus::Active => match workload {
            WorkloadState::Running { version }
                if version == Some(view.manifest_version) || memory.update_refused =>
            {
                Action::Steady
            }
            WorkloadState::Running { .. } => Action::RollOut,
            WorkloadState::Absent | WorkloadState::Partial | WorkloadState::Stopped => {
                Action::Redeploy
            }
        },
        LeaseStatus::Suspended => match workload {
            WorkloadState::Running { .. } | WorkloadState::Partial => Action::Stop,
            WorkloadState::Absent | WorkloadState::Stopped => Action::Steady,
        },
        LeaseStatus::Closing
        | LeaseStatus::Closed
        | LeaseStatus::Rejected
        | LeaseStatus::Cancelled => {
            let report_owed = memory.owes_final_report
                && matches!(view.status, LeaseStatus::Closing | LeaseStatus::Closed);
            match (workload.exists(), report_owed) {
                (true, true) => Action::TearDownKeepingVolumes,
                (true, false) => Action::TearDown,
                (false, true) => Action::AwaitFinalReport,
                (false, false) if memory.holds_volumes => Action::DeleteVolumes,
                (false, false) => Action::Forget,
            }
        }
    }
}

/// The escrow's runway rules the settlement decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunwayRules {
    /// An active lease whose runway falls below this may be suspended.
    pub min_runway: u64,
    /// A suspended lease may be terminated this long after its suspension.
    pub grace_period: u64,
    /// Seconds after a lease's close within which its final report is accepted.
    pub final_report_window: u64,
}

/// What a lease's runway calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunwayAction {
    /// Nothing.
    None,
    /// Trigger the tenant's auto top-up (the contract computes the amount).
    AutoTopUp,
    /// Suspend: the runway is below the minimum and no top-up can help now.
    Suspend,
    /// Terminate: suspended for longer than the grace period.
    Terminate,
}

/// The runway decision for `view` at chain time `now`. `policy` is the tenant's auto top-up
/// policy; `top_up_backoff` is true while an earlier try for the lease is too recent.
pub fn runway(
    view: &LeaseView,
    now: u64,
    rules: RunwayRules,
    policy: Option<AutoTopUpPolicy>,
    top_up_backoff: bool,
) -> RunwayAction {
    if !matches!(view.status, LeaseStatus::Active | LeaseStatus::Suspended) {
        return RunwayAction::None;
    }
    if let Some(p) = policy
        && now < p.expires_at
        && view.depletion_time < now.saturating_add(p.trigger_runway)
        && !top_up_backoff
    {
        return RunwayAction::AutoTopUp;
    }
    match view.status {
        LeaseStatus::Active if view.depletion_time < now.saturating_add(rules.min_runway) => {
            RunwayAction::Suspend
        }
        LeaseStatus::Suspended if now >= view.suspended_at.saturating_add(rules.grace_period) => {
            RunwayAction::Terminate
        }
        _ => RunwayAction::None,
    }
}

/// The end of the period a lease's next usage report covers, if one is due: `now` for a
/// running lease in a periodic round, the close time for a closed lease that still owes its
/// final report (always). None when nothing is billable.
pub fn report_until(view: &LeaseView, now: u64, periodic: bool, rules: RunwayRules) -> Option<u64> {
    let to = match view.status {
        LeaseStatus::Active | LeaseStatus::Suspended if periodic => now,
        LeaseStatus::Closing if owes_final_report(view, now, rules) => view.closed_at,
        _ => return None,
    };
    (to > view.billed_until).then_some(to)
}

/// Whether a closed lease still owes its final report at `now` (closed after its last
/// report, within the escrow's final-report window).
pub fn owes_final_report(view: &LeaseView, now: u64, rules: RunwayRules) -> bool {
    view.status == LeaseStatus::Closing
        && view.billed_until < view.closed_at
        && now <= view.closed_at.saturating_add(rules.final_report_window)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
