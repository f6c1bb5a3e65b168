//! The provider keeper as a real process against anvil, Postgres and podman: leases become
//! serving containers and back, bad manifests are rejected with their reason, and neither a
//! SIGKILL nor an engine or RPC outage duplicates or tears down a workload.

use std::time::Duration;

use alloy::primitives::U256;
use berth_bindings::{LeaseStatus, RejectReason};
use berth_e2e::{keeper::*, mined, open_lease_for};
use eyre::{Result, WrapErr, ensure};
use sqlx::PgPool;

pub(crate) use berth_e2e::world::{CHEAP, TENANT, WAIT, World, world, world_on, world_with};

/// Closes `lease` as its tenant and waits until its workload is gone.
pub(crate) async fn close_and_wait_gone(w: &World, lease: U256) -> Result<()> {
    mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    wait_for("the workload to be removed", WAIT, || async {
        Ok(w.workload(lease).await?.is_none().then_some(()))
    })
    .await
}

/// Waits until `url` answers with `body`.
pub(crate) async fn serves(url: &str, body: &str) -> Result<()> {
    wait_for(&format!("{url} to serve"), WAIT, || async move {
        Ok(fetch(url).await.filter(|b| b == body).map(|_| ()))
    })
    .await
}

pub(crate) const HELLO_BODY: &str = "hello from berth\n";

#[sqlx::test(migrations = false)]
async fn a_lease_is_deployed_served_confirmed_and_torn_down_on_close(pool: PgPool) -> Result<()> {
    let w = world(&pool.connect_options(), &[]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let manifest = hello_manifest();
    let (lease, status) = w.lease_with(&manifest, &manifest).await?;
    ensure!(status == 202, "upload answered {status}");
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;

    let endpoint = w.endpoint(lease).await?;
    ensure!(
        endpoint.starts_with("http://127.0.0.1:"),
        "endpoint {endpoint}"
    );
    serves(&endpoint, HELLO_BODY).await?;
    ensure!(w.pods(lease).await? == 1, "one pod for the lease");
    let status: serde_json::Value =
        alloy::transports::http::reqwest::get(format!("{}/v1/leases/{lease}", keeper.gateway))
            .await?
            .json()
            .await?;
    ensure!(
        status["status"] == "active" && status["workload"]["running"] == true,
        "gateway status {status}"
    );

    mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    wait_for("the workload to be removed", WAIT, || async {
        Ok(w.workload(lease).await?.is_none().then_some(()))
    })
    .await?;
    ensure!(w.pods(lease).await? == 0, "no pod left");
    ensure!(
        fetch(&endpoint).await.is_none(),
        "the endpoint still answers after close"
    );
    // podman shows the pod gone before the keeper's removal call returns and is counted.
    wait_for(
        "the teardown to be counted",
        Duration::from_secs(10),
        || async {
            let metrics = keeper.metrics().await?;
            Ok(metrics
                .contains("berth_keeper_teardowns_total 1")
                .then_some(()))
        },
    )
    .await?;

    // Instead of an upload, a manifest URI the keeper downloads.
    let url = serve_always(manifest.clone()).await?;
    let lease = open_lease_for(&w.chain, &w.c, TENANT, &manifest, &url, 10_000_000).await?;
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    serves(&w.endpoint(lease).await?, HELLO_BODY).await?;
    Ok(())
}

/// Serves `body` over HTTP on a free local port (to every request); returns the URL.
async fn serve_always(body: Vec<u8>) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/manifest.yaml", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
    });
    Ok(url)
}

