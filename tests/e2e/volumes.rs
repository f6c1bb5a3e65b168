//! A persistent volume keeps its data through everything a lease lives through (a container
//! restart, a keeper SIGKILL, an in-place update, suspension and resumption) and is gone
//! once the lease ends and its final report is settled (anvil + Postgres + podman + the
//! keeper process).

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

fn crash_container(w: &World, lease: U256) -> Result<()> {
    let out = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(["ps", "--format", "json"])
        .output()?;
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    // Filters on several labels may match any of them: pick by every label here.
    let chain = w.chain.chain_id().to_string();
    let lease_id = lease.to_string();
    let id = all
        .iter()
        .find(|c| {
            c["IsInfra"] != true
                && c["Labels"]["berth.dev/chain-id"] == chain.as_str()
                && c["Labels"]["berth.dev/lease-id"] == lease_id.as_str()
        })
        .and_then(|c| c["Id"].as_str())
        .ok_or_else(|| eyre::eyre!("no container of lease {lease}"))?
        .to_string();
    // Killed, the restart policy starts it again (`podman restart` races that policy: it
    // may report a failure and restart the container twice).
    let out = std::process::Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(["kill", "--signal", "KILL", &id])
        .output()?;
    ensure!(
        out.status.success(),
        "podman kill {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    crash_container(&w, lease)?;
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

    // The lease ends: its pods go at once, its volume once the final report (up to the close)
    // is settled on chain.
    mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    let closed_at = w.escrow()?.getLease(lease).call().await?.closedAt;
    wait_for("the lease's volume to be removed", WAIT, || async {
        let gone = w.workload(lease).await?.is_none() && volumes_of(&w, lease)?.is_empty();
        Ok(gone.then_some(()))
    })
    .await
    .wrap_err_with(|| keeper.log_text())?;
    let reports = w.reports(lease).await?;
    ensure!(
        reports.iter().any(|r| r.to >= closed_at),
        "the volume went before the final report (closed at {closed_at}): {:?}",
        reports.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>()
    );
    ensure!(
        keeper
            .log_text()
            .contains("volumes deleted after the final report"),
        "the keeper says why the volume went when it did"
    );

    // The lease's feed tells the same story, each event once.
    let events = wait_for("the feed to show the teardown", WAIT, || async {
        let kinds = event_kinds(&w, lease).await?;
        Ok(kinds.contains(&"terminated".to_string()).then_some(kinds))
    })
    .await?;
    // (The killed container came back through the keeper, which starts a stopped workload,
    // not through podman's restart policy: restarts are the crash-loop test's.)
    for want in [
        "deployed",
        "confirmed",
        "updated",
        "suspended",
        "resumed",
        "terminated",
    ] {
        ensure!(
            events.iter().filter(|k| *k == want).count() == 1,
            "`{want}` once in {events:?}"
        );
    }
    Ok(())
}

/// The kinds of a lease's events, in order, read with the tenant's access token.
pub(crate) async fn events_of(w: &World, lease: U256) -> Result<Vec<serde_json::Value>> {
    let expires_at = w.chain.now().await?.max(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    ) + 300;
    let token = w.access_token(
        TENANT,
        berth_protocol::access::Operation::Events,
        lease,
        expires_at,
    )?;
    let answer: serde_json::Value = alloy::transports::http::reqwest::Client::new()
        .get(format!("{}/v1/leases/{lease}/events", w.setup.gateway()))
        .header("authorization", token)
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["events"].as_array().cloned().unwrap_or_default())
}

async fn event_kinds(w: &World, lease: U256) -> Result<Vec<String>> {
    Ok(events_of(w, lease)
        .await?
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[sqlx::test(migrations = false)]
async fn a_crashing_service_shows_its_restarts_with_exit_codes_and_a_crash_loop(
    pool: PgPool,
) -> Result<()> {
    let w = crate::keeper::world(&pool.connect_options(), &[]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let manifest = b"version: 1\nservices:\n  app:\n    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"sleep 3; exit 3\"]\n    resources: {cpu: 100m, memory: 32Mi}\n";
    let (lease, status) = w.lease_with(manifest, manifest).await?;
    ensure!(status == 202, "upload: {status}");
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    let events = wait_for("a crash loop in the feed", WAIT, || async {
        let events = events_of(&w, lease).await?;
        Ok(events
            .iter()
            .any(|e| e["kind"] == "crash_loop")
            .then_some(events))
    })
    .await
    .wrap_err_with(|| keeper.log_text())?;
    let restarts: Vec<_> = events.iter().filter(|e| e["kind"] == "restarted").collect();
    ensure!(
        restarts.len() >= 3
            && restarts
                .iter()
                .all(|e| e["detail"]["exit_code"] == 3 && e["detail"]["service"] == "app"),
        "restarts with exit code 3: {events:?}"
    );
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    ensure!(seqs.windows(2).all(|p| p[0] < p[1]), "in order: {seqs:?}");
    Ok(())
}
