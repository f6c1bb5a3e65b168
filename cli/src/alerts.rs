//! `berth alerts`: the alerts an indexer raised for a tenant's leases (runway under a
//! threshold, suspension, a failed auto top-up), newest first, from the indexer's Postgres.

use alloy::primitives::{Address, U256};
use eyre::Result;
use serde_json::{Value, json};
use sqlx::Row;

use crate::{
    context::Ctx,
    failure::{Kind, fail},
    output::{emit, table},
};

/// The alerts command.
#[derive(Debug, clap::Args)]
pub struct Alerts {
    /// The tenant whose alerts to list (default: this wallet's address).
    #[arg(long)]
    tenant: Option<Address>,
    /// Only this lease's.
    #[arg(long)]
    lease: Option<U256>,
    /// The most rows, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The indexer's database.
    #[arg(long, env = "BERTH_DATABASE_URL")]
    database_url: Option<String>,
}

/// Runs the command.
pub async fn run(ctx: &Ctx, a: Alerts) -> Result<()> {
    let url = a
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or_else(|| {
            fail(
                Kind::Input,
                "no indexer database: give --database-url or BERTH_DATABASE_URL",
            )
        })?;
    let tenant = match a.tenant {
        Some(t) => t,
        None => ctx
            .wallet()
            .map_err(|_| {
                fail(
                    Kind::Input,
                    "whose alerts? give --tenant <address> or a wallet (--private-key, --keystore)",
                )
            })?
            .address,
    };
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(&url)
        .await
        .map_err(|e| fail(Kind::Unreachable, format!("the indexer's database: {e}")))?;
    let rows = sqlx::query(
        "SELECT id, lease_id::TEXT AS lease, kind, threshold_s, runway_s,
                EXTRACT(EPOCH FROM raised_at)::BIGINT AS raised,
                delivered_at IS NOT NULL AS delivered
         FROM berth.alerts
         WHERE chain_id = $1 AND lower(tenant) = lower($2)
           AND ($3::NUMERIC IS NULL OR lease_id = $3::NUMERIC)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(ctx.chain_id as i64)
    .bind(tenant.to_string())
    .bind(a.lease.map(|l| l.to_string()))
    .bind(i64::from(a.limit.min(10_000)))
    .fetch_all(&db)
    .await
    .map_err(|e| {
        fail(
            Kind::Unreachable,
            format!("reading berth.alerts (is this an indexer's database, migrated?): {e}"),
        )
    })?;
    let alerts: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<i64, _>("id"),
                "lease": r.get::<String, _>("lease"),
                "kind": r.get::<String, _>("kind"),
                "threshold_s": r.get::<Option<i64>, _>("threshold_s"),
                "runway_s": r.get::<Option<i64>, _>("runway_s"),
                "raised_at": r.get::<i64, _>("raised"),
                "delivered": r.get::<bool, _>("delivered"),
            })
        })
        .collect();
    emit(
        ctx.global.json,
        &json!({ "tenant": tenant, "alerts": alerts }),
        || {
            if alerts.is_empty() {
                return format!("no alerts for {tenant}");
            }
            let rows: Vec<Vec<String>> = alerts
                .iter()
                .map(|a| {
                    vec![
                        crate::output::utc(a["raised_at"].as_i64().unwrap_or(0).max(0) as u64),
                        a["lease"].as_str().unwrap_or_default().to_owned(),
                        describe(a),
                    ]
                })
                .collect();
            table(&["raised", "lease", "alert"], &rows)
        },
    );
    Ok(())
}

/// `24 h`, `1 h 59 min`, `3 min`, `45 s` (an overdue runway is `0 s`).
fn hours(s: i64) -> String {
    let s = s.max(0);
    match (s / 3600, s % 3600 / 60) {
        (0, 0) => format!("{s} s"),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

fn describe(a: &Value) -> String {
    match a["kind"].as_str().unwrap_or_default() {
        "runway_low" => format!(
            "runway under {} ({} left at the maximum rate): top up",
            hours(a["threshold_s"].as_i64().unwrap_or(0)),
            hours(a["runway_s"].as_i64().unwrap_or(0)),
        ),
        "suspended" => "suspended: the workload is stopped until a top-up".to_owned(),
        "auto_top_up_failed" => {
            "an auto top-up failed (allowance, balance or the token refused)".to_owned()
        }
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(super::hours(86_400), "24 h");
        assert_eq!(super::hours(7_199), "1 h 59 min");
        assert_eq!(super::hours(61), "1 min");
        assert_eq!(super::hours(45), "45 s");
        assert_eq!(super::hours(-5), "0 s");
    }
}
