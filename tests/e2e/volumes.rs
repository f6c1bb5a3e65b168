//! A persistent volume keeps its data through everything a lease lives through (a container
//! restart, a keeper SIGKILL, an in-place update, suspension and resumption) and is gone
//! once the lease ends (anvil + Postgres + podman + the keeper process).

use alloy::primitives::U256;
use berth_bindings::LeaseStatus;
use berth_e2e::{Settings, keeper::*, mined, open_lease_for};
use eyre::{Result, WrapErr, ensure};
use sqlx::PgPool;

use crate::{
    keeper::{TENANT, WAIT, World, world_with},
    runway::{KEEPER_ENV, PER_SECOND, advance_until, settings, volumes_of, wait_running},
};

/// The hello image serving `/data`, where it leaves a random id once and a line per start.
fn manifest(greeting: &str) -> Vec<u8> {
    format!(
        "version: 1\nservices:\n  web:\n    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"[ -f /data/first ] || cat /proc/sys/kernel/random/uuid > /data/first; echo boot >> /data/boots && exec /bin/busybox httpd -f -p 8080 -h /data\"]\n    env: {{GREETING: {greeting}}}\n    ports: [{{port: 8080, expose: http}}]\n    resources: {{cpu: 500m, memory: 64Mi}}\n    volumes: [{{name: data, mount: /data, persistent: true, size: 1Gi}}]\n"
    )
    .into_bytes()
}

/// What `/data/first` and `/data/boots` hold now (waiting for the app to answer).
async fn data(url: &str, boots: usize) -> Result<String> {
    let first = wait_for(
        &format!("{url}/boots to list {boots} starts"),
        WAIT,
        || async {
            let Some(b) = fetch(&format!("{url}/boots")).await else {
                return Ok(None);
            };
            if b.lines().count() < boots {
                return Ok(None);
            }
            Ok(fetch(&format!("{url}/first")).await)
        },
    )
    .await?;
    ensure!(first.trim().len() == 36, "an id in /data/first: {first:?}");
    Ok(first)
}

fn restart_container(w: &World, lease: U256) -> Result<()> {
    let out = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args([
            "ps",
            "--quiet",
            "--filter",
            &format!("label=berth.dev/lease-id={lease}"),
            "--filter",
            &format!("label=berth.dev/chain-id={}", w.chain.chain_id()),
        ])
        .output()?;
    let ids = String::from_utf8_lossy(&out.stdout);
    let id = ids
        .lines()
        .next()
        .ok_or_else(|| eyre::eyre!("no container of lease {lease}"))?;
    let status = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(["restart", "--time", "1", id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "podman restart {id}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_persistent_volume_outlives_restarts_updates_and_suspension_but_not_its_lease(
    pool: PgPool,
) -> Result<()> {
    let settings = Settings {
        min_runway: 120,
        grace_period: 60,
        min_open_runway: 240,
        ..settings()
    };
    let w = world_with(&pool.connect_options(), KEEPER_ENV, PER_SECOND, settings).await?;
    let mut keeper = KeeperProcess::start(&w.setup).await?;
    let v1 = manifest("one");
    let lease = open_lease_for(&w.chain, &w.c, TENANT, &v1, "", 250).await?;
    upload(&w.setup.gateway(), &w.chain, w.c.escrow, TENANT, lease, &v1).await?;
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    let url = w.endpoint(lease).await?;
    let first = data(&url, 1).await?;
    ensure!(
        volumes_of(&w, lease)?.len() == 1,
        "one volume: {:?}",
        volumes_of(&w, lease)?
    );

    restart_container(&w, lease)?;
    ensure!(
        data(&url, 2).await? == first,
        "kept across a container restart"
    );

    keeper.kill9();
    let keeper = KeeperProcess::start(&w.setup).await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    ensure!(
        data(&url, 2).await? == first,
        "kept across a keeper SIGKILL"
    );

    let v2 = manifest("two");
    mined(
        w.escrow()?
            .updateManifest(lease, alloy::primitives::keccak256(&v2), String::new()),
        "updateManifest",
    )
    .await?;
    let (status, body) =
        upload(&w.setup.gateway(), &w.chain, w.c.escrow, TENANT, lease, &v2).await?;
    ensure!(status == 202, "upload of the update: {status} {body}");
    wait_for("the update to roll out", WAIT, || async {
        let wl = w.workload(lease).await?;
        Ok((wl.and_then(|wl| wl.manifest_version) == Some(1)).then_some(()))
    })
    .await
    .wrap_err_with(|| keeper.log_text())?;
    ensure!(data(&url, 3).await? == first, "kept across an update");

    advance_until(&w, lease, LeaseStatus::Suspended, 30, &keeper).await?;
    wait_running(&w, lease, false, &keeper).await?;
    mined(w.escrow()?.topUp(lease, U256::from(300)), "topUp").await?;
    ensure!(w.status(lease).await? == LeaseStatus::Active, "resumed");
    ensure!(data(&url, 4).await? == first, "kept across suspension");

    mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    wait_for("the lease's volume to be removed", WAIT, || async {
        let gone = w.workload(lease).await?.is_none() && volumes_of(&w, lease)?.is_empty();
        Ok(gone.then_some(()))
    })
    .await
    .wrap_err_with(|| keeper.log_text())?;
    Ok(())
}
