//! A workload's logs through the keeper's API and `berth logs` (anvil + Postgres + podman + the
//! keeper process): a stream followed for two minutes stays up across a silence longer than
//! the ping interval, a reconnection after a cursor repeats and loses nothing, only the
//! tenant's fresh token opens it, a fifth stream of one lease is refused, and the lease's end
//! closes it with the reason.

use std::time::{Duration, Instant};

use alloy::{primitives::U256, transports::http::reqwest};
use berth_bindings::{LeaseStatus, ProviderRegistry};
use berth_e2e::{keeper::*, mined};
use berth_protocol::access::Operation;
use eyre::{Result, ensure};
use sqlx::PgPool;

use crate::{
    cli_harness::Cli,
    keeper::{TENANT, world},
};

/// Prints `line N` every second, but is silent for 25 s after line 20.
const MANIFEST: &str = "version: 1\nservices:\n  app:\n    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"i=0; while true; do i=$((i+1)); echo line $i; if [ $i -eq 20 ]; then sleep 25; fi; sleep 1; done\"]\n    resources: {cpu: 100m, memory: 32Mi}\n";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one SSE stream delivered.
#[derive(Debug, Default)]
struct Seen {
    /// (line text, cursor, when it arrived).
    lines: Vec<(String, String, Instant)>,
    pings: usize,
    end: Option<String>,
}

