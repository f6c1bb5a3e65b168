//! Contracts v2 end to end (anvil + Postgres + podman + the keeper process): an auto top-up
//! policy keeps a lease funded until its total cap; a lease without one is suspended (no
//! workload, volume kept), resumed by a top-up, suspended again and terminated after its
//! grace period; a manifest update is rolled out in place, without a new lease.

use alloy::{primitives::U256, providers::Provider, rpc::types::Filter, sol_types::SolEvent};
use berth_bindings::{LeaseEscrow, LeaseStatus};
use berth_e2e::{Settings, keeper::*, mined, open_lease_for};
use eyre::{Result, WrapErr, ensure};
use sqlx::PgPool;

use crate::keeper::{HELLO_BODY, TENANT, WAIT, World, serves, world_with};

/// One token base unit per lease-second and nothing per unit: runways are exact seconds.
pub(crate) const PER_SECOND: [u128; 4] = [1_000_000_000, 0, 0, 0];

pub(crate) fn settings() -> Settings {
    Settings {
        min_stake: 0,
        min_runway: 60,
        grace_period: 30,
        min_open_runway: 120,
        ..Settings::default()
    }
}

pub(crate) const KEEPER_ENV: &[(&str, &str)] = &[
    ("BERTH_SAMPLE_INTERVAL_MS", "500"),
    ("BERTH_REPORT_INTERVAL_S", "1"),
    ("BERTH_MIN_RUNWAY_S", "0"),
];

/// The hello server with its files on a volume that records every start.
fn booting_manifest() -> Vec<u8> {
    let hello = String::from_utf8(hello_manifest()).unwrap_or_default();
    hello
        .replace(
            "    image: localhost/berth-hello:latest\n",
            "    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"echo boot >> /data/boots && exec /bin/busybox httpd -f -p 8080 -h /data\"]\n    volumes: [{name: data, mount: /data}]\n",
        )
        .into_bytes()
}

async fn events<E: SolEvent>(w: &World, lease: U256) -> Result<Vec<E>> {
    let logs = w
        .chain
        .wallet(0)?
        .get_logs(
            &Filter::new()
                .address(w.c.escrow)
                .event_signature(E::SIGNATURE_HASH)
                .topic1(alloy::primitives::B256::from(lease))
                .from_block(0),
        )
        .await?;
    Ok(logs
        .iter()
        .filter_map(|l| E::decode_log(&l.inner).ok().map(|e| e.data))
        .collect())
}

/// Volumes podman holds for the lease (named `<namespace>-<volume>`).
pub(crate) fn volumes_of(w: &World, lease: U256) -> Result<Vec<String>> {
    let key = berth_keepers::render::LeaseKey {
        chain_id: w.chain.chain_id(),
        escrow: w.c.escrow,
        lease_id: lease,
    };
    let out = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(["volume", "ls", "--quiet"])
        .output()?;
    ensure!(out.status.success(), "podman volume ls failed");
    let prefix = key.volume_prefix();
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|v| v.starts_with(&prefix))
        .map(str::to_string)
        .collect())
}

pub(crate) async fn wait_running(
    w: &World,
    lease: U256,
    running: bool,
    keeper: &KeeperProcess,
) -> Result<()> {
    wait_for(
        &format!("lease {lease}'s workload to be running={running}"),
        WAIT,
        || async move {
            // podman can be slow to answer while it stops a pod: ask again.
            let Ok(workload) = w.workload(lease).await else {
                return Ok(None);
            };
            let now = workload.is_some_and(|wl| wl.running());
            Ok((now == running).then_some(()))
        },
    )
    .await
    .wrap_err_with(|| keeper.log_text())
}

