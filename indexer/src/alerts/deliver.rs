//! Webhook delivery: every undelivered alert is POSTed as JSON to the configured URL until it
//! answers 2xx, in order, with a backoff per alert (2 s doubling to 5 min) and a bounded
//! number of attempts; what failed is recorded on the row (`attempts`, `last_error`).

use std::time::Duration;

use alloy::transports::http::reqwest;
use sqlx::{PgPool, Row};
use tokio::sync::watch;

/// Where and how alerts are delivered.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The receiver's URL.
    pub url: String,
    /// Per request.
    pub timeout: Duration,
    /// Time between delivery rounds.
    pub interval: Duration,
    /// Attempts per alert before it is given up (its row keeps `last_error`).
    pub max_attempts: i32,
}

/// Alerts sent per round (the rest wait for the next).
const BATCH: i64 = 100;
/// The longest wait between attempts of one alert.
const MAX_BACKOFF_S: i64 = 300;

/// Delivers until `shutdown`.
pub async fn run(pool: PgPool, chain_id: u64, hook: Webhook, mut shutdown: watch::Receiver<bool>) {
    let http = match reqwest::Client::builder()
        .timeout(hook.timeout)
        .connect_timeout(hook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "alert webhook client; no delivery");
            return;
        }
    };
    let mut tick = tokio::time::interval(hook.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => continue,
        }
        if let Err(e) = round(&pool, chain_id, &hook, &http).await {
            tracing::warn!(error = %e, "alert delivery round failed; trying again");
        }
    }
}

/// One round: the due alerts, oldest first; stops at the first failure so that a receiver
/// that is down is not hammered (and alerts arrive in order once it is up).
pub async fn round(
    pool: &PgPool,
    chain_id: u64,
    hook: &Webhook,
    http: &reqwest::Client,
) -> Result<u64, sqlx::Error> {
    let due = sqlx::query(
        "SELECT id, json_build_object(
                  'id', id, 'chain_id', chain_id, 'lease_id', lease_id::TEXT, 'tenant', tenant,
                  'provider_id', provider_id::TEXT, 'kind', kind, 'threshold_s', threshold_s,
                  'runway_s', runway_s, 'detail', detail, 'raised_at', raised_at)::TEXT AS body
         FROM berth.alerts
         WHERE chain_id = $1 AND delivered_at IS NULL AND attempts < $2 AND next_attempt_at <= now()
         ORDER BY id LIMIT $3",
    )
    .bind(chain_id as i64)
    .bind(hook.max_attempts)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let mut delivered = 0;
    for row in due {
        let id: i64 = row.get("id");
        let body: String = row.get("body");
        let sent = http
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("berth-alert-id", id.to_string())
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the receiver answered {}", r.status())),
            Err(e) => Some(format!("no answer: {e}")),
        };
        match failure {
            None => {
                sqlx::query(
                    "UPDATE berth.alerts SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
                     WHERE id = $1",
                )
                .bind(id)
                .execute(pool)
                .await?;
                delivered += 1;
            }
            Some(why) => {
                sqlx::query(
                    "UPDATE berth.alerts SET attempts = attempts + 1, last_error = $2,
                       next_attempt_at = now() + make_interval(secs => LEAST(2 ^ (attempts + 1), $3))
                     WHERE id = $1",
                )
                .bind(id)
                .bind(&why)
                .bind(MAX_BACKOFF_S as f64)
                .execute(pool)
                .await?;
                tracing::info!(alert = id, error = %why, "alert webhook failed; will retry");
                break;
            }
        }
    }
    Ok(delivered)
}
