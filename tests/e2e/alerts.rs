//! Tenant alerts end to end (anvil + Postgres + podman + the keeper and indexer processes): a
//! lease drained by usage crosses two runway thresholds and raises exactly two alerts, each
//! announced by NOTIFY and delivered once to a webhook that was down at first; its suspension
//! is the third; `berth alerts` lists them.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use berth_bindings::LeaseStatus;
use berth_e2e::{Settings, database_url, indexer_binary, keeper::*, open_lease_for};
use eyre::{Result, WrapErr, ensure};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    cli_harness::Cli,
    keeper::{TENANT, world_with},
    runway::{KEEPER_ENV, PER_SECOND},
};

/// A webhook receiver on `port`: answers 200 and keeps every body.
fn receiver(port: u16, bodies: Arc<Mutex<Vec<serde_json::Value>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await else {
            return;
        };
        while let Ok((mut conn, _)) = listener.accept().await {
            let bodies = bodies.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_slice(&buf[end + 4..end + 4 + length]) {
                        bodies.lock().expect("lock").push(v);
                    }
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    })
}

async fn runway_alerts(pool: &PgPool) -> Result<Vec<(i64, i64, i32, bool)>> {
    Ok(sqlx::query_as(
        "SELECT id, threshold_s, attempts, delivered_at IS NOT NULL FROM berth.alerts
         WHERE kind = 'runway_low' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default())
}

#[sqlx::test(migrations = false)]
async fn a_draining_lease_raises_two_alerts_each_delivered_once_after_the_webhook_comes_up(
    pool: PgPool,
) -> Result<()> {
    let settings = Settings {
        min_stake: 0,
        min_runway: 2,
        grace_period: 1,
        min_open_runway: 100,
        ..Settings::default()
    };
    let w = world_with(&pool.connect_options(), KEEPER_ENV, PER_SECOND, settings).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let hook_port = free_port()?;
    let mut indexer = std::process::Command::new(indexer_binary()?)
        .env_clear()
        .env("BERTH_DATABASE_URL", database_url(&pool.connect_options()))
        .env("BERTH_RPC_URL", w.chain.rpc_url())
        .env("BERTH_DEPLOYMENT", &w.setup.deployment)
        .env("BERTH_METRICS_ADDR", "")
        .env("BERTH_POLL_INTERVAL_MS", "100")
        .env("BERTH_ALERT_THRESHOLDS_S", "60, 20")
        .env("BERTH_ALERT_INTERVAL_MS", "300")
        .env(
            "BERTH_ALERT_WEBHOOK_URL",
            format!("http://127.0.0.1:{hook_port}/hook"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .wrap_err("spawning berth-indexer")?;
    let result = async {
        // Listen before anything can be raised.
        let schema_ready = wait_for("the indexer's schema", Duration::from_secs(60), || async {
            Ok(sqlx::query("SELECT 1 FROM berth.alerts LIMIT 1")
                .fetch_all(&pool)
                .await
                .ok())
        });
        schema_ready.await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen("berth_alerts").await?;

        // 130 s of runway at the maximum rate (one token unit a second).
        let manifest = hello_manifest();
        let lease = open_lease_for(&w.chain, &w.c, TENANT, &manifest, "", 130).await?;
        upload(
            &w.setup.gateway(),
            &w.chain,
            w.c.escrow,
            TENANT,
            lease,
            &manifest,
        )
        .await?;
        w.wait_status(lease, LeaseStatus::Active, &keeper).await?;

        // 75 s later the runway is under 60 s: one alert, retried while the webhook is down.
        w.chain.advance(75).await?;
        let first = wait_for("a retried first alert", Duration::from_secs(60), || async {
            let rows = runway_alerts(&pool).await?;
            Ok((rows.len() == 1 && rows[0].2 >= 2).then_some(rows))
        })
        .await?;
        ensure!(
            first[0].1 == 60 && !first[0].3,
            "under 60 s, not delivered yet: {first:?}"
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let server = receiver(hook_port, bodies.clone());
        wait_for(
            "the first alert delivered",
            Duration::from_secs(60),
            || async { Ok((bodies.lock().expect("lock").len() == 1).then_some(())) },
        )
        .await?;

        // 40 s more: under 20 s, the second alert, delivered at once.
        w.chain.advance(40).await?;
        wait_for(
            "the second alert delivered",
            Duration::from_secs(60),
            || async { Ok((bodies.lock().expect("lock").len() == 2).then_some(())) },
        )
        .await?;
        // Nothing is raised or sent twice.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rows = runway_alerts(&pool).await?;
        ensure!(
            rows.iter().map(|r| r.1).collect::<Vec<_>>() == [60, 20] && rows.iter().all(|r| r.3),
            "exactly two runway alerts, both delivered: {rows:?}"
        );
        let got = bodies.lock().expect("lock").clone();
        let ids: Vec<i64> = got.iter().filter_map(|b| b["id"].as_i64()).collect();
        ensure!(
            ids == [rows[0].0, rows[1].0],
            "each delivered once, in order: {got:?}"
        );
        ensure!(
            got.iter()
                .all(|b| b["lease_id"] == lease.to_string() && b["kind"] == "runway_low"),
            "{got:?}"
        );

        // Run dry: the keeper suspends the lease, which is an alert too.
        w.chain.advance(30).await?;
        wait_for(
            "the suspension delivered",
            Duration::from_secs(60),
            || async {
                let got = bodies.lock().expect("lock").clone();
                Ok((got.len() == 3 && got[2]["kind"] == "suspended").then_some(()))
            },
        )
        .await?;
        ensure!(
            runway_alerts(&pool).await?.len() == 2,
            "still two runway alerts"
        );
        let mut notified = Vec::new();
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), listener.recv()).await
        {
            notified.push(serde_json::from_str::<serde_json::Value>(n.payload())?);
        }
        let count = |kind: &str| notified.iter().filter(|n| n["kind"] == kind).count();
        ensure!(
            count("runway_low") == 2 && count("suspended") == 1,
            "three notifications: {notified:?}"
        );
        server.abort();

        let cli = Cli {
            rpc_url: w.chain.rpc_url(),
            deployment: w.setup.deployment.clone(),
        };
        let tenant = w.chain.signer(TENANT)?.address().to_string();
        let run = cli
            .run(
                &w.chain,
                None,
                &[
                    "--json",
                    "alerts",
                    "--tenant",
                    &tenant,
                    "--database-url",
                    &database_url(&pool.connect_options()),
                ],
            )?
            .ok()?;
        let listed = run.json()?;
        ensure!(
            listed["alerts"].as_array().map(Vec::len) == Some(3),
            "{run:?}"
        );
        Ok::<_, eyre::Report>(())
    }
    .await;
    let _ = indexer.kill();
    let _ = indexer.wait();
    result.wrap_err_with(|| keeper.log_text())
}