#[sqlx::test(migrations = false)]
async fn bad_manifests_are_rejected_with_their_reason_and_nothing_runs(pool: PgPool) -> Result<()> {
    let w = world(
        &pool.connect_options(),
        &[("BERTH_MANIFEST_TIMEOUT_S", "60")],
    )
    .await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let hello = String::from_utf8(hello_manifest())?;
    let privileged = format!("{hello}    privileged: true\n");
    let greedy = hello.replace("cpu: 500m", "cpu: \"2\"");
    let bad_yaml = "version: 1\nservices: [unclosed\n".to_string();
    let mut too_large = hello.clone();
    too_large.push_str(&format!("# {}\n", "x".repeat(70 * 1024)));

    let mut cases = Vec::new();
    for (name, committed, uploaded, reason, http) in [
        (
            "privileged",
            privileged.as_bytes(),
            privileged.as_bytes(),
            RejectReason::PolicyViolation,
            422,
        ),
        (
            "hash mismatch",
            hello.as_bytes(),
            privileged.as_bytes(),
            RejectReason::ManifestHashMismatch,
            422,
        ),
        (
            "too large",
            too_large.as_bytes(),
            too_large.as_bytes(),
            RejectReason::ManifestInvalid,
            422,
        ),
        (
            "bad YAML",
            bad_yaml.as_bytes(),
            bad_yaml.as_bytes(),
            RejectReason::ManifestInvalid,
            422,
        ),
        (
            "over the reservation",
            greedy.as_bytes(),
            greedy.as_bytes(),
            RejectReason::ResourcesExceedReservation,
            422,
        ),
    ] {
        let (lease, status) = w.lease_with(committed, uploaded).await?;
        ensure!(
            status == http,
            "{name}: upload answered {status}, expected {http}"
        );
        cases.push((name, lease, reason));
    }
    // An upload signed by someone else is refused and stores nothing; with no manifest, the
    // lease is rejected once the manifest timeout passes on chain time.
    let silent = open_lease_for(&w.chain, &w.c, TENANT, hello.as_bytes(), "", 10_000_000).await?;
    let (status, body) = upload(
        &w.setup.gateway(),
        &w.chain,
        w.c.escrow,
        5,
        silent,
        hello.as_bytes(),
    )
    .await?;
    ensure!(
        status == 403,
        "an upload signed by someone else answered {status}: {body}"
    );
    w.chain.advance(120).await?;
    cases.push(("no manifest", silent, RejectReason::ManifestUnavailable));

    for (name, lease, reason) in cases {
        w.wait_status(lease, LeaseStatus::Rejected, &keeper)
            .await
            .wrap_err(name)?;
        let got = w.reject_reason(lease).await?;
        ensure!(
            got == Some(reason),
            "{name}: rejected for {got:?}, expected {reason:?}"
        );
        ensure!(
            w.pods(lease).await? == 0,
            "{name}: a pod exists for a rejected lease"
        );
        ensure!(
            w.escrow()?.refundableOf(lease).call().await? == U256::from(10_000_000),
            "{name}: the whole deposit is the tenant's to withdraw"
        );
    }
    let log = keeper.log_text();
    ensure!(
        log.contains("privileged containers are not allowed"),
        "the log names the rule:\n{log}"
    );

    // Malformed requests to the gateway get a clear status and JSON error, and store nothing.
    let http = alloy::transports::http::reqwest::Client::new();
    let gw = &keeper.gateway;
    for (what, request, want) in [
        (
            "no signature",
            http.put(format!("{gw}/v1/leases/1/manifest"))
                .body(hello.clone()),
            401,
        ),
        (
            "garbled signature",
            http.put(format!("{gw}/v1/leases/1/manifest"))
                .header("berth-signature", "zz")
                .body(hello.clone()),
            401,
        ),
        (
            "a lease id that is not a number",
            http.get(format!("{gw}/v1/leases/abc")),
            400,
        ),
        (
            "no such lease",
            http.get(format!("{gw}/v1/leases/999")),
            404,
        ),
        (
            "no such report",
            http.get(format!("{gw}/v1/leases/1/reports/7")),
            404,
        ),
        (
            "a body over 1 MiB",
            http.put(format!("{gw}/v1/leases/1/manifest"))
                .header("berth-signature", "0x00")
                .body(vec![b'#'; 2 << 20]),
            413,
        ),
    ] {
        let resp = request.send().await?;
        let status = resp.status().as_u16();
        ensure!(status == want, "{what}: answered {status}, expected {want}");
        if want != 413 {
            let body: serde_json::Value = resp.json().await?;
            ensure!(
                body["error"].is_string(),
                "{what}: no error message in {body}"
            );
        }
    }
    let (status, _) = upload(
        &w.setup.gateway(),
        &w.chain,
        w.c.escrow,
        TENANT,
        U256::from(999),
        hello.as_bytes(),
    )
    .await?;
    ensure!(
        status == 404,
        "an upload for a lease that does not exist answered {status}"
    );
    Ok(())
}

