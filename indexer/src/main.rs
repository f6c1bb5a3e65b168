//! `berth-indexer`: the indexer service (systemd unit in `indexer/berth-indexer.service`).

use alloy::providers::Provider;
use berth_bindings::Deployment;
use berth_indexer::{
    alerts::{Alerter, deliver::Webhook, level::Thresholds},
    config::Config,
    events::{Decoder, Watched},
    metrics::Metrics,
    rpc::http_provider,
    store::Store,
    sync::{Indexer, SyncConfig},
};
use eyre::{Context, Result, ensure};
use tokio::sync::watch;

/// The metrics endpoint is for one scraper: a few connections, short deadlines.
const METRICS_LIMITS: berth_runtime::http::ServeLimits = berth_runtime::http::ServeLimits {
    max_connections: 16,
    header_timeout: std::time::Duration::from_secs(5),
    request_timeout: std::time::Duration::from_secs(10),
};

#[tokio::main]
async fn main() -> Result<()> {
    let cfg: Config =
        berth_runtime::start!("Mirrors every event of the Berth contracts into Postgres.")?;

    let provider = http_provider(cfg.rpc_url.as_str(), cfg.rpc_timeout())?;
    let chain_id = provider
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("reaching {}", cfg.rpc_url))?;
    let deployment = Deployment::load_file(&cfg.deployment, Some(chain_id))?;
    ensure!(
        deployment.chain_id == chain_id,
        "deployment is for another chain"
    );

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(&cfg.database_url)
        .await
        .wrap_err("connecting to Postgres (database_url)")?;
    let store = Store::open(pool.clone(), chain_id)
        .await
        .wrap_err("applying migrations")?;

    let (stop, stopped) = watch::channel(false);
    let metrics = Metrics::default();
    if let Some(addr) = cfg.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .wrap_err_with(|| format!("binding metrics_addr {addr}"))?;
        tracing::info!(%addr, "metrics endpoint");
        let m = metrics.clone();
        tokio::spawn(berth_runtime::http::serve_metrics(
            listener,
            move || m.render(),
            METRICS_LIMITS,
            stopped.clone(),
        ));
    }

    let decoder = Decoder::new(Watched {
        registry: deployment.provider_registry,
        escrow: deployment.lease_escrow,
    });
    let sync = SyncConfig {
        start_block: cfg.start_block.unwrap_or(deployment.start_block),
        confirmations: cfg.confirmations,
        initial_range: cfg.initial_range,
        max_range: cfg.max_range,
        reorg_window: cfg.reorg_window,
        poll_interval: cfg.poll_interval(),
        analyze_after_rows: 10_000,
    };
    tracing::info!(chain_id, escrow = %deployment.lease_escrow, start_block = sync.start_block, "indexing");
    let mut indexer = Indexer::new(provider, store, decoder, sync, metrics);

    let thresholds = Thresholds::new(cfg.alert_thresholds_s.clone());
    tokio::spawn(
        Alerter {
            pool: pool.clone(),
            chain_id,
            thresholds,
            interval: cfg.alert_interval_ms,
        }
        .run(stopped.clone()),
    );
    if let Some(url) = &cfg.alert_webhook_url {
        tracing::info!(webhook = %url, "alerts are delivered");
        tokio::spawn(berth_indexer::alerts::deliver::run(
            pool.clone(),
            chain_id,
            Webhook {
                url: url.to_string(),
                timeout: cfg.alert_webhook_timeout_ms,
                interval: cfg.alert_interval_ms,
                max_attempts: i32::try_from(cfg.alert_webhook_max_attempts).unwrap_or(i32::MAX),
            },
            stopped.clone(),
        ));
    }

    tokio::spawn(async move {
        berth_runtime::shutdown_signal().await;
        tracing::info!("shutting down after the current batch");
        let _ = stop.send(true);
    });
    if let Some(ws_url) = &cfg.ws_url {
        tokio::spawn(berth_indexer::rpc::watch_heads(
            ws_url.to_string(),
            indexer.waker(),
            stopped.clone(),
        ));
    }
    indexer.run(stopped).await?;
    Ok(())
}
