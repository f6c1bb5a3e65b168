//! The admin API on a local Unix socket (mode 0660: the keeper's group): `PUT /v1/routes`
//! replaces the route table, `GET /v1/routes` returns it, `GET /v1/usage` and
//! `GET /v1/activity` report bytes and open work per app. Only the provider's own processes
//! can reach it; nothing of it is on the network.

use std::{path::Path, sync::Arc};

use berth_protocol::{
    api::ApiError,
    routing::{RouteTable, admin},
};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::{net::UnixListener, sync::watch};

use crate::routes::Routes;

/// Largest route table body: ~100 bytes a route, `MAX_ROUTES` routes.
const MAX_BODY: usize = 16 << 20;

/// Binds `path` (replacing a stale socket) with mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    berth_runtime::http::bind_socket(path)
}

/// Serves the admin API until `shutdown`.
pub async fn serve(listener: UnixListener, routes: Arc<Routes>, shutdown: watch::Receiver<bool>) {
    let handle = move |req| {
        let routes = Arc::clone(&routes);
        async move { handle(req, &routes).await }
    };
    berth_runtime::http::serve_socket(listener, handle, shutdown).await;
}

async fn handle(req: Request<Incoming>, routes: &Routes) -> Response<Full<Bytes>> {
    if req.method() == Method::GET {
        match req.uri().path() {
            admin::USAGE => return json(StatusCode::OK, &routes.usage()),
            admin::ACTIVITY => return json(StatusCode::OK, &routes.activity()),
            _ => {}
        }
    }
    if req.uri().path() != admin::ROUTES {
        return json(
            StatusCode::NOT_FOUND,
            &error(format!("no {} here", req.uri().path())),
        );
    }
    match *req.method() {
        Method::GET => json(StatusCode::OK, &routes.snapshot()),
        Method::PUT => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return json(StatusCode::PAYLOAD_TOO_LARGE, &error(format!("body: {e}"))),
            };
            let table: RouteTable = match serde_json::from_slice(&body) {
                Ok(t) => t,
                Err(e) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &error(format!("not a route table: {e}")),
                    );
                }
            };
            match routes.replace(&table) {
                Ok(n) => {
                    tracing::debug!(routes = n, "route table replaced");
                    json(StatusCode::OK, &serde_json::json!({ "routes": n }))
                }
                Err(e) => json(StatusCode::UNPROCESSABLE_ENTITY, &error(e.to_string())),
            }
        }
        _ => json(StatusCode::METHOD_NOT_ALLOWED, &error("GET or PUT".into())),
    }
}

fn error(error: String) -> ApiError {
    ApiError { error }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    berth_runtime::http::json_answer(status, body)
}
