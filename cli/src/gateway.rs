//! The provider's gateway, as a tenant uses it: the signed manifest upload and the usage
//! reports' samples.

use std::time::Duration;

use alloy::{
    primitives::U256,
    signers::SignerSync,
    transports::http::reqwest::{self, StatusCode},
};
use berth_protocol::{
    api::{ApiError, LeaseAnswer, ReportAnswer, SIGNATURE_HEADER, UploadAnswer, routes},
    upload::signing_hash,
};
use eyre::Result;
use serde::de::DeserializeOwned;

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
    let url = routes::manifest(endpoint, lease);
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
                let text = resp.text().await.unwrap_or_default();
                let said = said(&text);
                match status {
                    StatusCode::ACCEPTED | StatusCode::OK => {
                        progress(json, "manifest uploaded; the provider accepted it");
                        return Ok(());
                    }
                    StatusCode::UNPROCESSABLE_ENTITY => {
                        let why = serde_json::from_str::<UploadAnswer>(&text)
                            .ok()
                            .and_then(|a| Some(format!("{:?}: {}", a.reject_reason?, a.error?)))
                            .unwrap_or(said);
                        progress(json, &format!("the provider refuses the manifest: {why}"));
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

/// What the gateway said in an error body ([`ApiError`]), or the body itself when it is not one
/// (a proxy's page), cut to a line.
fn said(body: &str) -> String {
    serde_json::from_str::<ApiError>(body).map_or_else(
        |_| {
            body.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect()
        },
        |e| e.error,
    )
}

/// GETs one of the gateway's answers; a 404 is `not_found`, an answer of the wrong shape
/// [`Kind::Mismatch`], any other failure [`Kind::Unreachable`], each with the gateway's own
/// error text.
async fn get_json<T: DeserializeOwned>(url: &str, not_found: Kind) -> Result<T> {
    get_json_as(url, not_found, None).await
}

/// [`get_json`] with an `Authorization` header; a 401 or 403 is [`Kind::Refused`].
async fn get_json_as<T: DeserializeOwned>(
    url: &str,
    not_found: Kind,
    authorization: Option<&str>,
) -> Result<T> {
    let mut req = client()?.get(url);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail(Kind::Unreachable, format!("gateway {url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| fail(Kind::Unreachable, format!("gateway {url}: {e}")))?;
    if !status.is_success() {
        let kind = match status {
            StatusCode::NOT_FOUND => not_found,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Kind::Refused,
            _ => Kind::Unreachable,
        };
        return Err(fail(
            kind,
            format!("gateway {url} answered {status}: {}", said(&body)),
        ));
    }
    serde_json::from_str(&body).map_err(|e| {
        fail(
            Kind::Mismatch,
            format!("gateway {url}: not the answer Berth's API defines: {e}"),
        )
    })
}

/// One usage report as the provider serves it, with its samples and baseline.
pub async fn report(endpoint: &str, lease: U256, sequence: u32) -> Result<ReportAnswer> {
    get_json(&routes::report(endpoint, lease, sequence), Kind::Mismatch).await
}

/// The provider's view of a lease: status, endpoint and the workload it runs.
pub async fn lease_status(endpoint: &str, lease: U256) -> Result<LeaseAnswer> {
    get_json(&routes::lease(endpoint, lease), Kind::Unreachable).await
}

/// A lease's event feed, with an access token the wallet signs.
pub async fn events(
    ctx: &Ctx,
    w: &Wallet,
    endpoint: &str,
    lease: U256,
) -> Result<berth_protocol::api::EventsAnswer> {
    let auth = crate::logs::access_token(ctx, w, lease, berth_protocol::access::Operation::Events)?;
    get_json_as(
        &routes::events(endpoint, lease),
        Kind::Unreachable,
        Some(&auth),
    )
    .await
}