/// A manifest whose server starts 3 s late, so the keeper can be killed between deploying
/// and confirming.
fn slow_manifest() -> Vec<u8> {
    let hello = String::from_utf8(hello_manifest()).unwrap_or_default();
    hello.replace(
        "    image: localhost/berth-hello:latest\n",
        "    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"sleep 3; exec /bin/busybox httpd -f -p 8080 -h /www\"]\n",
    ).into_bytes()
}

#[sqlx::test(migrations = false)]
async fn a_keeper_killed_before_confirming_restarts_into_one_workload_confirmed_once(
    pool: PgPool,
) -> Result<()> {
    let w = world(&pool.connect_options(), &[]).await?;
    let mut first = KeeperProcess::start(&w.setup).await?;
    let manifest = slow_manifest();
    let (lease, status) = w.lease_with(&manifest, &manifest).await?;
    ensure!(status == 202, "upload answered {status}");
    wait_for("the workload to be created", WAIT, || async {
        Ok((w.pods(lease).await? > 0).then_some(()))
    })
    .await?;
    first.kill9();
    ensure!(
        w.status(lease).await? == LeaseStatus::Pending,
        "killed before confirming"
    );

    let second = KeeperProcess::start(&w.setup).await?;
    w.wait_status(lease, LeaseStatus::Active, &second).await?;
    serves(&w.endpoint(lease).await?, HELLO_BODY).await?;
    ensure!(
        w.pods(lease).await? == 1,
        "exactly one workload after the restart"
    );
    ensure!(
        confirmations_of(&w.chain, w.c.escrow, lease).await? == 1,
        "confirmed once on chain"
    );
    let sent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM berth_keeper.transactions WHERE action = 'confirm'",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(sent == 1, "one confirmation transaction sent, not {sent}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn engine_and_rpc_outages_tear_nothing_down_and_the_keeper_recovers(
    pool: PgPool,
) -> Result<()> {
    let mut w = world(&pool.connect_options(), &[]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let manifest = hello_manifest();
    let (kept, _) = w.lease_with(&manifest, &manifest).await?;
    let (closed, _) = w.lease_with(&manifest, &manifest).await?;
    for lease in [kept, closed] {
        w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    }
    let kept_url = w.endpoint(kept).await?;

    // The engine goes away: the tenant closes one lease and opens another meanwhile.
    w.podman.stop();
    mined(w.escrow()?.closeLease(closed), "closeLease").await?;
    let (opened, status) = w.lease_with(&manifest, &manifest).await?;
    ensure!(
        status == 202,
        "uploads work while the engine is down, got {status}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        w.pods(kept).await? == 1 && w.pods(closed).await? == 1,
        "nothing removed while the engine is unreachable"
    );
    serves(&kept_url, HELLO_BODY).await?;
    ensure!(
        keeper.log_text().contains("pass failed"),
        "the outage is logged"
    );

    // The RPC goes away: still nothing is torn down.
    let pid = w.chain.pid().to_string();
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()?;
    w.podman.restart().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = (w.pods(kept).await?, w.pods(closed).await?);
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()?;
    ensure!(
        during == (1, 1),
        "nothing removed while the RPC is unreachable: {during:?}"
    );

    // Both back: the keeper converges.
    w.wait_status(opened, LeaseStatus::Active, &keeper).await?;
    wait_for("the closed lease's workload to go", WAIT, || async {
        Ok((w.pods(closed).await? == 0).then_some(()))
    })
    .await?;
    ensure!(
        w.pods(kept).await? == 1,
        "the kept lease still has one workload"
    );
    serves(&kept_url, HELLO_BODY).await?;
    serves(&w.endpoint(opened).await?, HELLO_BODY).await?;
    Ok(())
}
