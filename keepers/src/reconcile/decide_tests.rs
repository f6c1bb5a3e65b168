//! Table tests of the reconciler's decisions: every lease status against every workload state,
//! with and without what the keeper remembers. No anvil, Postgres or podman.

use alloy::primitives::{Address, B256, U256};
use berth_bindings::LeaseStatus::{self, *};
use berth_protocol::manifest::policy::Reservation;

use super::{
    Action::{self, *},
    Memory, RunwayAction, RunwayRules, WorkloadState, decide, owes_final_report, report_until,
    runway,
};
use crate::chain::{AutoTopUpPolicy, LeaseView};

const ME: u32 = 7;
const VERSION: u32 = 2;

fn view(status: LeaseStatus) -> LeaseView {
    LeaseView {
        id: U256::from(1),
        provider_id: ME,
        status,
        tenant: Address::ZERO,
        reservation: Reservation {
            cpu_millis: 500,
            memory_mib: 256,
            storage_gib: 1,
        },
        created_at: 0,
        balance: U256::from(1_000),
        manifest_version: VERSION,
        manifest_hash: B256::ZERO,
        manifest_uri: String::new(),
        endpoint: String::new(),
        report_count: 0,
        billed_until: 1_000,
        closed_at: 0,
        suspended_at: 0,
        resumed_at: 0,
        depletion_time: 10_000,
    }
}

const ABSENT: WorkloadState = WorkloadState::Absent;
const CURRENT: WorkloadState = WorkloadState::Running {
    version: Some(VERSION),
};
const OLDER: WorkloadState = WorkloadState::Running {
    version: Some(VERSION - 1),
};
const MIXED: WorkloadState = WorkloadState::Running {
    version: Option::None,
};
const PARTIAL: WorkloadState = WorkloadState::Partial;
const STOPPED: WorkloadState = WorkloadState::Stopped;

#[test]
fn every_status_against_every_workload_state() {
    let plain = Memory::default();
    #[rustfmt::skip]
    let table: &[(LeaseStatus, WorkloadState, Action)] = &[
        // not at the confirmed depth yet: wait, unless something of ours runs for it
        (None,      ABSENT,  Wait),
        (None,      CURRENT, TearDown),
        (None,      STOPPED, TearDown),
        // pending: admission handles deploy, readiness and confirmation
        (Pending,   ABSENT,  Admit),
        (Pending,   CURRENT, Admit),
        (Pending,   PARTIAL, Admit),
        (Pending,   STOPPED, Admit),
        // active: the workload must run the version on chain
        (Active,    ABSENT,  Redeploy),
        (Active,    STOPPED, Redeploy),
        (Active,    PARTIAL, Redeploy),
        (Active,    CURRENT, Steady),
        (Active,    OLDER,   RollOut),
        (Active,    MIXED,   RollOut),
        // suspended: nothing may run; objects and volumes stay for a resume
        (Suspended, CURRENT, Stop),
        (Suspended, OLDER,   Stop),
        (Suspended, PARTIAL, Stop),
        (Suspended, STOPPED, Steady),
        (Suspended, ABSENT,  Steady),
        // ended: objects go; then nothing to watch
        (Closing,   CURRENT, TearDown),
        (Closing,   STOPPED, TearDown),
        (Closing,   ABSENT,  Forget),
        (Closed,    CURRENT, TearDown),
        (Closed,    ABSENT,  Forget),
        (Rejected,  PARTIAL, TearDown),
        (Rejected,  ABSENT,  Forget),
        (Cancelled, STOPPED, TearDown),
        (Cancelled, ABSENT,  Forget),
    ];
    for (status, workload, want) in table {
        let got = decide(&view(*status), *workload, plain, ME);
        assert_eq!(got, *want, "{status:?} with {workload:?}");
    }
}

#[test]
fn memory_changes_only_what_it_is_about() {
    let rejected = Memory {
        rejected: true,
        ..Memory::default()
    };
    assert_eq!(decide(&view(Pending), ABSENT, rejected, ME), Abandon);
    assert_eq!(decide(&view(Pending), CURRENT, rejected, ME), Abandon);
    let refused = Memory {
        update_refused: true,
        ..Memory::default()
    };
    // a refused update keeps the running version; a missing workload is still redeployed
    assert_eq!(decide(&view(Active), OLDER, refused, ME), Steady);
    assert_eq!(decide(&view(Active), ABSENT, refused, ME), Redeploy);
    let owed = Memory {
        owes_final_report: true,
        ..Memory::default()
    };
    assert_eq!(decide(&view(Closing), ABSENT, owed, ME), AwaitFinalReport);
    // the volumes stay until the final report is settled; a rejected lease owes none
    assert_eq!(
        decide(&view(Closing), CURRENT, owed, ME),
        TearDownKeepingVolumes
    );
    assert_eq!(
        decide(&view(Closed), STOPPED, owed, ME),
        TearDownKeepingVolumes
    );
    assert_eq!(decide(&view(Rejected), CURRENT, owed, ME), TearDown);
    let holding = Memory {
        holds_volumes: true,
        ..Memory::default()
    };
    let holding_owed = Memory {
        owes_final_report: true,
        ..holding
    };
    assert_eq!(
        decide(&view(Closing), ABSENT, holding_owed, ME),
        AwaitFinalReport
    );
    assert_eq!(decide(&view(Closing), ABSENT, holding, ME), DeleteVolumes);
    assert_eq!(decide(&view(Closed), ABSENT, holding, ME), DeleteVolumes);
    assert_eq!(decide(&view(Closed), ABSENT, Memory::default(), ME), Forget);
}

