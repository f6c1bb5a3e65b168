//! The hostile-manifest drill: a real keeper (podman, anvil, Postgres) facing rounds of 50
//! generated hostile manifests (see `corpus`), delivered by signed upload or by a URL the
//! drill serves slowly or endlessly. Each lease must be rejected on chain with a typed
//! reason about its manifest, its whole deposit must come back to the tenant, no workload
//! may exist for it, and the keeper must stay up with its memory bounded.

use std::{collections::BTreeMap, time::Duration};

use alloy::{primitives::U256, providers::Provider};
use berth_bindings::{LeaseStatus, RejectReason, TestToken};
use berth_e2e::{
    ScratchDb,
    keeper::{KeeperProcess, upload, wait_for},
    mined, open_lease_for,
    world::{TENANT, world},
};
use eyre::{Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    Rng, Tally,
    corpus::{self, Delivery},
};

/// Manifests per round: leases stay reserved until rejected, and provider 1 has room for
/// 100 (1 GiB of storage each).
const PER_ROUND: u64 = 50;
const DEPOSIT: u64 = 10_000_000;
/// The keeper's peak memory must stay under this.
const RSS_LIMIT_KIB: u64 = 512 * 1024;
/// Reasons that name what was wrong with a manifest.
const MANIFEST_REASONS: [RejectReason; 5] = [
    RejectReason::ManifestUnavailable,
    RejectReason::ManifestHashMismatch,
    RejectReason::ManifestInvalid,
    RejectReason::ResourcesExceedReservation,
    RejectReason::PolicyViolation,
];

/// Serves `/slow/…` (a byte a second, for ten minutes) and `/huge/…` (256 MiB as fast as it
/// is read) on a loopback port.
async fn hostile_server() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let n = s.read(&mut head).await.unwrap_or(0);
                let slow = String::from_utf8_lossy(&head[..n]).contains(" /slow/");
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/yaml\r\n\r\n")
                    .await;
                if slow {
                    for _ in 0..600 {
                        if s.write_all(b"v").await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                } else {
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..4096 {
                        if s.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(url)
}

pub async fn run(rounds: u32, rng: &mut Rng) -> Result<()> {
    let db = ScratchDb::create("drill_hostile").await?;
    let outcome = drill(&db, rounds, rng).await;
    db.drop().await?;
    outcome
}

async fn drill(db: &ScratchDb, rounds: u32, rng: &mut Rng) -> Result<()> {
    let vectors = corpus::invalid_vectors()?;
    let w = world(
        &db.url.parse()?,
        &[
            ("BERTH_DOWNLOAD_TIMEOUT_S", "5"),
            ("BERTH_MANIFEST_TIMEOUT_S", "15"),
        ],
    )
    .await?;
    let mut keeper = KeeperProcess::start(&w.setup).await?;
    let server = hostile_server().await?;
    let gateway = w.setup.gateway();
    let token = TestToken::new(w.c.token, w.chain.wallet(TENANT)?);
    let tenant = w.chain.signer(TENANT)?.address();
    let mut tally = Tally::default();
    let mut families: BTreeMap<&str, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut next = 0;
    for round in 1..=rounds {
        let outcome: Result<String> = async {
            let mut leases = Vec::new();
            for _ in 0..PER_ROUND {
                next += 1;
                let case = corpus::case(next, rng, &vectors);
                *families.entry(case.family).or_default() += 1;
                let uri = match &case.delivery {
                    Delivery::Upload(_) => String::new(),
                    Delivery::Url(path) => format!("{server}{path}"),
                };
                let lease =
                    open_lease_for(&w.chain, &w.c, TENANT, &case.committed, &uri, DEPOSIT).await?;
                if let Delivery::Upload(bytes) = &case.delivery {
                    upload(&gateway, &w.chain, w.c.escrow, TENANT, lease, bytes).await?;
                }
                leases.push((lease, next, case.family));
            }
            let all_rejected = wait_for(
                "every lease of the round to be rejected",
                Duration::from_secs(180),
                || async {
                    // A manifest that never arrives whole is rejected once the manifest
                    // timeout passes on chain time: blocks keep chain time with the clock.
                    let _: serde_json::Value =
                        w.chain.wallet(0)?.raw_request("evm_mine".into(), ()).await?;
                    for (lease, _, _) in &leases {
                        if w.status(*lease).await? != LeaseStatus::Rejected {
                            return Ok(None);
                        }
                    }
                    Ok(Some(()))
                },
            )
            .await;
            if let Err(e) = all_rejected {
                let mut stuck = Vec::new();
                for (lease, i, family) in &leases {
                    let status = w.status(*lease).await?;
                    if status != LeaseStatus::Rejected {
                        stuck.push(format!("case {i} ({family}): lease {lease} is {status:?}"));
                    }
                }
                bail!("{e}: {}", stuck.join("; "));
            }
            let before = token.balanceOf(tenant).call().await?;
            let escrow = w.escrow()?;
            for (lease, i, family) in &leases {
                let reason = w.reject_reason(*lease).await?;
                ensure!(
                    reason.is_some_and(|r| MANIFEST_REASONS.contains(&r)),
                    "case {i} ({family}): rejected for {reason:?}, not a manifest reason"
                );
                *reasons.entry(reason.map_or_else(String::new, |r| format!("{r:?}"))).or_default() += 1;
                let l = escrow.getLease(*lease).call().await?;
                ensure!(
                    l.balance == U256::from(DEPOSIT),
                    "case {i} ({family}): {} of the deposit {DEPOSIT} left to refund",
                    l.balance
                );
                mined(escrow.withdraw(*lease), "withdraw").await?;
                ensure!(
                    w.pods(*lease).await? == 0,
                    "case {i} ({family}): a workload exists for lease {lease}"
                );
            }
            let after = token.balanceOf(tenant).call().await?;
            let refunded = after - before;
            let want = U256::from(DEPOSIT) * U256::from(leases.len());
            ensure!(refunded == want, "refunds paid {refunded}, deposits were {want}");
            ensure!(keeper.alive(), "the keeper exited:\n{}", keeper.log_text());
            let rss = keeper.peak_rss_kib().unwrap_or(0);
            ensure!(
                rss < RSS_LIMIT_KIB,
                "the keeper's peak memory reached {rss} KiB (limit {RSS_LIMIT_KIB})"
            );
            Ok(format!(
                "{} manifests rejected with a manifest reason, {refunded} base units refunded (every deposit in full), no workload; keeper peak RSS {} MiB",
                leases.len(),
                rss / 1024
            ))
        }
        .await;
        tally.record(round, outcome);
    }
    println!("families: {families:?}");
    println!("reasons: {reasons:?}");
    println!(
        "keeper peak RSS over the drill: {} MiB",
        keeper.peak_rss_kib().unwrap_or(0) / 1024
    );
    tally.finish("hostile drill")
}
