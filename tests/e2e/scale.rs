//! Scale to zero with the real keeper, gateway and podman: an idle app is stopped, an open
//! upgraded connection keeps it up, twenty concurrent first requests wake it once and are
//! all answered, nothing is sampled (so nothing billed) while it is at zero, and it sleeps
//! and wakes again.

use std::time::{Duration, Instant};

use berth_bindings::LeaseStatus;
use berth_e2e::{
    gateway::{get, tls},
    keeper::{hello_manifest, wait_for},
};
use eyre::{Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    gated::Gated,
    keeper::{HELLO_BODY, WAIT},
};

/// The example manifest with an idle timeout of `timeout`.
fn sleepy_manifest(timeout: &str) -> Vec<u8> {
    let text = String::from_utf8(hello_manifest()).unwrap_or_default();
    let text = text.replace(
        "    resources:",
        &format!("    idle_timeout: {timeout}\n    resources:"),
    );
    text.into_bytes()
}

/// Samples stored for `lease` so far.
async fn samples(pool: &sqlx::PgPool, lease: alloy::primitives::U256) -> Result<i64> {
    Ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM berth_keeper.samples WHERE lease_id = $1::numeric",
        )
        .bind(lease.to_string())
        .fetch_one(pool)
        .await?,
    )
}

/// Whether the lease's `web` service runs (None: no workload).
async fn running(w: &crate::keeper::World, lease: alloy::primitives::U256) -> Result<Option<bool>> {
    let workload = w.workload(lease).await?;
    Ok(workload.and_then(|w| w.services.get("web").copied()))
}

/// A keeper and a gateway wired for scale to zero, one active lease of the example app
/// with a 5 s idle timeout, answering through the gateway.
struct Sleepy {
    g: Gated,
    lease: alloy::primitives::U256,
    host: String,
    config: std::sync::Arc<rustls::ClientConfig>,
}

impl Sleepy {
    async fn start(pool: &sqlx::PgPool, purpose: &str) -> Result<Self> {
        let g = Gated::start(pool, purpose, &[("BERTH_WAKE_TIMEOUT_S", "20")]).await?;
        let lease = g.lease(&sleepy_manifest("5s")).await?;
        let host = g.host("web", lease);
        let config = g.ca.client_config(&[b"h2", b"http/1.1"])?;
        let s = Self {
            g,
            lease,
            host,
            config,
        };
        wait_for("the app through the gateway", WAIT, || async {
            Ok((s.get().await?.status == 200).then_some(()))
        })
        .await
        .map_err(|e| eyre::eyre!("{e}\n{}", s.logs()))?;
        Ok(s)
    }

    /// `GET /` through the gateway.
    async fn get(&self) -> Result<berth_e2e::gateway::Answer> {
        get(self.g.gw.addr, &self.host, "/", self.config.clone()).await
    }

    fn logs(&self) -> String {
        self.g.logs()
    }

    /// Waits until the app is at zero: stopped, and the keeper done with the stop.
    async fn asleep(&self) -> Result<()> {
        let before = self.sleeps();
        wait_for(
            "the app to scale to zero",
            Duration::from_secs(30),
            || async {
                let stopped = running(&self.g.w, self.lease).await? == Some(false);
                Ok((stopped && self.sleeps() > before).then_some(()))
            },
        )
        .await
        .map_err(|e| eyre::eyre!("{e}\n{}", self.logs()))
    }

    /// Sleeps counted in the keeper's log.
    fn sleeps(&self) -> usize {
        self.g
            .keeper
            .log_text()
            .matches("idle: scaled to zero")
            .count()
    }

    /// Wakes it counted in the keeper's log.
    fn wakes(&self) -> usize {
        self.g
            .keeper
            .log_text()
            .matches("woken for a request")
            .count()
    }
}

