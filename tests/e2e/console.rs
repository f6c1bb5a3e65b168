//! The web console in Debian's Chromium against the real stack: anvil, Postgres, podman, a
//! keeper and an indexer as processes; the console built by Vite and served as static files by
//! `vite preview`; a wallet injected into the page (EIP-1193 + EIP-6963) whose requests a local
//! account answers. The browser half is `console/e2e/story.mjs`; this half starts the stack,
//! then checks on chain and in the indexer what the page claimed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use alloy::primitives::U256;
use berth_bindings::{LeaseEscrow, LeaseStatus, ProviderRegistry, TestToken};
use berth_e2e::{
    Chain, database_url, deploy, indexer_binary, keeper::*, mined, repo_root, wait_listening,
};
use eyre::{Result, WrapErr, ensure};
use sqlx::PgPool;

use crate::cli_harness::{OPERATOR, OWNER, PodsOf, quick_keeper_env, settings, token_balance};
use crate::keeper::{HELLO_BODY, TENANT};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the console into `dir` with the project's Vite (from package-lock.json).
fn build_console(dir: &Path) -> Result<()> {
    let root = repo_root();
    let out = Command::new(root.join("node_modules/.bin/vite"))
        .current_dir(&root)
        .args([
            "build",
            "--config",
            "console/vite.config.mts",
            "--logLevel",
            "warn",
            "--outDir",
        ])
        .arg(dir)
        .output()
        .wrap_err("running vite build (npm ci first)")?;
    ensure!(
        out.status.success(),
        "vite build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Where the screenshots go: kept after the test, named in its output.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("BERTH_SCREENSHOTS").map_or_else(
        || {
            std::env::temp_dir().join(format!(
                "berth-console-screenshots-{}",
                berth_e2e::unique_suffix()
            ))
        },
        PathBuf::from,
    )
}

#[sqlx::test(migrations = false)]
async fn a_tenant_buys_a_container_in_the_browser_and_sees_it_through_to_withdrawal(
    pool: PgPool,
) -> Result<()> {
    hello_image()?;
    let chain = Chain::start()?;
    let c = deploy(&chain, settings()).await?;
    let podman = PodmanService::start().await?;
    let db = database_url(&pool.connect_options());
    let mut setup = KeeperSetup::new(&chain, &c, settings(), db.clone(), &podman)?;
    setup.env = quick_keeper_env();
    let _cleanup = PodsOf(chain.chain_id());

    // provider 1 (the keeper's API as its endpoint) and provider 2, too small for the example
    for (owner, endpoint, capacity) in [
        (OWNER, setup.gateway(), [4000, 8192, 10]),
        (5, "http://127.0.0.1:9".to_owned(), [250, 8192, 10]),
    ] {
        mined(
            ProviderRegistry::new(c.registry, chain.wallet(owner)?).register(
                chain.signer(OPERATOR)?.address(),
                c.token,
                endpoint,
                "region=local".into(),
                capacity,
                [2_777_777_778, 5_555_556, 271_267, 0],
                U256::ZERO,
            ),
            "register",
        )
        .await?;
    }
    let _keeper = KeeperProcess::start(&setup).await?;
    let _indexer = Killed(
        Command::new(indexer_binary()?)
            .env_clear()
            .env("BERTH_DATABASE_URL", &db)
            .env("BERTH_RPC_URL", chain.rpc_url())
            .env("BERTH_DEPLOYMENT", &setup.deployment)
            .env("BERTH_METRICS_ADDR", "")
            .env("BERTH_POLL_INTERVAL_MS", "100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .wrap_err("spawning berth-indexer")?,
    );
    let tenant = chain.signer(TENANT)?.address();
    mined(
        TestToken::new(c.token, chain.wallet(TENANT)?).mint(tenant, U256::from(100_000_000u64)),
        "mint",
    )
    .await?;

    // the console as static files with the deployment beside them
    let site = std::env::temp_dir().join(format!("berth-console-{}", berth_e2e::unique_suffix()));
    build_console(&site)?;
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&setup.deployment)?)?;
    config["rpcUrl"] = chain.rpc_url().into();
    config["chainName"] = "anvil".into();
    std::fs::write(site.join("config.json"), config.to_string())?;
    let port = free_port()?;
    let log = site.with_extension("preview.log");
    let mut preview = Killed(
        Command::new(repo_root().join("node_modules/.bin/vite"))
            .current_dir(repo_root())
            .args([
                "preview",
                "--config",
                "console/vite.config.mts",
                "--host",
                "127.0.0.1",
                "--strictPort",
                "--port",
            ])
            .arg(port.to_string())
            .arg("--outDir")
            .arg(&site)
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .wrap_err("starting vite preview")?,
    );
    wait_listening(&mut preview.0, port, "vite preview", &log).await?;

    // the browser's story
    let shots = screenshot_dir();
    let before = token_balance(&chain, &c, tenant).await?;
    let story = tokio::task::spawn_blocking({
        let (rpc, shots, escrow) = (chain.rpc_url(), shots.clone(), c.escrow);
        let key = format!("{}", chain.signer(TENANT)?.to_bytes());
        let owner_key = format!("{}", chain.signer(OWNER)?.to_bytes());
        let chain_id = chain.chain_id();
        move || {
            Command::new("node")
                .current_dir(repo_root())
                .arg("console/e2e/story.mjs")
                .env("BERTH_CONSOLE_URL", format!("http://127.0.0.1:{port}/"))
                .env("BERTH_RPC_URL", rpc)
                .env("BERTH_CHAIN_ID", chain_id.to_string())
                .env("BERTH_ESCROW", escrow.to_string())
                .env("BERTH_TENANT_KEY", key)
                .env("BERTH_OWNER_KEY", owner_key)
                .env("BERTH_SCREENSHOTS", &shots)
                .env("BERTH_EXPECT_BODY", HELLO_BODY)
                .output()
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&story.stdout);
    println!("{stdout}screenshots in {}", shots.display());
    ensure!(
        story.status.success(),
        "the browser story failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&story.stderr)
    );

    // what the page said, on chain: one lease (the refused signature opened none), closed,
    // paid out; the tenant spent only what the provider charged, and the owner (who had no
    // tokens) holds what it claimed
    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(0)?);
    ensure!(
        escrow.leaseCount().call().await? == U256::from(1),
        "one lease"
    );
    let lease = escrow.getLease(U256::from(1)).call().await?;
    ensure!(
        lease.status == LeaseStatus::Closed as u8 && lease.balance.is_zero(),
        "lease 1 is closed and empty: {lease:?}"
    );
    let after = token_balance(&chain, &c, tenant).await?;
    let claimed = token_balance(&chain, &c, chain.signer(OWNER)?.address()).await?;
    ensure!(!claimed.is_zero(), "the owner's claim paid nothing");
    let charged = claimed + lease.claimable + lease.pending + lease.disputed;
    ensure!(
        before - after == charged,
        "the tenant paid {} and the provider charged {charged}",
        before - after
    );
    // and in the indexer
    wait_for(
        "the indexer's view of lease 1 closed",
        Duration::from_secs(30),
        || async {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM berth.leases WHERE lease_id = 1")
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
            Ok(status.filter(|s| s == "closed"))
        },
    )
    .await?;
    Ok(())
}
