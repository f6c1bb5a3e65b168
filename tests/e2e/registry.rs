//! Private images from a real registry (Debian's docker-registry with htpasswd auth, on
//! loopback): a lease whose sealed `pull_secret` holds the login runs the image, pinned to the
//! digest pulled; the same image without a login, or with a wrong one, is rejected as
//! `ImageUnavailable` with the deposit refunded — also after the image is already on the host,
//! since a registry image is pulled with the lease's own login at every deploy.

use alloy::primitives::U256;
use berth_bindings::{LeaseStatus, RejectReason};
use berth_e2e::{
    Settings,
    gateway::scratch_dir,
    keeper::{KeeperProcess, PodmanService, hello_image},
    registry::Registry,
};
use berth_protocol::secrets;
use eyre::{Result, ensure};

use crate::{
    keeper::{CHEAP, HELLO_BODY, TENANT, serves, world_on},
    secrets::{key_file, register_key, seal_manifest},
};

fn service(image: &str, pull_secret: bool) -> String {
    let pull = if pull_secret {
        "    pull_secret: registry\n"
    } else {
        ""
    };
    format!(
        "  web:\n    image: {image}\n{pull}    ports:\n      - port: 8080\n        expose: http\n    resources:\n      cpu: 500m\n      memory: 256Mi\n"
    )
}

#[sqlx::test(migrations = false)]
async fn a_private_image_runs_only_with_the_leases_registry_login(
    pool: sqlx::PgPool,
) -> Result<()> {
    let dir = scratch_dir("registry")?;
    let registry = Registry::start(&dir.join("registry"), "ci", "pull-pw-1").await?;
    hello_image()?;
    let image = registry.push(
        "localhost/berth-hello:latest",
        "berth/hello:v1",
        "ci:pull-pw-1",
    )?;
    let conf = registry.registries_conf.display().to_string();
    let podman =
        PodmanService::start_with_env(&[("CONTAINERS_REGISTRIES_CONF", conf.as_str())]).await?;
    let (provider_secret, provider_public) = secrets::generate_key_pair();
    let (_, tenant_public) = secrets::generate_key_pair();
    let keys = key_file(&dir, &[provider_secret])?.display().to_string();
    let settings = Settings {
        min_stake: 0,
        ..Settings::default()
    };
    let w = world_on(
        &pool.connect_options(),
        &[("BERTH_ENCRYPTION_KEYS", keys.as_str())],
        CHEAP,
        settings,
        podman,
    )
    .await?;
    register_key(&w, &provider_public).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let tenant = w.chain.signer(TENANT)?.address();
    let keys = (&provider_public, &tenant_public);

    let with_login = seal_manifest(
        &w,
        tenant,
        1,
        keys,
        &service(&image, true),
        &[("registry", "ci:pull-pw-1")],
    )?;
    let (good, status) = w
        .lease_with(with_login.as_bytes(), with_login.as_bytes())
        .await?;
    ensure!(status == 202, "upload answered {status}");
    w.wait_status(good, LeaseStatus::Active, &keeper).await?;
    serves(&w.endpoint(good).await?, HELLO_BODY).await?;
    let log = keeper.log_text();
    ensure!(
        log.contains("image pulled and pinned")
            && log.contains(&format!("{}/berth/hello@sha256:", registry.host)),
        "the image is pinned to its digest:\n{log}"
    );
    ensure!(!log.contains("pull-pw-1"), "the login reached the log");
    // The lease's status names the digest it runs.
    let status = berth_e2e::keeper::fetch(&format!("{}/v1/leases/{good}", w.setup.gateway()))
        .await
        .unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let running = status["workload"]["images"]["web"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        running.starts_with(&format!("{}/berth/hello@sha256:", registry.host)),
        "the status reports the pinned image: {status}"
    );

    // The image is on the host now; still no way in without the lease's own login.
    let anonymous = format!("version: 1\nservices:\n{}", service(&image, false));
    let wrong = seal_manifest(
        &w,
        tenant,
        1,
        keys,
        &service(&image, true),
        &[("registry", "ci:wrong")],
    )?;
    for (name, text) in [("no login", anonymous), ("a wrong login", wrong)] {
        let (lease, _) = w.lease_with(text.as_bytes(), text.as_bytes()).await?;
        w.wait_status(lease, LeaseStatus::Rejected, &keeper).await?;
        let reason = w.reject_reason(lease).await?;
        ensure!(
            reason == Some(RejectReason::ImageUnavailable),
            "{name}: {reason:?}"
        );
        ensure!(w.pods(lease).await? == 0, "{name}: a pod runs");
        ensure!(
            w.escrow()?.refundableOf(lease).call().await? == U256::from(10_000_000),
            "{name}: the deposit is refunded"
        );
    }
    ensure!(
        keeper
            .log_text()
            .contains("cannot be pulled without a login"),
        "the log says why:\n{}",
        keeper.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
