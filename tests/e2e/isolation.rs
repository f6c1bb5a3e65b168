//! One lease whose action keeps failing holds up no other lease: the keeper retries it alone,
//! with its own backoff, while the others are deployed, confirmed, reported and torn down;
//! once the fault is gone the failing lease converges like any other.

use std::process::Command;

use alloy::primitives::{Address, U256};
use berth_bindings::LeaseStatus;
use berth_e2e::{Settings, keeper::*, open_lease_for};
use berth_keepers::render::LeaseKey;
use eyre::{Result, ensure};
use sqlx::PgPool;

use crate::keeper::{HELLO_BODY, TENANT, WAIT, close_and_wait_gone, serves, world_with};

const CHEAP: [u128; 4] = [1_000_000, 1000, 1000, 0];
const FAST: &[(&str, &str)] = &[
    ("BERTH_SAMPLE_INTERVAL_MS", "200"),
    ("BERTH_REPORT_INTERVAL_S", "2"),
    ("BERTH_CLAIM_INTERVAL_S", "2"),
];

/// Runs the podman CLI (the same storage as the test's podman service).
fn podman(args: &[&str]) -> Result<String> {
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", containers_conf())
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Names of the pods the keeper runs for `lease`.
fn pod_names(chain_id: u64, escrow: Address, lease: U256) -> Result<Vec<String>> {
    let out = podman(&[
        "pod",
        "ps",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("label=berth.dev/chain-id={chain_id}"),
        "--filter",
        &format!("label=berth.dev/escrow={escrow:#x}"),
        "--filter",
        &format!("label=berth.dev/lease-id={lease}"),
    ])?;
    Ok(out.lines().map(str::to_string).collect())
}

/// The `berth_keeper_lease_errors_total` count for `action` on the keeper's `/metrics`.
fn lease_errors(metrics: &str, action: &str) -> u64 {
    let prefix = format!("berth_keeper_lease_errors_total{{action=\"{action}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[sqlx::test(migrations = false)]
async fn a_failing_lease_is_retried_alone_and_converges_once_its_fault_is_removed(
    pool: PgPool,
) -> Result<()> {
    let settings = Settings {
        min_stake: 0,
        challenge_window: 60,
        final_report_window: 60,
        ..Settings::default()
    };
    let w = world_with(&pool.connect_options(), FAST, CHEAP, settings).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let (chain_id, escrow) = (w.chain.chain_id(), w.c.escrow);
    let manifest = hello_manifest();

    // A first lease shows how the engine names a lease's pod.
    let (a, _) = w.lease_with(&manifest, &manifest).await?;
    w.wait_status(a, LeaseStatus::Active, &keeper).await?;
    let a_pod = pod_names(chain_id, escrow, a)?
        .pop()
        .ok_or_else(|| eyre::eyre!("no pod for lease {a}"))?;
    let namespace = |lease_id| {
        LeaseKey {
            chain_id,
            escrow,
            lease_id,
        }
        .namespace()
    };

    // Lease B's pod name is taken by a pod the keeper did not make: every apply of B fails.
    let b = open_lease_for(&w.chain, &w.c, TENANT, &manifest, "", 10_000_000).await?;
    let squatter = a_pod.replacen(&namespace(a), &namespace(b), 1);
    podman(&["pod", "create", "--name", &squatter])?;
    let (status, _) = upload(&w.setup.gateway(), &w.chain, escrow, TENANT, b, &manifest).await?;
    ensure!(status == 202, "B's upload answered {status}");

    // Lease C comes after B and is deployed, confirmed and served while B keeps failing.
    let (c, _) = w.lease_with(&manifest, &manifest).await?;
    w.wait_status(c, LeaseStatus::Active, &keeper).await?;
    serves(&w.endpoint(c).await?, HELLO_BODY).await?;

    // A is reported, then closed and torn down, all while B fails.
    wait_for("a usage report of lease A", WAIT, || async {
        let l = w.escrow()?.getLease(a).call().await?;
        Ok((l.reportCount > 0).then_some(()))
    })
    .await?;
    close_and_wait_gone(&w, a).await?;
    let failures = wait_for("B's apply to fail and be retried", WAIT, || async {
        let n = lease_errors(&keeper.metrics().await?, "admit");
        Ok((n >= 2).then_some(n))
    })
    .await?;
    ensure!(
        w.status(b).await? == LeaseStatus::Pending,
        "B must still be pending (not rejected) while its fault lasts"
    );
    ensure!(
        keeper.log_text().contains("retrying it alone"),
        "the keeper log names B's retries"
    );

    // The fault is removed: B converges like any other lease.
    podman(&["pod", "rm", "--force", &squatter])?;
    w.wait_status(b, LeaseStatus::Active, &keeper).await?;
    serves(&w.endpoint(b).await?, HELLO_BODY).await?;
    ensure!(
        pod_names(chain_id, escrow, b)? == vec![squatter.clone()],
        "B runs in the pod name it was denied"
    );
    println!("lease B failed {failures}+ times while A and C went through; then it converged");
    Ok(())
}