/// Moves the chain clock forward `step` seconds at a time until the lease is `want` (anvil's
/// clock follows the wall clock plus an offset, so one big jump lands less exactly).
pub(crate) async fn advance_until(
    w: &World,
    lease: U256,
    want: LeaseStatus,
    step: u64,
    keeper: &KeeperProcess,
) -> Result<()> {
    for _ in 0..40 {
        for _ in 0..6 {
            if w.status(lease).await? == want {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        w.chain.advance(step).await?;
    }
    Err(eyre::eyre!(
        "lease {lease} never became {want:?}; keeper log:\n{}",
        keeper.log_text()
    ))
}

#[sqlx::test(migrations = false)]
async fn an_auto_top_up_policy_keeps_a_lease_funded_until_its_total_cap(
    pool: PgPool,
) -> Result<()> {
    let w = world_with(&pool.connect_options(), KEEPER_ENV, PER_SECOND, settings()).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let manifest = hello_manifest();
    let lease = open_lease_for(&w.chain, &w.c, TENANT, &manifest, "", 130).await?;
    upload(
        &w.setup.gateway(),
        &w.chain,
        w.c.escrow,
        TENANT,
        lease,
        &manifest,
    )
    .await?;
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    // Below 100 s of runway, back to 1,000 s, at most 50 a time and 150 in all: three top-ups.
    let expires = w.chain.now().await? + 86_400;
    mined(
        w.escrow()?.setAutoTopUp(
            lease,
            U256::from(50),
            U256::from(150),
            U256::from(expires),
            U256::from(100),
            U256::from(1000),
        ),
        "setAutoTopUp",
    )
    .await?;
    for n in 1..=3usize {
        // Step the clock until the runway is below the trigger and the keeper tops up (in
        // 10 s steps it cannot skip past the trigger to the 60 s minimum).
        let mut steps = 0;
        while events::<LeaseEscrow::AutoTopUpExecuted>(&w, lease)
            .await?
            .len()
            < n
        {
            ensure!(
                steps < 40,
                "no auto top-up {n}; keeper log:\n{}",
                keeper.log_text()
            );
            w.chain.advance(10).await?;
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            steps += 1;
        }
        ensure!(
            w.status(lease).await? == LeaseStatus::Active,
            "lease stays active while topped up"
        );
    }
    let done = events::<LeaseEscrow::AutoTopUpExecuted>(&w, lease).await?;
    ensure!(done.len() == 3, "three top-ups, got {}", done.len());
    ensure!(
        done.iter().all(|e| e.amount == U256::from(50)) && done[2].pulled == U256::from(150),
        "each capped at 50, 150 in all: {done:?}"
    );
    let policy = w.escrow()?.autoTopUpOf(lease).call().await?;
    ensure!(
        policy.pulled == alloy::primitives::aliases::U96::from(150),
        "policy used up"
    );
    // The cap is reached: the runway runs down below the minimum (60 s), no fourth top-up,
    // and the lease is suspended.
    advance_until(&w, lease, LeaseStatus::Suspended, 15, &keeper).await?;
    ensure!(
        events::<LeaseEscrow::AutoTopUpExecuted>(&w, lease)
            .await?
            .len()
            == 3,
        "no top-up beyond the total cap"
    );
    wait_running(&w, lease, false, &keeper).await?;
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_lease_without_a_policy_is_suspended_resumed_and_terminated_after_its_grace_period(
    pool: PgPool,
) -> Result<()> {
    // A grace period long enough for the test's own steps in wall-clock time.
    let settings = Settings {
        min_runway: 120,
        grace_period: 60,
        min_open_runway: 240,
        ..settings()
    };
    let w = world_with(&pool.connect_options(), KEEPER_ENV, PER_SECOND, settings).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let manifest = booting_manifest();
    let lease = open_lease_for(&w.chain, &w.c, TENANT, &manifest, "", 250).await?;
    upload(
        &w.setup.gateway(),
        &w.chain,
        w.c.escrow,
        TENANT,
        lease,
        &manifest,
    )
    .await?;
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    let url = w.endpoint(lease).await?;
    serves(&format!("{url}/boots"), "boot\n").await?;

    // 150 s later the runway (100 s) is below the minimum (120 s): suspended, nothing runs,
    // the volume stays.
    advance_until(&w, lease, LeaseStatus::Suspended, 30, &keeper).await?;
    wait_running(&w, lease, false, &keeper).await?;
    ensure!(
        fetch(&format!("{url}/boots")).await.is_none(),
        "a suspended lease serves nothing"
    );
    ensure!(
        !volumes_of(&w, lease)?.is_empty(),
        "the volume is kept while suspended"
    );

    // A manual top-up restores the runway: resumed, started again on the same volume.
    mined(w.escrow()?.topUp(lease, U256::from(300)), "topUp").await?;
    ensure!(
        w.status(lease).await? == LeaseStatus::Active,
        "the top-up resumed the lease"
    );
    serves(&format!("{url}/boots"), "boot\nboot\n")
        .await
        .wrap_err_with(|| keeper.log_text())?;

    // Runs down again: suspended a second time (once the first suspension is billed), then
    // terminated when the grace period is over; everything of the lease is removed.
    advance_until(&w, lease, LeaseStatus::Suspended, 30, &keeper).await?;
    advance_until(&w, lease, LeaseStatus::Closing, 15, &keeper).await?;
    let l = w.escrow()?.getLease(lease).call().await?;
    ensure!(l.closeReason == 2, "closed as exhausted");
    wait_for("teardown", WAIT, || async {
        let Ok(workload) = w.workload(lease).await else {
            return Ok(None);
        };
        Ok((workload.is_none() && volumes_of(&w, lease)?.is_empty()).then_some(()))
    })
    .await
    .wrap_err_with(|| keeper.log_text())?;
    let suspended = events::<LeaseEscrow::LeaseSuspended>(&w, lease).await?;
    let resumed = events::<LeaseEscrow::LeaseResumed>(&w, lease).await?;
    ensure!(
        suspended.len() == 2 && resumed.len() == 1,
        "suspended twice, resumed once: {} / {}",
        suspended.len(),
        resumed.len()
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn an_updated_manifest_is_rolled_out_without_a_new_lease(pool: PgPool) -> Result<()> {
    let w = crate::keeper::world(&pool.connect_options(), &[]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let v1 = hello_manifest();
    let (lease, _) = w.lease_with(&v1, &v1).await?;
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    let url = w.endpoint(lease).await?;
    serves(&url, HELLO_BODY).await?;

    let v2 = String::from_utf8(hello_manifest())?
        .replace(
            "    image: localhost/berth-hello:latest\n",
            "    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"echo version 2 > /data/index.html && exec /bin/busybox httpd -f -p 8080 -h /data\"]\n    volumes: [{name: data, mount: /data}]\n",
        )
        .into_bytes();
    mined(
        w.escrow()?
            .updateManifest(lease, alloy::primitives::keccak256(&v2), String::new()),
        "updateManifest",
    )
    .await?;
    let (status, body) =
        upload(&w.setup.gateway(), &w.chain, w.c.escrow, TENANT, lease, &v2).await?;
    ensure!(
        status == 202,
        "upload of manifest version 1: {status} {body}"
    );
    serves(&url, "version 2\n")
        .await
        .wrap_err_with(|| keeper.log_text())?;
    ensure!(
        w.status(lease).await? == LeaseStatus::Active,
        "the same lease, still active"
    );
    ensure!(
        w.escrow()?.leaseCount().call().await? == U256::from(1),
        "no new lease"
    );
    let workload = w.workload(lease).await?;
    ensure!(
        workload.as_ref().and_then(|wl| wl.manifest_version) == Some(1),
        "the workload runs version 1: {workload:?}"
    );
    Ok(())
}
