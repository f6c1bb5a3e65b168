//! `cargo run --release -p berth-e2e --bin bench-keeper-scale [-- LEASES [WINDOW_S]]`
//!
//! One provider keeper with LEASES active leases (default 1000), each a tiny busybox web
//! server (10 millicores, 16 MiB) in its own podman pod, on anvil and Postgres. Once every
//! lease is active anvil mines a block every second (each wakes the keeper for a pass) and
//! the bench measures the keeper for WINDOW_S seconds (default 60) at its default settings
//! (head polled every 500 ms, sampling every 10 s, reports every 300 s) and prints:
//! - pass time p50 and p95 (from the keeper's `berth_keeper_pass_duration_seconds`
//!   histogram, the window's buckets interpolated as Prometheus' `histogram_quantile` does);
//! - RPC requests per pass (HTTP requests and JSON-RPC calls counted by a proxy between the
//!   keeper and anvil; a batch is one request);
//! - keeper CPU seconds per minute (`/proc/<pid>/stat`), resident and peak memory;
//! - seconds from a lease's `closeLease` being mined to its pod being gone, for 5 leases
//!   closed one after another while the others run.
//!
//! Needs DATABASE_URL (a server where it may create a database), podman and busybox-static.

use std::time::{Duration, Instant};

use alloy::{
    primitives::{U256, keccak256},
    providers::Provider,
};
use berth_bindings::{LeaseEscrow, LeaseStatus, ProviderRegistry};
use berth_e2e::{
    Chain, ScratchDb, Settings, deploy, fund_tenant,
    keeper::{
        KeeperProcess, KeeperSetup, PodmanService, free_range, hello_image, pod_count,
        remove_pods_of_chain, upload, wait_for,
    },
    mined,
    rpc_proxy::RpcProxy,
};
use eyre::{Context, Result, ensure};

const TENANT: usize = 4;
/// No lease becoming active or rejected for this long: the host holds no more.
const STALL: Duration = Duration::from_secs(90);
/// The example web server, reserved small enough for a thousand on one host.
const MANIFEST: &str = "version: 1
services:
  web:
    image: localhost/berth-hello:latest
    ports:
      - port: 8080
        expose: http
    resources:
      cpu: 10m
      memory: 16Mi
";

#[tokio::main]
async fn main() -> Result<()> {
    let arg = |i: usize, default: u64, what: &str| -> Result<u64> {
        std::env::args().nth(i).map_or(Ok(default), |a| {
            a.parse()
                .wrap_err_with(|| format!("{what} must be a whole number, not `{a}`"))
        })
    };
    let leases = arg(1, 1000, "LEASES")?;
    let window = arg(2, 60, "WINDOW_S")?;
    ensure!(
        (6..=5000).contains(&leases),
        "LEASES must be 6 to 5000 (5 are closed for the teardown figure)"
    );
    ensure!(window >= 10, "WINDOW_S must be at least 10");
    hello_image()?;
    let db = ScratchDb::create("bench_keeper_scale").await?;
    let chain = Chain::start()?;
    let outcome = run(
        &chain,
        &db.url,
        leases as usize,
        Duration::from_secs(window),
    )
    .await;
    remove_pods_of_chain(chain.chain_id());
    db.drop().await?;
    outcome
}