#[test]
fn another_providers_lease_is_never_touched() {
    for status in [
        Pending, Active, Suspended, Closing, Closed, Rejected, Cancelled,
    ] {
        for w in [ABSENT, CURRENT, STOPPED] {
            let mut v = view(status);
            v.provider_id = ME + 1;
            assert_eq!(decide(&v, w, Memory::default(), ME), NotOurs, "{status:?}");
        }
    }
}

const NOPOL: Option<AutoTopUpPolicy> = Option::None;

const RULES: RunwayRules = RunwayRules {
    min_runway: 60,
    grace_period: 30,
    final_report_window: 600,
};

#[test]
fn runway_decisions() {
    let now = 5_000;
    let policy = Some(AutoTopUpPolicy {
        expires_at: now + 1,
        trigger_runway: 120,
    });
    let with_depletion = |status, depletion: u64| {
        let mut v = view(status);
        v.depletion_time = depletion;
        v.suspended_at = now - 10;
        v
    };
    #[rustfmt::skip]
    let table: &[(LeaseStatus, u64, Option<AutoTopUpPolicy>, bool, RunwayAction)] = &[
        (Active,    now + 500, NOPOL,  false, RunwayAction::None),
        (Active,    now + 59,  NOPOL,   false, RunwayAction::Suspend),
        (Active,    now + 60,  NOPOL,   false, RunwayAction::None),
        // the policy fires first while its trigger is reached; its backoff lets suspension act
        (Active,    now + 100, policy, false, RunwayAction::AutoTopUp),
        (Active,    now + 30,  policy, false, RunwayAction::AutoTopUp),
        (Active,    now + 30,  policy, true,  RunwayAction::Suspend),
        (Active,    now + 100, policy, true,  RunwayAction::None),
        // suspended 10 s ago, grace 30 s: not yet terminable
        (Suspended, now,       NOPOL,   false, RunwayAction::None),
        (Suspended, now,       policy, false, RunwayAction::AutoTopUp),
        (Pending,   now,       policy, false, RunwayAction::None),
        (Closing,   now,       NOPOL,   false, RunwayAction::None),
    ];
    for (status, depletion, p, backoff, want) in table {
        let got = runway(
            &with_depletion(*status, *depletion),
            now,
            RULES,
            *p,
            *backoff,
        );
        assert_eq!(
            got,
            *want,
            "{status:?} depleting at now+{}",
            depletion - now
        );
    }
    let mut over = with_depletion(Suspended, now);
    over.suspended_at = now - 30;
    assert_eq!(
        runway(&over, now, RULES, NOPOL, false),
        RunwayAction::Terminate
    );
    let expired = Some(AutoTopUpPolicy {
        expires_at: now,
        trigger_runway: 120,
    });
    assert_eq!(
        runway(
            &with_depletion(Active, now + 30),
            now,
            RULES,
            expired,
            false
        ),
        RunwayAction::Suspend
    );
}

#[test]
fn reports_cover_running_leases_periodically_and_closed_ones_once() {
    let now = 2_000;
    let active = view(Active);
    assert_eq!(report_until(&active, now, true, RULES), Some(now));
    assert_eq!(report_until(&active, now, false, RULES), Option::None);
    let mut closing = view(Closing);
    closing.closed_at = 1_500;
    assert!(owes_final_report(&closing, now, RULES));
    assert_eq!(report_until(&closing, now, false, RULES), Some(1_500));
    // window over, or already billed to the close: nothing owed
    assert!(!owes_final_report(&closing, 1_500 + 601, RULES));
    closing.billed_until = 1_500;
    assert_eq!(report_until(&closing, now, true, RULES), Option::None);
    let mut fresh = view(Active);
    fresh.billed_until = now;
    assert_eq!(report_until(&fresh, now, true, RULES), Option::None);
}
