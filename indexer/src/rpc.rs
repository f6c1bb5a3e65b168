//! The JSON-RPC client: HTTP with a timeout on every request, so that a node that hangs is
//! an error the indexing loop retries, never a wait without end.

use std::{sync::Arc, time::Duration};

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder, WsConnect},
    rpc::client::RpcClient,
    transports::http::{Http, reqwest},
};
use tokio::sync::{Notify, watch};

/// Why the RPC client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RpcSetupError {
    /// The URL does not parse.
    #[error("rpc_url `{0}` is not a URL")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A provider for `url` whose every request fails after `timeout`.
pub fn http_provider(url: &str, timeout: Duration) -> Result<DynProvider, RpcSetupError> {
    let parsed = url
        .parse()
        .map_err(|_| RpcSetupError::Url(url.to_owned()))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?;
    let http = Http::with_client(client, parsed);
    let is_local = http.guess_local();
    Ok(ProviderBuilder::new()
        .connect_client(RpcClient::new(http, is_local))
        .erased())
}

/// Subscribes to new heads over WebSocket at `ws_url` and wakes `wake` on each one, so the
/// indexer follows the head without waiting for its next poll. Reconnects with backoff (up
/// to 30 s) until `shutdown`; polling keeps working meanwhile, so an outage here only costs
/// latency.
pub async fn watch_heads(ws_url: String, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(500);
    while !*shutdown.borrow() {
        match subscribe(&ws_url, &wake, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "newHeads subscription lost")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn subscribe(
    ws_url: &str,
    wake: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let provider = ProviderBuilder::new()
        .connect_ws(WsConnect::new(ws_url))
        .await?;
    let mut heads = provider.subscribe_blocks().await?;
    tracing::info!(url = ws_url, "following new heads by subscription");
    loop {
        tokio::select! {
            head = heads.recv() => {
                head?;
                wake.notify_one();
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
