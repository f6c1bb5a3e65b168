//! The `berth` CLI driven as a user drives it — a real process against anvil, Postgres, podman
//! and a real keeper — asserting on its `--json` output and on the chain's balances; and its
//! answers to bad input: one line, a documented exit code, nothing changed on chain.

use std::{path::PathBuf, process::Command};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use berth_bindings::{LeaseEscrow, LeaseStatus, TestToken};
use berth_e2e::{Chain, Settings, deploy, keeper::*, mined, write_deployment};
use eyre::{Result, ensure};
use serde_json::Value;
use sqlx::PgPool;

use crate::keeper::{HELLO_BODY, TENANT, WAIT, serves};

use crate::cli_harness::{
    Cli, OPERATOR, OWNER, PodsOf, Run, manifest_file, quick_keeper_env, settings, str_of,
    token_balance,
};
/// A second provider's owner (more expensive, in another region).
const OTHER_OWNER: usize = 5;

#[sqlx::test(migrations = false)]
async fn a_tenant_and_a_provider_run_a_lease_from_register_to_withdraw_with_the_cli(
    pool: PgPool,
) -> Result<()> {
    hello_image()?;
    let chain = Chain::start()?;
    let c = deploy(&chain, settings()).await?;
    let podman = PodmanService::start().await?;
    let mut setup = KeeperSetup::new(
        &chain,
        &c,
        settings(),
        berth_e2e::database_url(&pool.connect_options()),
        &podman,
    )?;
    setup.env = quick_keeper_env();
    let _cleanup = PodsOf(chain.chain_id());
    let cli = Cli {
        rpc_url: chain.rpc_url(),
        deployment: setup.deployment.clone(),
    };
    let operator = chain.signer(OPERATOR)?.address().to_string();

    // provider: register with the CLI (prices in tokens per hour)
    let reg = cli
        .run(
            &chain,
            Some(OWNER),
            &[
                "--json",
                "provider",
                "register",
                "--endpoint",
                &setup.gateway(),
                "--operator",
                &operator,
                "--attributes",
                "region=local,tier=dev",
                "--cpu",
                "4000",
                "--memory",
                "8192",
                "--storage",
                "10",
                "--base-price",
                "0.01",
                "--cpu-price",
                "0.02",
                "--memory-price",
                "0.01",
            ],
        )?
        .ok()?
        .json()?;
    ensure!(str_of(&reg, "provider") == "1", "{reg}");
    let other = cli
        .run(
            &chain,
            Some(OTHER_OWNER),
            &[
                "--json",
                "provider",
                "register",
                "--endpoint",
                "http://127.0.0.1:9",
                "--attributes",
                "region=eu",
                "--cpu",
                "4000",
                "--memory",
                "8192",
                "--base-price",
                "0.5",
                "--cpu-price",
                "1",
            ],
        )?
        .ok()?
        .json()?;
    ensure!(str_of(&other, "provider") == "2", "{other}");
    let keeper = KeeperProcess::start(&setup).await?;

    // tenant: tokens, no approval (deploy signs a permit)
    let tenant = chain.signer(TENANT)?.address();
    mined(
        TestToken::new(c.token, chain.wallet(TENANT)?).mint(tenant, U256::from(1_000_000_000u64)),
        "mint",
    )
    .await?;

    // providers: both listed, provider 1 the cheapest; a filter names what excludes each
    let market = cli
        .run(
            &chain,
            None,
            &[
                "--json",
                "providers",
                "--cpu",
                "500",
                "--memory",
                "256",
                "--all",
            ],
        )?
        .ok()?
        .json()?;
    ensure!(market["cheapest"] == 1, "{market}");
    ensure!(
        market["providers"].as_array().map(Vec::len) == Some(2),
        "{market}"
    );
    let none = cli.run(
        &chain,
        None,
        &["--json", "providers", "--attribute", "region=mars", "--all"],
    )?;
    let none = none.ok()?.json()?;
    ensure!(none["cheapest"].is_null(), "{none}");
    ensure!(
        none["providers"][1]["excluded"] == "attribute region=eu, wanted region=mars",
        "{none}"
    );

    // deploy (auto): provider 1, one transaction with a permit, endpoint serving
    let manifest = manifest_file("hello.yaml", &hello_manifest())?;
    let before = token_balance(&chain, &c, tenant).await?;
    let nonce_before = chain.wallet(0)?.get_transaction_count(tenant).await?;
    let dep = cli
        .run(
            &chain,
            Some(TENANT),
            &[
                "--json",
                "deploy",
                manifest.to_str().unwrap_or_default(),
                "--hours",
                "1",
            ],
        )?
        .ok()
        .map_err(|e| e.wrap_err(keeper.log_text()))?
        .json()?;
    let lease = U256::from(str_of(&dep, "lease").parse::<u64>()?);
    ensure!(dep["provider"] == 1 && dep["status"] == "active", "{dep}");
    let deposit: U256 = str_of(&dep, "deposit").parse()?;
    // one hour at the lease's maximum rate (0.0225 tUSD: 0.01 + 0.5 × 0.02 + 0.25 × 0.01)
    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(0)?);
    let rate = escrow.maxRateOf(lease).call().await?;
    ensure!(
        deposit == (rate * U256::from(3600)).div_ceil(U256::from(1_000_000_000u64)),
        "deposit {deposit} for rate {rate}"
    );
    ensure!(
        deposit.abs_diff(U256::from(22_500)) <= U256::from(2),
        "deposit {deposit}"
    );
    ensure!(
        chain.wallet(0)?.get_transaction_count(tenant).await? == nonce_before + 1,
        "deploy took more than one transaction"
    );
    ensure!(token_balance(&chain, &c, tenant).await? == before - deposit);
    let endpoint = str_of(&dep, "endpoint");
    serves(&endpoint, HELLO_BODY).await?;

    // status
    let st = cli
        .run(&chain, None, &["--json", "status", &lease.to_string()])?
        .ok()?
        .json()?;
    ensure!(
        st["status"] == "active" && str_of(&st, "endpoint") == endpoint,
        "{st}"
    );
    ensure!(st["runway_s"].as_u64().is_some_and(|r| r > 3000), "{st}");
    // A reader that closes the pipe early (`berth status --json | head -c0`): no panic.
    let closed = cli.run_closed_stdout(&["--json", "status", &lease.to_string()])?;
    ensure!(
        closed.code == 0 && !closed.stderr.contains("panicked"),
        "a closed stdout: {closed:?}"
    );

    // top-up
    let balance_before = escrow.getLease(lease).call().await?.balance;
    cli.run(
        &chain,
        Some(TENANT),
        &["--json", "top-up", &lease.to_string(), "--amount", "0.5"],
    )?
    .ok()?;
    let balance_after = escrow.getLease(lease).call().await?.balance;
    ensure!(
        balance_after >= balance_before + U256::from(500_000 - 1_000),
        "top-up: {balance_before} → {balance_after}"
    );

    // usage: wait for reports, then verify every one from the provider's samples
    wait_for("two usage reports", WAIT, || async {
        let st = cli
            .run(&chain, None, &["--json", "status", &lease.to_string()])?
            .ok()?
            .json()?;
        Ok((st["report_count"].as_u64().unwrap_or(0) >= 2).then_some(()))
    })
    .await?;
    let v = cli
        .run(
            &chain,
            None,
            &["--json", "verify-usage", &lease.to_string()],
        )?
        .ok()?
        .json()?;
    ensure!(v["mismatches"] == 0, "{v}");
    ensure!(
        v["reports"].as_array().is_some_and(|r| r.len() >= 2
            && r.iter()
                .all(|c| c["root_matches"] == true && c["units_match"] == true)),
        "{v}"
    );

    // dispute: the unmatured charges are frozen for the arbiter
    let disputed = cli
        .run(
            &chain,
            Some(TENANT),
            &["--json", "dispute", &lease.to_string()],
        )?
        .ok()?
        .json()?;
    let frozen: U256 = str_of(&disputed, "disputed").parse()?;
    ensure!(frozen > U256::ZERO, "{disputed}");
    ensure!(U256::from(escrow.getLease(lease).call().await?.disputed) == frozen);

    // close, the keeper's final report, the window, withdraw: the tenant gets the rest
    let closed = cli
        .run(
            &chain,
            Some(TENANT),
            &["--json", "close", &lease.to_string()],
        )?
        .ok()?
        .json()?;
    ensure!(closed["status"] == "closing", "{closed}");
    let closed_at = closed["closed_at"].as_u64().unwrap_or_default();
    wait_for("the final report", WAIT, || async {
        let l = escrow.getLease(lease).call().await?;
        Ok((l.billedUntil.to::<u64>() >= closed_at).then_some(()))
    })
    .await
    .map_err(|e| e.wrap_err(keeper.log_text()))?;
    chain.advance(31).await?;
    let rest = U256::from(escrow.getLease(lease).call().await?.balance);
    let before_withdraw = token_balance(&chain, &c, tenant).await?;
    let wd = cli
        .run(
            &chain,
            Some(TENANT),
            &["--json", "withdraw", &lease.to_string()],
        )?
        .ok()?
        .json()?;
    ensure!(
        str_of(&wd, "withdrawn").parse::<U256>()? == rest,
        "{wd} vs {rest}"
    );
    ensure!(token_balance(&chain, &c, tenant).await? == before_withdraw + rest);
    let st = cli
        .run(&chain, None, &["--json", "status", &lease.to_string()])?
        .ok()?
        .json()?;
    ensure!(st["status"] == "closed", "{st}");
    ensure!(
        LeaseStatus::from_u8(escrow.getLease(lease).call().await?.status)
            == Some(LeaseStatus::Closed)
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_fails_with_one_line_and_its_exit_code_and_changes_nothing() -> Result<()> {
    let chain = Chain::start()?;
    let c = deploy(&chain, settings()).await?;
    let deployment = write_deployment(&chain, &c, settings())?;
    let cli = Cli {
        rpc_url: chain.rpc_url(),
        deployment,
    };
    cli.run(
        &chain,
        Some(OWNER),
        &[
            "provider",
            "register",
            "--endpoint",
            "http://127.0.0.1:9",
            "--cpu",
            "4000",
            "--memory",
            "8192",
            "--base-price",
            "0.01",
            "--cpu-price",
            "0.02",
        ],
    )?
    .ok()?;
    let tenant = chain.signer(TENANT)?.address();
    mined(
        TestToken::new(c.token, chain.wallet(TENANT)?).mint(tenant, U256::from(1_000_000_000u64)),
        "mint",
    )
    .await?;
    let good = manifest_file("good.yaml", &hello_manifest())?;
    let bad = manifest_file("bad.yaml", b"version: 1\nservices:\n  web:\n    image: [\n")?;
    let unreachable = format!("http://127.0.0.1:{}", free_port()?);
    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(0)?);
    let p = chain.wallet(0)?;
    let state = || async {
        Ok::<_, eyre::Report>((
            p.get_transaction_count(tenant).await?,
            escrow.leaseCount().call().await?,
            token_balance(&chain, &c, tenant).await?,
        ))
    };
    let before = state().await?;
    let good = good.to_str().unwrap_or_default();
    let bad = bad.to_str().unwrap_or_default();
    let cases: [(&[&str], i32, &str); 15] = [
        (
            &["deploy", bad, "--hours", "1"],
            3,
            "manifest does not parse",
        ),
        (&["status", "999"], 6, "lease 999 does not exist"),
        (
            &["top-up", "999", "--amount", "1"],
            6,
            "lease 999 does not exist",
        ),
        (
            &["deploy", good, "--deposit", "0.000001"],
            7,
            "is below the minimum",
        ),
        (&["--chain-id", "1", "status", "1"], 5, "not chain 1"),
        (
            &["--rpc-url", &unreachable, "status", "1"],
            4,
            "cannot reach the RPC endpoint",
        ),
        // the manifest is checked before the chain is asked anything
        (
            &["--rpc-url", &unreachable, "deploy", bad, "--hours", "1"],
            3,
            "manifest does not parse",
        ),
        (
            &["deploy", good, "--hours", "1", "--provider", "abc"],
            3,
            "--provider `abc` is neither auto nor an id",
        ),
        (
            &["deploy", good, "--hours", "1", "--provider", "9"],
            6,
            "provider 9 does not exist",
        ),
        (
            &["deploy", good, "--hours", "1", "--attribute", "region"],
            3,
            "--attribute `region` is not key=value",
        ),
        (
            &["deploy", good, "--hours", "0"],
            3,
            "--hours must be a positive number",
        ),
        (
            &["deploy", good, "--deposit", "1.0000001"],
            3,
            "more than 6 decimal places",
        ),
        (
            &["deploy", good, "--hours", "1", "--cpu", "100"],
            3,
            "reservation:",
        ),
        (
            &[
                "provider",
                "register",
                "--endpoint",
                "http://x",
                "--cpu",
                "0",
                "--memory",
                "1",
            ],
            7,
            "ZeroCapacity",
        ),
        // no key: the one case run without BERTH_PRIVATE_KEY (see below)
        (
            &["deploy", good, "--hours", "1"],
            3,
            "pass --keystore or set BERTH_PRIVATE_KEY",
        ),
    ];
    for (i, (args, code, says)) in cases.into_iter().enumerate() {
        let key = (i + 1 < cases.len()).then_some(TENANT);
        let run = cli.run(&chain, key, args)?;
        ensure!(
            run.code == code,
            "{args:?}: exit {} (want {code}): {run:?}",
            run.code
        );
        let line = run.stderr.trim_end();
        ensure!(
            !line.contains('\n') && line.starts_with("error: ") && line.contains(says),
            "{args:?}: stderr {line:?} should be one line saying {says:?}"
        );
        ensure!(run.stdout.is_empty(), "{args:?}: stdout {:?}", run.stdout);
    }
    ensure!(state().await? == before, "bad input changed the chain");
    Ok(())
}

