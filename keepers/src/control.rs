//! The keeper's control socket (local, mode 0660: the gateway's group): `POST /v1/wake`
//! starts a service scaled to zero for a request the gateway holds, and answers once the
//! engine has started it; `POST /v1/erc1271` checks a contract wallet's signature on chain
//! for the gateway's sign-ins. Wakes and the reconciler's stops of one app take the same lock
//! ([`AppLocks`]), so a wake that races a stop starts the app again right after it.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use alloy::primitives::{Address, U256};
use berth_protocol::{
    api::ApiError,
    manifest::Manifest,
    routing::{Erc1271Answer, Erc1271Request, WakeRequest, admin},
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
};
use tokio::{
    net::UnixListener,
    sync::{Notify, watch},
};

use crate::{engine::Engine, metrics::Metrics, render::LeaseKey, store::Store};

/// Largest request (a wake, or a signature check with its signature).
const MAX_BODY: usize = 16 * 1024;

/// The lock of one app.
pub type AppLock = Arc<tokio::sync::Mutex<()>>;

/// One lock per app (lease and service): its stop and its wake never interleave.
#[derive(Debug, Clone, Default)]
pub struct AppLocks(Arc<Mutex<HashMap<(U256, String), AppLock>>>);

impl AppLocks {
    /// The lock of `service` of `lease`.
    pub fn of(&self, lease: U256, service: &str) -> AppLock {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Locks nobody holds or waits on go, so the map stays as small as the apps in play.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(map.entry((lease, service.to_owned())).or_default())
    }
}

/// What a wake needs.
#[derive(Debug, Clone)]
pub struct Control {
    /// Where workloads run.
    pub engine: Engine,
    /// Sleeps and manifests.
    pub store: Store,
    /// The deployment's chain.
    pub chain_id: u64,
    /// The deployment's escrow.
    pub escrow: Address,
    /// Shared with the reconciler.
    pub locks: AppLocks,
    /// Wakes counted.
    pub metrics: Metrics,
    /// Tells the reconciler to send the route table without the sleep.
    pub reconcile: Arc<Notify>,
    /// Asked about contract wallets' signatures (ERC-1271) for the gateway's sign-ins.
    pub chain: crate::chain::ChainReader,
}

/// Why a wake failed.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

impl Control {
    /// Starts `service` of `lease` if it sleeps; `Ok(false)` when it does not (nothing to do).
    pub async fn wake(&self, lease: U256, service: &str) -> Result<bool, WakeError> {
        let lock = self.locks.of(lease, service);
        let _held = lock.lock().await;
        if self.store.sleep_of(lease, service).await?.is_none() {
            return Ok(false);
        }
        let replicas = match self.store.manifest(lease).await? {
            Some(stored) => Manifest::parse(&stored.bytes)
                .ok()
                .and_then(|m| m.services.get(service).map(|s| s.replicas))
                .unwrap_or(1),
            None => 1,
        };
        let key = LeaseKey {
            chain_id: self.chain_id,
            escrow: self.escrow,
            lease_id: lease,
        };
        self.engine.start_service(&key, service, replicas).await?;
        self.store.end_sleep(lease, Some(service)).await?;
        self.metrics.woken();
        self.reconcile.notify_one();
        Ok(true)
    }
}

/// Binds the control socket at `path`.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    berth_runtime::http::bind_socket(path)
}

/// Serves the control socket until `shutdown`.
pub async fn serve(listener: UnixListener, control: Arc<Control>, shutdown: watch::Receiver<bool>) {
    let handle = move |req| {
        let control = Arc::clone(&control);
        async move { handle(req, &control).await }
    };
    berth_runtime::http::serve_socket(listener, handle, shutdown).await;
}

async fn handle(req: Request<Incoming>, control: &Control) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path != admin::WAKE && path != admin::ERC1271 {
        return json(StatusCode::NOT_FOUND, &error(format!("no {path} here")));
    }
    if req.method() != Method::POST {
        return json(StatusCode::METHOD_NOT_ALLOWED, &error("POST".into()));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return json(StatusCode::PAYLOAD_TOO_LARGE, &error(format!("body: {e}"))),
    };
    if path == admin::ERC1271 {
        return erc1271(&body, control).await;
    }
    let wake: WakeRequest = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &error(format!("not a wake request: {e}")),
            );
        }
    };
    let started = Instant::now();
    let span = tracing::info_span!("lease", lease = %wake.lease, service = %wake.service);
    let _entered = span.enter();
    match control.wake(wake.lease, &wake.service).await {
        Ok(woke) => {
            let ms = started.elapsed().as_millis() as u64;
            if woke {
                tracing::info!(ms, "woken for a request");
            }
            json(
                StatusCode::OK,
                &serde_json::json!({ "woke": woke, "ms": ms }),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "wake failed");
            json(StatusCode::SERVICE_UNAVAILABLE, &error(e.to_string()))
        }
    }
}

/// Whether a contract wallet accepts a signature, asked of the chain.
async fn erc1271(body: &[u8], control: &Control) -> Response<Full<Bytes>> {
    let ask: Erc1271Request = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &error(format!("not an ERC-1271 request: {e}")),
            );
        }
    };
    match control
        .chain
        .erc1271_valid(ask.account, ask.hash, ask.signature)
        .await
    {
        Ok(valid) => json(StatusCode::OK, &Erc1271Answer { valid }),
        Err(e) => json(StatusCode::SERVICE_UNAVAILABLE, &error(e.to_string())),
    }
}

fn error(error: String) -> ApiError {
    ApiError { error }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    berth_runtime::http::json_answer(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_has_one_lock_while_anyone_holds_it() {
        let locks = AppLocks::default();
        let a = locks.of(U256::from(1), "web");
        let b = locks.of(U256::from(1), "web");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &locks.of(U256::from(1), "api")));
        drop((a, b));
        let _c = locks.of(U256::from(2), "web");
        assert_eq!(
            locks.0.lock().expect("map").len(),
            1,
            "unused locks are dropped"
        );
    }
}
