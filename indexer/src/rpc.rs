//! The JSON-RPC client: HTTP with a timeout on every request, so that a node that hangs is
//! an error the indexing loop retries, never a wait without end.

use std::time::Duration;

use alloy::{
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::client::RpcClient,
    transports::http::{Http, reqwest},
};

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