#[tokio::test]
async fn a_provider_runs_its_whole_lifecycle_with_a_keystore() -> Result<()> {
    let s = Settings {
        min_stake: 100_000_000,
        unbonding_delay: 3600,
        ..settings()
    };
    let chain = Chain::start()?;
    let c = deploy(&chain, s).await?;
    let cli = Cli {
        rpc_url: chain.rpc_url(),
        deployment: write_deployment(&chain, &c, s)?,
    };
    let owner = chain.signer(OWNER)?.address();
    mined(
        TestToken::new(c.token, chain.wallet(OWNER)?).mint(owner, U256::from(150_000_000u64)),
        "mint",
    )
    .await?;
    // an encrypted keystore made by cast, its password in a file
    let dir = std::env::temp_dir().join(format!(
        "berth-keystore-{}-{}",
        std::process::id(),
        berth_e2e::unique_suffix()
    ));
    std::fs::create_dir_all(&dir)?;
    let key = format!("{}", chain.signer(OWNER)?.to_bytes());
    let status = Command::new(berth_e2e::foundry_binary("cast")?)
        .args([
            "wallet",
            "import",
            "owner",
            "--private-key",
            &key,
            "--keystore-dir",
        ])
        .arg(&dir)
        .args(["--unsafe-password", "correct horse"])
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "cast wallet import failed");
    let password = dir.join("password");
    std::fs::write(&password, "correct horse\n")?;
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "battery staple\n")?;
    let keystore = dir.join("owner");
    let ks = keystore.to_str().unwrap_or_default();
    let as_owner = |args: &[&str], pw: &PathBuf| -> Result<Run> {
        let mut all = vec![
            "--keystore",
            ks,
            "--password-file",
            pw.to_str().unwrap_or_default(),
        ];
        all.extend_from_slice(args);
        cli.run(&chain, None, &all)
    };
    let register = [
        "--json",
        "provider",
        "register",
        "--endpoint",
        "http://127.0.0.1:9",
        "--cpu",
        "2000",
        "--memory",
        "4096",
        "--cpu-price",
        "0.02",
        "--stake",
        "100",
    ];
    let refused = as_owner(&register, &wrong)?;
    ensure!(
        refused.code == 3 && refused.stderr.contains("cannot open keystore"),
        "{refused:?}"
    );
    let reg = as_owner(&register, &password)?.ok()?.json()?;
    ensure!(
        str_of(&reg, "provider") == "1" && str_of(&reg, "owner").parse::<Address>()? == owner,
        "{reg}"
    );
    ensure!(token_balance(&chain, &c, owner).await? == U256::from(50_000_000u64));

    let status = |cli: &Cli| -> Result<Value> {
        cli.run(&chain, None, &["--json", "provider", "status", "1"])?
            .ok()?
            .json()
    };
    let st = status(&cli)?;
    ensure!(
        st["status"] == "active" && st["stake"] == "100000000",
        "{st}"
    );

    as_owner(
        &[
            "--json",
            "provider",
            "update",
            "1",
            "--cpu-price",
            "0.04",
            "--cpu",
            "3000",
        ],
        &password,
    )?
    .ok()?;
    let st = status(&cli)?;
    ensure!(
        st["prices_scaled"][1] == "11111111" && st["price_version"] == 1,
        "{st}"
    );
    ensure!(st["capacity"][0] == 3000, "{st}");
    let nothing = as_owner(&["provider", "update", "1"], &password)?;
    ensure!(
        nothing.code == 3 && nothing.stderr.contains("nothing to update"),
        "{nothing:?}"
    );

    as_owner(&["--json", "provider", "pause", "1"], &password)?.ok()?;
    let market = cli
        .run(&chain, None, &["--json", "providers"])?
        .ok()?
        .json()?;
    ensure!(
        market["providers"].as_array().is_some_and(Vec::is_empty),
        "{market}"
    );
    let market = cli
        .run(&chain, None, &["--json", "providers", "--all"])?
        .ok()?
        .json()?;
    ensure!(
        market["providers"][0]["excluded"] == "paused (takes no new leases)",
        "{market}"
    );
    as_owner(&["--json", "provider", "resume", "1"], &password)?.ok()?;
    ensure!(status(&cli)?["status"] == "active");

    let claimed = as_owner(&["--json", "provider", "claim", "1"], &password)?
        .ok()?
        .json()?;
    ensure!(claimed["claimed"] == "0", "{claimed}");

    as_owner(&["--json", "provider", "exit", "1"], &password)?.ok()?;
    ensure!(status(&cli)?["status"] == "exiting");
    let early = as_owner(&["provider", "withdraw-stake", "1"], &password)?;
    ensure!(
        early.code == 7 && early.stderr.contains("UnbondingNotOver"),
        "{early:?}"
    );
    chain.advance(3601).await?;
    let done = as_owner(&["--json", "provider", "withdraw-stake", "1"], &password)?
        .ok()?
        .json()?;
    ensure!(done["status"] == "exited", "{done}");
    ensure!(token_balance(&chain, &c, owner).await? == U256::from(150_000_000u64));
    let unknown = cli.run(&chain, None, &["provider", "status", "7"])?;
    ensure!(
        unknown.code == 6 && unknown.stderr.contains("provider 7 does not exist"),
        "{unknown:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
