//! The provider's gateway, as a tenant uses it: the signed manifest upload and the usage
//! reports' samples.

use std::time::Duration;

use alloy::{
    primitives::U256,
    signers::SignerSync,
    transports::http::reqwest::{self, StatusCode},
};
use berth_keepers::upload::{SIGNATURE_HEADER, signing_hash};
use eyre::Result;
use serde_json::Value;

use crate::{
    context::{Ctx, Wallet, progress},
    failure::{Kind, fail},
};

const TRIES: u32 = 6;

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| fail(Kind::Internal, format!("HTTP client: {e}")))
}

fn base(endpoint: &str) -> &str {
    endpoint.trim_end_matches('/')
}

/// Uploads `manifest` for `lease`, signed by the tenant, retrying an unreachable gateway with
/// backoff. A gateway that refuses the manifest (422) is reported and not an error here: the
/// keeper rejects the lease on chain, which is what the caller waits for.
pub async fn upload(
    ctx: &Ctx,
    w: &Wallet,
    endpoint: &str,
    lease: U256,
    manifest: &[u8],
) -> Result<()> {
    let json = ctx.global.json;
    let digest = signing_hash(ctx.chain_id, ctx.deployment.lease_escrow, lease, manifest);
    let signature = w
        .signer
        .sign_hash_sync(&digest)
        .map_err(|e| fail(Kind::Internal, format!("signing the upload: {e}")))?;
    let url = format!("{}/v1/leases/{lease}/manifest", base(endpoint));
    let http = client()?;
    let mut delay = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let sent = http
            .put(&url)
            .header(
                SIGNATURE_HEADER,
                format!("0x{}", alloy::hex::encode(signature.as_bytes())),
            )
            .body(manifest.to_vec())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let said = body["error"].as_str().unwrap_or_default().to_owned();
                match status {
                    StatusCode::ACCEPTED | StatusCode::OK => {
                        progress(json, "manifest uploaded; the provider accepted it");
                        return Ok(());
                    }
                    StatusCode::UNPROCESSABLE_ENTITY => {
                        progress(json, &format!("the provider refuses the manifest: {said}"));
                        return Ok(());
                    }
                    s if s.is_server_error() => last = format!("{s}: {said}"),
                    s => {
                        return Err(fail(
                            Kind::Refused,
                            format!("gateway {url} answered {s}: {said}"),
                        ));
                    }
                }
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < TRIES {
            progress(
                json,
                &format!(
                    "gateway not ready ({last}); retrying in {:.1} s",
                    delay.as_secs_f64()
                ),
            );
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(fail(
        Kind::Unreachable,
        format!(
            "lease {lease} is open, but its manifest could not be delivered to {url} after {TRIES} tries ({last}); retry with `berth upload {lease} <manifest>`"
        ),
    ))
}

/// GETs a JSON document from the gateway; a 404 is `not_found`, any other failure
/// [`Kind::Unreachable`], each with the gateway's own error text.
async fn get_json(url: &str, not_found: Kind) -> Result<Value> {
    let resp = client()?
        .get(url)
        .send()
        .await
        .map_err(|e| fail(Kind::Unreachable, format!("gateway {url}: {e}")))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| fail(Kind::Unreachable, format!("gateway {url}: not JSON: {e}")))?;
    if !status.is_success() {
        return Err(fail(
            if status == StatusCode::NOT_FOUND {
                not_found
            } else {
                Kind::Unreachable
            },
            format!(
                "gateway {url} answered {status}: {}",
                body["error"].as_str().unwrap_or_default()
            ),
        ));
    }
    Ok(body)
}

/// One usage report as the provider serves it, with its samples and baseline.
pub async fn report(endpoint: &str, lease: U256, sequence: u32) -> Result<Value> {
    let url = format!("{}/v1/leases/{lease}/reports/{sequence}", base(endpoint));
    get_json(&url, Kind::Mismatch).await
}

/// The provider's view of a lease: status, endpoint and the workload it runs.
pub async fn lease_status(endpoint: &str, lease: U256) -> Result<Value> {
    let url = format!("{}/v1/leases/{lease}", base(endpoint));
    get_json(&url, Kind::Unreachable).await
}
