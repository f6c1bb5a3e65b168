//! The provider's HTTP API for tenants: signed manifest uploads, lease status, and the
//! keeper's metrics.
//!
//! - `PUT /v1/leases/{id}/manifest`: the manifest bytes as the body, the tenant's EIP-712
//!   signature ([`berth_protocol::upload`]) in the `Berth-Signature` header. 202 when stored and valid;
//!   422 when stored but invalid (the keeper will reject the lease with the reason given);
//!   401/403/404/409 when nothing is stored.
//! - `GET /v1/leases/{id}`: the lease's state on chain and its workload.
//! - `GET /v1/leases/{id}/shell`: a command in a container over a WebSocket, for the tenant
//!   ([`crate::shell`]).
//! - `GET /v1/leases/{id}/events`: the lease's event feed, for the tenant ([`crate::events`]).
//! - `GET /v1/leases/{id}/logs`: a replica's logs as Server-Sent Events, for the tenant ([`crate::logs`]).
//! - `GET /metrics`: Prometheus text. `GET /healthz`: 200.

use std::{sync::Arc, time::Duration};

use alloy::{
    eips::BlockId,
    primitives::{Bytes as EvmBytes, Signature, U256},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use berth_bindings::LeaseStatus;
use tokio::sync::Notify;

use crate::{chain::ChainReader, engine::Engine, intake, metrics::Metrics};
use berth_protocol::{
    api::{
        ApiError, LeaseAnswer, MAX_BODY, ProofAnswer, ReportAnswer, ReportSummary, ReportsAnswer,
        SIGNATURE_HEADER, UploadAnswer, WorkloadAnswer, WorkloadState, routes,
    },
    upload::signing_hash,
};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Chain reads.
    pub chain: ChainReader,
    /// The keeper's store.
    pub store: crate::store::Store,
    /// The engine (for workload status).
    pub engine: Engine,
    /// Chain id.
    pub chain_id: u64,
    /// This provider's id.
    pub provider_id: u32,
    /// Metrics.
    pub metrics: Metrics,
    /// Wakes the reconciler.
    pub wake: Arc<Notify>,
    /// Manifest policy (to tell the tenant at once what the keeper will decide).
    pub policy: berth_protocol::manifest::policy::Policy,
    /// Longest sample gap billed for memory (see `metering::units`), served with each report
    /// so a tenant can recompute it.
    pub max_sample_gap_ms: u64,
    /// Open log streams and their limits.
    pub log_streams: crate::logs::LogStreams,
    /// Open shell sessions.
    pub shells: crate::shell::Sessions,
    /// Origins whose pages may call the tenant API.
    pub cors: Arc<crate::cors::Origins>,
    /// The gateway's session key: the API host's signed-in sessions open day-two calls.
    pub sessions: Option<Arc<berth_runtime::session::SessionKey>>,
}

pub use berth_runtime::http::{ServeLimits, serve};

/// The router.
pub fn router(g: Gateway) -> Router {
    Router::new()
        .route(routes::MANIFEST, put(upload))
        .route(routes::LEASE, get(status))
        .route(routes::REPORTS, get(reports))
        .route(routes::REPORT, get(report))
        .route(routes::PROOF, get(proof))
        .route(routes::LOGS, get(crate::logs::logs))
        .route(routes::EVENTS, get(crate::events::events))
        .route(routes::SHELL, get(crate::shell::shell))
        .route(routes::METRICS, get(metrics))
        .route(routes::HEALTH, get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&g.cors),
            crate::cors::layer,
        ))
        .with_state(Arc::new(g))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: message.into(),
    };
    (status, Json(body)).into_response()
}

fn bad_lease_id(raw: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("`{raw}` is not a lease id"),
    )
}

/// The lease at the latest block, if it is one of this provider's.
pub(crate) async fn lease_of_provider(
    g: &Gateway,
    id: U256,
) -> Result<crate::chain::LeaseView, Box<Response>> {
    let lease = g
        .chain
        .lease(id, BlockId::latest())
        .await
        .map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())))?;
    if lease.status == LeaseStatus::None || lease.provider_id != g.provider_id {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("lease {id} is not a lease of provider {}", g.provider_id),
        )));
    }
    // The manifest hash and the endpoint live in the lease's events.
    let mut lease = lease;
    g.chain
        .lease_info(id)
        .await
        .map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())))?
        .fill(&mut lease);
    Ok(lease)
}

