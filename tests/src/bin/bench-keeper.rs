//! `cargo run --release -p berth-e2e --bin bench-keeper [-- LEASES]`
//!
//! The provider keeper end to end on anvil, Postgres and podman, one lease at a time (default
//! 10): seconds from the lease-opening transaction being mined to the confirmed endpoint
//! serving (the tenant uploads its signed manifest right after the open), and from the
//! closing transaction being mined to the workload being killed and to its objects being
//! removed (podman spends seconds removing a pod's cgroup after its processes are dead).
//! Prints p50, p95 and max.
//! The keeper polls the head every 100 ms; the example image is built before timing starts.
//! Needs DATABASE_URL (a server where it may create a database), podman and busybox-static.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use berth_bindings::{LeaseEscrow, LeaseStatus};
use berth_e2e::{
    Chain, ScratchDb, Settings, deploy, fund_tenant,
    keeper::{
        KeeperProcess, KeeperSetup, PodmanService, fetch, hello_image, hello_manifest,
        remove_pods_of_chain, upload, wait_for,
    },
    mined, open_lease_for, register_provider,
};
use eyre::{Context, Result, ensure};

const TENANT: usize = 4;
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<()> {
    let leases: usize = std::env::args()
        .nth(1)
        .map(|a| {
            a.parse()
                .wrap_err_with(|| format!("LEASES must be a whole number, not `{a}`"))
        })
        .transpose()?
        .unwrap_or(10);
    ensure!(leases > 0, "LEASES must be at least 1");
    hello_image()?;
    let db = ScratchDb::create("bench_keeper").await?;
    let chain = Chain::start()?;
    let outcome = run(&chain, &db.url, leases).await;
    remove_pods_of_chain(chain.chain_id());
    db.drop().await?;
    outcome
}

async fn run(chain: &Chain, db_url: &str, leases: usize) -> Result<()> {
    let settings = Settings {
        min_stake: 0,
        ..Settings::default()
    };
    let c = deploy(chain, settings).await?;
    register_provider(chain, &c, [1_000_000, 1000, 1000, 0]).await?;
    fund_tenant(chain, &c, TENANT, U256::from(10u64.pow(12))).await?;
    let podman = PodmanService::start().await?;
    let setup = KeeperSetup::new(chain, &c, settings, db_url.to_string(), &podman)?;
    let keeper = KeeperProcess::start(&setup).await?;
    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(TENANT)?);
    let manifest = hello_manifest();

    let mut serving = Vec::new();
    let mut stopped = Vec::new();
    let mut removed = Vec::new();
    for _ in 0..leases {
        let lease = open_lease_for(chain, &c, TENANT, &manifest, "", 10_000_000).await?;
        let opened = Instant::now();
        let (status, body) =
            upload(&keeper.gateway, chain, c.escrow, TENANT, lease, &manifest).await?;
        ensure!(status == 202, "upload answered {status}: {body}");
        let endpoint = wait_for("confirmation", LIMIT, || async {
            let l = escrow.getLease(lease).call().await?;
            if LeaseStatus::from_u8(l.status) != Some(LeaseStatus::Active) {
                return Ok(None);
            }
            Ok(Some(
                berth_e2e::keeper::endpoint_of(chain, c.escrow, lease).await?,
            ))
        })
        .await
        .wrap_err_with(|| keeper.log_text())?;
        wait_for("the endpoint to serve", LIMIT, || async {
            Ok(fetch(&endpoint).await.map(|_| ()))
        })
        .await?;
        serving.push(opened.elapsed());

        // A fresh signer: open_lease_for sent from another provider with its own nonce cache.
        let tenant = LeaseEscrow::new(c.escrow, chain.wallet(TENANT)?);
        mined(tenant.closeLease(lease), "closeLease").await?;
        let closed = Instant::now();
        wait_for("the workload to stop", LIMIT, || async {
            let all = podman.engine().list(chain.chain_id(), c.escrow).await?;
            Ok(all.get(&lease).is_none_or(|w| !w.running()).then_some(()))
        })
        .await?;
        stopped.push(closed.elapsed());
        wait_for("the workload to be removed", LIMIT, || async {
            let all = podman.engine().list(chain.chain_id(), c.escrow).await?;
            Ok((!all.contains_key(&lease)).then_some(()))
        })
        .await?;
        removed.push(closed.elapsed());
    }
    println!("{leases} leases, one at a time, keeper polling every 100 ms, image present:");
    report("open mined -> endpoint serving", &mut serving);
    report("close mined -> workload killed", &mut stopped);
    report("close mined -> objects removed", &mut removed);
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i.min(samples.len() - 1)].as_secs_f64()
    };
    println!(
        "  {what}: p50 {:.3} s  p95 {:.3} s  max {:.3} s",
        pick(0.5),
        pick(0.95),
        pick(1.0)
    );
}