/// Reads the stream at `query` until `stop` says so, `limit` passes, or it ends.
async fn follow(
    url: &str,
    auth: &str,
    limit: Duration,
    stop: impl Fn(&Seen) -> bool,
) -> Result<Seen> {
    let mut resp = reqwest::Client::new()
        .get(url)
        .header("authorization", auth)
        .send()
        .await?;
    ensure!(resp.status() == 200, "{url}: {}", resp.status());
    let mut seen = Seen::default();
    let mut buf = String::new();
    let deadline = Instant::now() + limit;
    while !stop(&seen) && seen.end.is_none() {
        let Ok(chunk) = tokio::time::timeout_at(deadline.into(), resp.chunk()).await else {
            break;
        };
        let Some(chunk) = chunk? else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buf.find("\n\n") {
            let block: String = buf.drain(..at + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            if block.starts_with(": ping") || block.starts_with(":ping") {
                seen.pings += 1;
            }
            match field("event:").as_deref() {
                Some("line") => {
                    let data: serde_json::Value =
                        serde_json::from_str(&field("data:").unwrap_or_default())?;
                    seen.lines.push((
                        data["line"].as_str().unwrap_or_default().to_string(),
                        field("id:").unwrap_or_default(),
                        Instant::now(),
                    ));
                }
                Some("end") => seen.end = field("data:"),
                _ => {}
            }
        }
    }
    Ok(seen)
}

fn numbers(seen: &Seen) -> Vec<u32> {
    seen.lines
        .iter()
        .filter_map(|(l, _, _)| l.strip_prefix("line ")?.parse().ok())
        .collect()
}

#[sqlx::test(migrations = false)]
async fn logs_are_followed_across_silence_resumed_exactly_and_closed_with_the_lease(
    pool: PgPool,
) -> Result<()> {
    let w = world(&pool.connect_options(), &[("BERTH_LOGS_PING_S", "5")]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let (lease, status) = w
        .lease_with(MANIFEST.as_bytes(), MANIFEST.as_bytes())
        .await?;
    ensure!(status == 202, "upload: {status}");
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    let base = format!("{}/v1/leases/{lease}/logs", w.setup.gateway());
    let auth = w.access_token(TENANT, Operation::Logs, lease, now() + 600)?;

    // Who may read: the tenant's fresh token for this operation only.
    let http = reqwest::Client::new();
    let status_with = |auth: Option<String>| {
        let req = http.get(&base);
        async move {
            let req = match auth {
                Some(a) => req.header("authorization", a),
                None => req,
            };
            Ok::<_, eyre::Report>(req.send().await?.status().as_u16())
        }
    };
    ensure!(status_with(None).await? == 401, "no token");
    ensure!(
        status_with(Some(w.access_token(
            TENANT,
            Operation::Logs,
            lease,
            now() - 5
        )?))
        .await?
            == 401,
        "expired"
    );
    ensure!(
        status_with(Some(w.access_token(
            TENANT,
            Operation::Logs,
            lease,
            now() + 3600
        )?))
        .await?
            == 401,
        "too long-lived"
    );
    ensure!(
        status_with(Some(w.access_token(
            5,
            Operation::Logs,
            lease,
            now() + 600
        )?))
        .await?
            == 403,
        "another wallet"
    );
    ensure!(
        status_with(Some(w.access_token(
            TENANT,
            Operation::Shell,
            lease,
            now() + 600
        )?))
        .await?
            == 403,
        "another operation"
    );

    // Bad queries are refused with a sentence, before any stream opens.
    for (query, want, says) in [
        ("after=yesterday", 400, "`after` is a cursor"),
        ("tail=lots", 400, "tail"),
        ("follow=maybe", 400, "follow"),
        ("service=nope", 404, "nope"),
    ] {
        let resp = http
            .get(format!("{base}?{query}"))
            .header("authorization", &auth)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        ensure!(
            status == want && text.contains(says),
            "{query}: {status} {text}"
        );
    }

    // Follow from the start to line 10, drop the connection, resume after its cursor.
    let started = Instant::now();
    let first = follow(
        &format!("{base}?follow=true"),
        &auth,
        Duration::from_secs(60),
        |s| numbers(s).contains(&10),
    )
    .await?;
    let got = numbers(&first);
    ensure!(
        got == (1..=10).collect::<Vec<_>>(),
        "lines 1 to 10 in order: {got:?}"
    );
    let cursor = first
        .lines
        .last()
        .map(|(_, c, _)| c.clone())
        .unwrap_or_default();
    let rest = Duration::from_secs(120).saturating_sub(started.elapsed());
    let second = follow(
        &format!("{base}?follow=true&after={cursor}"),
        &auth,
        rest,
        |_| false,
    )
    .await?;
    let got = numbers(&second);
    ensure!(
        got.first() == Some(&11),
        "resumed right after line 10: {got:?}"
    );
    ensure!(
        got.windows(2).all(|p| p[1] == p[0] + 1) && got.len() > 40,
        "every line once, in order, over two minutes: {got:?}"
    );
    ensure!(
        second.end.is_none(),
        "the stream stayed open: {:?}",
        second.end
    );
    let silence = second
        .lines
        .windows(2)
        .map(|p| p[1].2 - p[0].2)
        .max()
        .unwrap_or_default();
    ensure!(
        silence > Duration::from_secs(20) && second.pings >= 3,
        "a silence of {silence:?} crossed with {} pings",
        second.pings
    );

    // Not following: the last three lines, then the end.
    let tail = follow(
        &format!("{base}?tail=3"),
        &auth,
        Duration::from_secs(20),
        |_| false,
    )
    .await?;
    ensure!(tail.lines.len() == 3, "three lines: {tail:?}");
    ensure!(
        tail.end.as_deref().is_some_and(|e| e.contains("\"done\"")),
        "{tail:?}"
    );

    // A tenant holds at most four streams of a lease open; the fifth is a 429 that says so.
    let mut held = Vec::new();
    for _ in 0..4 {
        let open = http
            .get(format!("{base}?follow=true"))
            .header("authorization", &auth)
            .send()
            .await?;
        ensure!(open.status() == 200, "a followed stream: {}", open.status());
        held.push(open);
    }
    let fifth = http
        .get(format!("{base}?follow=true"))
        .header("authorization", &auth)
        .send()
        .await?;
    let (code, text) = (fifth.status().as_u16(), fifth.text().await?);
    ensure!(
        code == 429 && text.contains("at most 4 per lease"),
        "a fifth stream: {code} {text}"
    );
    drop(held);
    // A dropped stream's place is freed when the keeper next writes to it (a line a second).
    wait_for(
        "the dropped streams' places",
        Duration::from_secs(20),
        || async {
            let status = http
                .get(format!("{base}?tail=1"))
                .header("authorization", &auth)
                .send()
                .await?
                .status();
            Ok((status == 200).then_some(()))
        },
    )
    .await?;

    // The CLI, with the registry pointing at this keeper.
    mined(
        ProviderRegistry::new(w.c.registry, w.chain.wallet(2)?)
            .updateEndpoint(U256::from(1), w.setup.gateway()),
        "updateEndpoint",
    )
    .await?;
    let cli = Cli {
        rpc_url: w.chain.rpc_url(),
        deployment: w.setup.deployment.clone(),
    };
    let run = cli
        .run(
            &w.chain,
            Some(TENANT),
            &["logs", &lease.to_string(), "app", "--tail", "2"],
        )?
        .ok()?;
    let printed: Vec<&str> = run.stdout.lines().collect();
    ensure!(
        printed.len() == 2 && printed.iter().all(|l| l.starts_with("line ")),
        "two lines: {run:?}"
    );
    let refused = cli.run(&w.chain, Some(5), &["logs", &lease.to_string()])?;
    ensure!(
        refused.code != 0 && refused.stderr.contains("not by the lease's tenant"),
        "{refused:?}"
    );

    // Closing the lease ends a followed stream with the reason.
    let closing = tokio::spawn({
        let url = format!("{base}?follow=true&tail=1");
        let auth = auth.clone();
        async move { follow(&url, &auth, Duration::from_secs(60), |_| false).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    mined(w.escrow()?.closeLease(lease), "closeLease").await?;
    let ended = closing.await??;
    ensure!(
        ended
            .end
            .as_deref()
            .is_some_and(|e| e.contains("lease_ended")),
        "the stream ends with the lease: {:?}\n{}",
        ended.end,
        keeper.log_text()
    );
    Ok(())
}