async fn upload(
    State(g): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Ok(id) = raw.parse::<U256>() else {
        return bad_lease_id(&raw);
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {MAX_BODY} bytes")
            } else {
                format!("reading the body: {}", rejection.body_text())
            };
            return error(status, message);
        }
    };
    let Some(sig_hex) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            format!("missing {SIGNATURE_HEADER} header"),
        );
    };
    let Ok(sig_bytes) = sig_hex.trim().parse::<EvmBytes>() else {
        return error(StatusCode::UNAUTHORIZED, "the signature is not hex");
    };
    let lease = match lease_of_provider(&g, id).await {
        Ok(l) => l,
        Err(response) => return *response,
    };
    if !matches!(
        lease.status,
        LeaseStatus::Pending | LeaseStatus::Active | LeaseStatus::Suspended
    ) {
        return error(
            StatusCode::CONFLICT,
            format!("lease {id} is {:?}: it takes no manifest", lease.status),
        );
    }
    let digest = signing_hash(g.chain_id, g.chain.escrow(), id, &body);
    let by_key = Signature::from_raw(&sig_bytes)
        .ok()
        .and_then(|s| s.recover_address_from_prehash(&digest).ok());
    let signer = if by_key == Some(lease.tenant) {
        Some(lease.tenant)
    } else {
        // A contract wallet answers for itself (ERC-1271).
        match g.chain.has_code(lease.tenant).await {
            Ok(true) => match g
                .chain
                .erc1271_valid(lease.tenant, digest, sig_bytes.clone())
                .await
            {
                Ok(true) => Some(lease.tenant),
                Ok(false) => None,
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            },
            Ok(false) => None,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    };
    if signer.is_none() {
        return error(
            StatusCode::FORBIDDEN,
            format!("not signed by the lease's tenant {}", lease.tenant),
        );
    }
    // Checked (bounded: no aliases, capped size and depth) before anything is stored; the
    // bytes are stored either way, so the keeper rejects an invalid manifest at once.
    let verdict = intake::check_manifest(&body, lease.manifest_hash, lease.reservation, &g.policy);
    if let Err(e) = g
        .store
        .put_manifest(id, &body, lease.manifest_hash, "upload", signer)
        .await
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    g.metrics.uploaded();
    g.wake.notify_one();
    match verdict {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(UploadAnswer {
                lease: id,
                accepted: true,
                reject_reason: None,
                error: None,
            }),
        )
            .into_response(),
        Err(r) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(UploadAnswer {
                lease: id,
                accepted: false,
                reject_reason: Some(r.reason),
                error: Some(r.rule),
            }),
        )
            .into_response(),
    }
}

async fn status(State(g): State<Arc<Gateway>>, Path(raw): Path<String>) -> Response {
    let Ok(id) = raw.parse::<U256>() else {
        return bad_lease_id(&raw);
    };
    let lease = match lease_of_provider(&g, id).await {
        Ok(l) => l,
        Err(response) => return *response,
    };
    let manifest = g.store.manifest(id).await.ok().flatten();
    let workload = tokio::time::timeout(
        Duration::from_secs(5),
        g.engine.list(g.chain_id, g.chain.escrow()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|all| all.get(&id).cloned());
    Json(LeaseAnswer {
        lease: id,
        status: lease.status,
        endpoint: lease.endpoint,
        manifest_version: lease.manifest_version,
        tenant: lease.tenant,
        manifest_received: manifest.map(|m| m.source),
        workload: match workload {
            None => Some(WorkloadAnswer::Unknown("engine unreachable".into())),
            Some(None) => None,
            Some(Some(w)) => Some(WorkloadAnswer::Seen(WorkloadState {
                running: w.running(),
                manifest_version: w.manifest_version,
                services: w.services,
                images: w.images,
            })),
        },
    })
    .into_response()
}

fn summary(r: &crate::store::StoredReport) -> ReportSummary {
    ReportSummary {
        sequence: r.sequence,
        from: r.from_s,
        to: r.to_s,
        cpu_units: r.units.cpu,
        memory_units: r.units.memory,
        storage_units: r.units.storage,
        clamped: r.units.clamped,
        samples_root: r.root,
        sample_count: r.sample_count,
        tx: r.tx,
    }
}

async fn reports(State(g): State<Arc<Gateway>>, Path(raw): Path<String>) -> Response {
    let Ok(id) = raw.parse::<U256>() else {
        return bad_lease_id(&raw);
    };
    match g.store.reports(id).await {
        Ok(rs) => Json(ReportsAnswer {
            lease: id,
            reports: rs.iter().map(summary).collect(),
        })
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The lease id in `raw` and its report `sequence`, or the error response to send.
async fn find_report(
    g: &Gateway,
    raw: &str,
    sequence: u32,
) -> Result<(U256, crate::store::StoredReport), Box<Response>> {
    let Ok(id) = raw.parse::<U256>() else {
        return Err(Box::new(bad_lease_id(raw)));
    };
    let reports = g
        .store
        .reports(id)
        .await
        .map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())))?;
    match reports.into_iter().find(|r| r.sequence == sequence) {
        Some(r) => Ok((id, r)),
        None => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("lease {id} has no report {sequence}"),
        ))),
    }
}

/// A report with the samples under its root and, per container, the last sample before its
/// period (what the first CPU delta is measured from).
async fn report(
    State(g): State<Arc<Gateway>>,
    Path((raw, sequence)): Path<(String, u32)>,
) -> Response {
    let (id, r) = match find_report(&g, &raw, sequence).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let samples = g
        .store
        .samples(id, r.from_s * 1000, r.samples_until_ms)
        .await;
    let baseline = g.store.baseline(id, r.from_s * 1000).await;
    match (samples, baseline) {
        (Ok(samples), Ok(baseline)) => Json(ReportAnswer {
            lease: id,
            report: summary(&r),
            samples,
            baseline,
            max_gap_ms: g.max_sample_gap_ms,
        })
        .into_response(),
        (Err(e), _) | (_, Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The Merkle proof of one sample of a report.
async fn proof(
    State(g): State<Arc<Gateway>>,
    Path((raw, sequence, index)): Path<(String, u32, usize)>,
) -> Response {
    let (id, r) = match find_report(&g, &raw, sequence).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let samples = match g
        .store
        .samples(id, r.from_s * 1000, r.samples_until_ms)
        .await
    {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let leaves: Vec<_> = samples
        .iter()
        .map(|s| berth_protocol::metering::merkle::leaf(id, s))
        .collect();
    match berth_protocol::metering::merkle::proof(&leaves, index) {
        Some(proof) => Json(ProofAnswer {
            sample: samples[index].clone(),
            leaf: leaves[index],
            proof,
            samples_root: r.root,
        })
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("report {sequence} has {} samples", samples.len()),
        ),
    }
}

async fn metrics(State(g): State<Arc<Gateway>>) -> Response {
    berth_runtime::http::metrics_response(g.metrics.render())
}