#[sqlx::test(migrations = false)]
async fn an_idle_app_scales_to_zero_and_one_wake_answers_every_request(
    pool: sqlx::PgPool,
) -> Result<()> {
    let mut s = Sleepy::start(&pool, "scale-to-zero").await?;
    let (host, config, lease) = (s.host.clone(), s.config.clone(), s.lease);

    // An open upgraded connection is open work: the app stays up past its idle timeout.
    let h1 = s.g.ca.client_config(&[b"http/1.1"])?;
    let mut stream = tls(s.g.gw.addr, &host, h1).await?;
    stream
        .write_all(
            format!("GET /cgi-bin/stream HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head)).await??;
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    ensure!(
        head.starts_with("HTTP/1.1 101"),
        "upgrade answered {head:?}"
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    ensure!(
        running(&s.g.w, lease).await? == Some(true),
        "the app slept with a connection open\n{}",
        s.logs()
    );
    let mut ticks = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut ticks)).await??;
    ensure!(
        String::from_utf8_lossy(&ticks[..n]).contains("tick"),
        "the stream went quiet"
    );
    drop(stream);
    let closed = Instant::now();

    // Idle: scaled to zero within the timeout and a few passes.
    s.asleep().await?;
    eprintln!(
        "scaled to zero {:.1} s after the last connection closed (idle timeout 5 s)",
        closed.elapsed().as_secs_f64()
    );
    let routes = s.g.gw.routes().await?;
    ensure!(
        routes.routes.iter().all(|r| r.asleep.is_some()),
        "the route is not marked asleep: {routes:?}"
    );
    // At zero nothing is sampled, so nothing is billed: the sample count stands still.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = samples(&pool, lease).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = samples(&pool, lease).await?;
    ensure!(
        before == after,
        "samples taken at zero: {before} -> {after}"
    );
    ensure!(
        s.g.w.status(lease).await? == LeaseStatus::Active,
        "the lease is still active"
    );

    // Twenty concurrent first requests: one wake, all answered with the app's page.
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (host, config, addr) = (host.clone(), config.clone(), s.g.gw.addr);
            tokio::spawn(async move { get(addr, &host, "/", config).await })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        let answer = t.await??;
        ensure!(
            answer.status == 200 && answer.text() == HELLO_BODY,
            "a held request got {} {:?}",
            answer.status,
            answer.text()
        );
        if let Some(v) = answer.headers.get("server-timing") {
            held.push(v.to_str()?.to_owned());
        }
    }
    let woke_in = started.elapsed();
    let wakes = s.wakes();
    ensure!(wakes == 1, "{wakes} wakes for one sleep\n{}", s.logs());
    ensure!(
        !held.is_empty() && held.iter().all(|v| v.starts_with("cold-start;dur=")),
        "no cold-start timing on held answers: {held:?}"
    );
    eprintln!(
        "20 concurrent requests woke the app once; all answered in {} ms; {} were held ({})",
        woke_in.as_millis(),
        held.len(),
        held.join(", ")
    );
    wait_for(
        "sampling to resume after the wake",
        Duration::from_secs(10),
        || async { Ok((samples(&pool, lease).await? > after).then_some(())) },
    )
    .await?;

    // It sleeps again, and the first request after a long idle still works.
    s.asleep().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let answer = s.get().await?;
    ensure!(answer.status == 200, "after a long idle: {}", answer.status);
    ensure!(s.wakes() == 2, "the second sleep was not woken once");
    ensure!(s.g.gw.alive(), "the gateway died");
    Ok(())
}

/// The cold-start benchmark (`scripts/bench-cold-start`): `BERTH_BENCH_WAKES` (20) times,
/// let the app scale to zero, then time one request from its start to the whole answer.
#[sqlx::test(migrations = false)]
#[ignore = "benchmark: run by scripts/bench-cold-start"]
async fn bench_cold_start(pool: sqlx::PgPool) -> Result<()> {
    let wakes: usize = std::env::var("BERTH_BENCH_WAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let s = Sleepy::start(&pool, "bench-cold-start").await?;
    let (mut client, mut held) = (Vec::new(), Vec::new());
    for i in 0..wakes {
        s.asleep().await?;
        // From zero: past the second the keeper leaves podman to finish a stop.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = Instant::now();
        let answer = s.get().await?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        ensure!(answer.status == 200, "wake {i}: {}", answer.status);
        let timing = answer
            .headers
            .get("server-timing")
            .and_then(|v| {
                v.to_str()
                    .ok()?
                    .strip_prefix("cold-start;dur=")?
                    .parse()
                    .ok()
            })
            .unwrap_or(f64::NAN);
        eprintln!(
            "wake {:>2}: whole answer in {took:7.1} ms (held by the gateway {timing:7.1} ms)",
            i + 1
        );
        client.push(took);
        held.push(timing);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "cold start over {wakes} wakes (podman, image present): client p50 {:.0} ms, p95 {:.0} ms; held at the gateway p50 {:.0} ms, p95 {:.0} ms; keeper wakes {}",
        pct(&mut client, 0.5),
        pct(&mut client, 0.95),
        pct(&mut held, 0.5),
        pct(&mut held, 0.95),
        s.wakes()
    );
    ensure!(s.wakes() == wakes, "one wake per sleep");
    Ok(())
}