async fn run(chain: &Chain, db_url: &str, leases: usize, window: Duration) -> Result<()> {
    let settings = Settings {
        min_stake: 0,
        ..Settings::default()
    };
    let c = deploy(chain, settings).await?;
    let n = u32::try_from(leases)?;
    mined(
        ProviderRegistry::new(c.registry, chain.wallet(2)?).register(
            chain.signer(3)?.address(),
            c.token,
            "http://127.0.0.1:8443".into(),
            "region=local".into(),
            [n * 10 + 1000, n * 16 + 1024, 10],
            [1_000_000, 1000, 1000, 0],
            U256::ZERO,
        ),
        "register",
    )
    .await?;
    fund_tenant(chain, &c, TENANT, U256::from(10u64.pow(15))).await?;
    let podman = PodmanService::start().await?;
    let proxy = RpcProxy::start(chain.rpc_url()).await?;
    let mut setup = KeeperSetup::new(chain, &c, settings, db_url.to_string(), &podman)?;
    setup.rpc_url = proxy.url().to_string();
    setup.ports = free_range(u16::try_from(leases + 10)?)?;
    setup.env = vec![
        ("RUST_LOG".into(), "warn,berth_keepers=info".into()),
        ("BERTH_POLL_INTERVAL_MS".into(), "500".into()),
        ("BERTH_RESYNC_INTERVAL_S".into(), "30".into()),
        ("BERTH_READY_TIMEOUT_S".into(), "600".into()),
    ];
    let keeper = KeeperProcess::start(&setup).await?;

    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(TENANT)?);
    let manifest = MANIFEST.as_bytes();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(leases);
    for i in 0..leases {
        let call = escrow.openLease(
            U256::from(1),
            10,
            16,
            0,
            keccak256(manifest),
            String::new(),
            U256::from(10_000_000_000u64),
            U256::MAX,
        );
        let id = call.call().await?;
        mined(call, "openLease").await?;
        let (status, body) =
            upload(&setup.gateway(), chain, c.escrow, TENANT, id, manifest).await?;
        ensure!(status == 202, "upload of lease {id}: {status} {body}");
        ids.push(id);
        if (i + 1) % 100 == 0 {
            println!(
                "opened {} leases ({:.0} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }

    let limit = Duration::from_secs(120 + 3 * leases as u64);
    let last_print = std::cell::Cell::new(Instant::now());
    let progress = std::cell::Cell::new((0, Instant::now()));
    let active = wait_for("every lease to be active", limit, || async {
        let (mut active, mut ended) = (0, 0);
        for id in &ids {
            match LeaseStatus::from_u8(escrow.getLease(*id).call().await?.status) {
                Some(LeaseStatus::Active) => active += 1,
                Some(LeaseStatus::Pending) => {}
                _ => ended += 1,
            }
        }
        if last_print.get().elapsed() > Duration::from_secs(15) {
            println!(
                "{active}/{leases} active, {ended} rejected ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            last_print.set(Instant::now());
        }
        let done = active + ended;
        if done != progress.get().0 {
            progress.set((done, Instant::now()));
        }
        // The host may hold fewer: when nothing moves for STALL, measure the ones that run.
        let stalled = progress.get().1.elapsed() > STALL;
        if done < leases && !stalled {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok((done == leases || stalled).then_some(active))
    })
    .await
    .wrap_err_with(|| format!("keeper log tail:\n{}", tail(&keeper.log_text())))?;
    println!(
        "{active}/{leases} leases active {:.0} s after the first open",
        started.elapsed().as_secs_f64()
    );
    if active < leases {
        let log = keeper.log_text();
        let why = log
            .lines()
            .rev()
            .find(|l| l.contains("retrying it alone") || l.contains("lease rejected"))
            .unwrap_or("(no lease error in the keeper log)");
        println!(
            "the others did not run; the keeper's last lease error:\n  {}",
            strip_ansi(why)
        );
    }
    ensure!(active > 5, "too few leases became active to measure");

    // A live chain: a block every second (each one wakes the keeper for a pass). Then let a
    // sampling round pass and measure one window.
    let _: serde_json::Value = chain
        .wallet(0)?
        .raw_request("evm_setIntervalMining".into(), (1,))
        .await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (m0, r0, c0, cpu0, t0) = (
        keeper.metrics().await?,
        proxy.requests(),
        proxy.calls(),
        cpu_seconds(keeper.pid())?,
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let (m1, r1, c1, cpu1, secs) = (
        keeper.metrics().await?,
        proxy.requests(),
        proxy.calls(),
        cpu_seconds(keeper.pid())?,
        t0.elapsed().as_secs_f64(),
    );
    let passes =
        metric(&m1, "berth_keeper_passes_total") - metric(&m0, "berth_keeper_passes_total");
    ensure!(passes > 0.0, "no pass finished in the window");
    let hist = "berth_keeper_pass_duration_seconds";
    println!("\nkeeper with {active} active leases, window {secs:.0} s:");
    println!("  passes:                {passes:.0}");
    println!(
        "  pass time:             p50 {:.3} s, p95 {:.3} s",
        quantile(&m0, &m1, hist, 0.50),
        quantile(&m0, &m1, hist, 0.95)
    );
    for (what, hist) in [
        (
            "engine list",
            "berth_keeper_engine_duration_seconds{call=\"list\"}",
        ),
        (
            "getLease batch",
            "berth_keeper_rpc_duration_seconds{call=\"getLease batch\"}",
        ),
    ] {
        println!(
            "  {:<22} p50 {:.3} s, p95 {:.3} s (part of a pass)",
            format!("{what}:"),
            quantile(&m0, &m1, hist, 0.50),
            quantile(&m0, &m1, hist, 0.95)
        );
    }
    println!(
        "  RPC per pass:          {:.1} HTTP requests, {:.1} JSON-RPC calls",
        (r1 - r0) as f64 / passes,
        (c1 - c0) as f64 / passes
    );
    println!(
        "  keeper CPU:            {:.2} s per minute ({:.1}% of one core)",
        (cpu1 - cpu0) / secs * 60.0,
        (cpu1 - cpu0) / secs * 100.0
    );
    println!(
        "  keeper memory:         {} MiB resident, {} MiB peak",
        rss_kib(keeper.pid(), "VmRSS:").unwrap_or(0) / 1024,
        rss_kib(keeper.pid(), "VmHWM:").unwrap_or(0) / 1024
    );

    let mut running = Vec::new();
    for id in ids.iter().rev() {
        let status = escrow.getLease(*id).call().await?.status;
        if LeaseStatus::from_u8(status) == Some(LeaseStatus::Active) {
            running.push(*id);
        }
        if running.len() == 5 {
            break;
        }
    }
    let mut teardown = Vec::new();
    for id in &running {
        mined(escrow.closeLease(*id), "closeLease").await?;
        let closed = Instant::now();
        wait_for(
            "the closed lease's pod to go",
            Duration::from_secs(120),
            || async { Ok((pod_count(chain.chain_id(), c.escrow, *id).await? == 0).then_some(())) },
        )
        .await?;
        teardown.push(closed.elapsed().as_secs_f64());
    }
    teardown.sort_by(f64::total_cmp);
    println!(
        "  close to teardown:     p50 {:.2} s, max {:.2} s (5 leases, while the others run)",
        teardown[2], teardown[4]
    );
    Ok(())
}

/// The value of an unlabelled sample `name` in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The cumulative buckets `(le, count)` of histogram `name`, written with its labels if it
/// has any (`name{call="list"}`; the encoder puts `le` first).
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let (base, labels) = match name.split_once('{') {
        Some((base, labels)) => (base, format!(",{labels}")),
        None => (name, "}".to_string()),
    };
    let prefix = format!("{base}_bucket{{le=\"");
    let tail = format!("{labels} ");
    text.lines()
        .filter_map(|l| {
            let (le, rest) = l.strip_prefix(&prefix)?.split_once('"')?;
            let count = rest.strip_prefix(&tail)?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Quantile `q` of the observations histogram `name` gained between two scrapes, linearly
/// interpolated within its bucket.
fn quantile(before: &str, after: &str, name: &str, q: f64) -> f64 {
    let (b0, b1) = (buckets(before, name), buckets(after, name));
    let delta: Vec<(f64, f64)> = b1
        .iter()
        .map(|(le, n)| {
            let old = b0.iter().find(|(l, _)| l == le).map_or(0.0, |(_, n)| *n);
            (*le, n - old)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, n) in delta {
        if n >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let share = if n > lower.1 {
                (rank - lower.1) / (n - lower.1)
            } else {
                0.0
            };
            return lower.0 + (le - lower.0) * share;
        }
        lower = (le, n);
    }
    lower.0
}

/// User plus system CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3; utime and
    // stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| eyre::eyre!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let hz: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    Ok(ticks / hz)
}

/// A `/proc/<pid>/status` size line (`VmRSS:`, `VmHWM:`) in KiB.
fn rss_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `line` without terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last 40 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
