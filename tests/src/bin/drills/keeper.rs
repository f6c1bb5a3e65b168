//! The keeper drill: one provider keeper (podman; every RPC request through a proxy adding
//! 30–150 ms) SIGKILLed at random moments while 20
//! leases are opened, deployed, confirmed, reported, closed by their tenants, and exhausted
//! (short deposits at high prices: suspended below the minimum runway, terminated after the
//! grace period, with chain time moved forward by the drill). After each round the keeper
//! restarts on its own state and must converge: every active lease has exactly one workload,
//! every ended one none; each lease was confirmed once; every lease's reports are
//! contiguous (sequence 1, 2, …; each period starting where the last ended, the first at
//! the confirmation) and within the reservation; every closed lease finally reported (unless the drill moved chain time past its final
//! report window while the keeper was dead).

use std::time::Duration;

use alloy::primitives::U256;
use berth_bindings::LeaseStatus;
use berth_e2e::{
    ScratchDb, Settings,
    keeper::{KeeperProcess, confirmations_of, confirmed_at, hello_manifest, wait_for},
    mined,
    rpc_proxy::RpcProxy,
    world::{World, check_caps, world_with},
};
use eyre::{Result, ensure};

use crate::{Rng, Tally};

const LEASES: u64 = 20;
/// Up to ~2,000 token units a second; a short deposit gives ~1,300 s of runway.
const PRICES: [u128; 4] = [1_000_000_000_000, 1_000_000_000, 1_000_000_000, 0];
const SHORT_DEPOSIT: u64 = 2_620_000;
const LONG_DEPOSIT: u64 = 200_000_000;
const SETTLE: Duration = Duration::from_secs(90);
const FINAL_REPORT_WINDOW: u64 = 60;

pub async fn run(rounds: u32, rng: &mut Rng) -> Result<()> {
    let db = ScratchDb::create("drill_keeper").await?;
    let outcome = drill(&db, rounds, rng).await;
    db.drop().await?;
    outcome
}

async fn drill(db: &ScratchDb, rounds: u32, rng: &mut Rng) -> Result<()> {
    let settings = Settings {
        min_stake: 0,
        challenge_window: 60,
        final_report_window: FINAL_REPORT_WINDOW,
        ..Settings::default()
    };
    let mut w = world_with(
        &db.url.parse()?,
        &[
            ("BERTH_SAMPLE_INTERVAL_MS", "200"),
            ("BERTH_REPORT_INTERVAL_S", "2"),
            ("BERTH_CLAIM_INTERVAL_S", "2"),
        ],
        PRICES,
        settings,
    )
    .await?;
    // The keeper reads the chain through a proxy adding 30-150 ms to every request.
    let proxy = RpcProxy::start(w.chain.rpc_url()).await?;
    proxy.latency(30, 150);
    w.setup.rpc_url = proxy.url().to_owned();
    let mut keeper = KeeperProcess::start(&w.setup).await?;
    let mut opened: Vec<U256> = Vec::new();
    let (mut kills, mut advanced) = (0, 0);
    let mut tally = Tally::default();
    for round in 1..=rounds {
        let outcome: Result<String> = async {
            let mut did = Vec::new();
            // Tenants act: a few new leases (some short-funded), now and then a close.
            let new = rng
                .between(1, 4)
                .min(LEASES.saturating_sub(opened.len() as u64));
            for _ in 0..new {
                let deposit = if rng.chance(40) {
                    SHORT_DEPOSIT
                } else {
                    LONG_DEPOSIT
                };
                let manifest = hello_manifest();
                let (lease, _) = w.lease_funded(&manifest, &manifest, deposit).await?;
                opened.push(lease);
            }
            did.push(format!("{new} opened"));
            // The keeper dies at a random moment of its work, then time may jump.
            tokio::time::sleep(Duration::from_millis(rng.between(0, 3000))).await;
            if rng.chance(30)
                && let Some(&lease) = opened.get(rng.between(0, opened.len() as u64 - 1) as usize)
                && w.status(lease).await? == LeaseStatus::Active
            {
                mined(w.escrow()?.closeLease(lease), "closeLease").await?;
                did.push(format!("lease {lease} closed"));
            }
            keeper.kill9();
            kills += 1;
            did.push("keeper SIGKILLed".into());
            if rng.chance(50) {
                let secs = rng.between(300, 800);
                w.chain.advance(secs).await?;
                advanced += secs;
                did.push(format!("chain time +{secs} s"));
            }
            keeper = KeeperProcess::start(&w.setup).await?;
            let counts = settle(&w, &opened).await?;
            Ok(format!("{}; then {counts}", did.join(", ")))
        }
        .await;
        tally.record(round, outcome);
    }
    println!(
        "totals: {} leases, {kills} keeper kills, chain time moved {advanced} s, {} keeper RPC calls through the proxy",
        opened.len(),
        proxy.calls()
    );
    tally.finish("keeper drill")
}

/// Waits until the keeper has settled every lease, then checks the invariants.
async fn settle(w: &World, leases: &[U256]) -> Result<String> {
    let mut by_status = std::collections::BTreeMap::new();
    for &lease in leases {
        // The restarted keeper deploys and confirms pending leases, and may suspend or end
        // others meanwhile: wait for a state whose workloads agree with it.
        let status = wait_for(&format!("lease {lease} to settle"), SETTLE, || async {
            let status = w.status(lease).await?;
            let pods = w.pods(lease).await?;
            Ok(match status {
                LeaseStatus::Pending => None,
                LeaseStatus::Active => (pods == 1).then_some(status),
                LeaseStatus::Suspended => Some(status),
                _ => (pods == 0).then_some(status),
            })
        })
        .await?;
        if matches!(status, LeaseStatus::Closing | LeaseStatus::Closed) {
            wait_for(&format!("lease {lease}'s final report"), SETTLE, || async {
                let l = w.escrow()?.getLease(lease).call().await?;
                // A final report is due only within the window after the close: when the drill
                // moved time past it while the keeper was dead, none can come any more.
                let window_over =
                    w.chain.now().await? > l.closedAt.to::<u64>() + FINAL_REPORT_WINDOW;
                Ok((l.billedUntil >= l.closedAt || window_over).then_some(()))
            })
            .await?;
        }
        let confirmations = confirmations_of(&w.chain, w.c.escrow, lease).await?;
        let want = usize::from(!matches!(
            status,
            LeaseStatus::Rejected | LeaseStatus::Cancelled
        ));
        ensure!(
            confirmations == want,
            "lease {lease} ({status:?}) confirmed {confirmations} times"
        );
        let reports = w.reports(lease).await?;
        let mut from = confirmed_at(&w.chain, w.c.escrow, lease).await?;
        for (i, r) in reports.iter().enumerate() {
            ensure!(
                r.sequence as usize == i + 1,
                "lease {lease}: report {} where {} was due",
                r.sequence,
                i + 1
            );
            ensure!(
                r.from.to::<u64>() == from,
                "lease {lease}: report {} starts at {} instead of {from}",
                r.sequence,
                r.from
            );
            check_caps(r).map_err(|e| eyre::eyre!("lease {lease}, report {}: {e}", r.sequence))?;
            from = r.to.to::<u64>();
        }
        *by_status.entry(format!("{status:?}")).or_insert(0) += 1;
    }
    Ok(format!(
        "leases by status {by_status:?}: workloads match, each confirmed once, reports contiguous and within the reservation, ended leases torn down and finally reported"
    ))
}
