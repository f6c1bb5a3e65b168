//! The services' bounded HTTP server: a cap on open connections, a deadline for each
//! request's headers and one for the whole request (answered with a JSON 408), so that no
//! client can hold a service's descriptors or tasks.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use berth_protocol::api::ApiError;

/// Limits that keep one client from exhausting a service: every read has a deadline and the
/// number of connections a cap, far below the process's file descriptors, so sampling,
/// the engine socket and the database always find one.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Most open connections; a connection beyond is closed at once.
    pub max_connections: usize,
    /// Deadline for a request's headers, and for an idle kept-alive connection.
    pub header_timeout: Duration,
    /// Deadline for a whole request, body included (answered 408).
    pub request_timeout: Duration,
}

/// Serves `app` on `listener` within `limits` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServeLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => {
                    let body = ApiError {
                        error: format!(
                            "the request took longer than {} ms",
                            limits.request_timeout.as_millis()
                        ),
                    };
                    (StatusCode::REQUEST_TIMEOUT, Json(body)).into_response()
                }
            }
        },
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    while let Some((stream, _)) = next_connection(|| listener.accept(), &mut shutdown).await {
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(
                limit = limits.max_connections,
                "connection cap reached: connection closed"
            );
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                // WebSockets (a tenant's shell) take the connection over.
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
}

/// Binds a local control socket at `path` (replacing a stale one, creating its directory)
/// with mode 0660: the service's own group may call it, nobody else, and nothing of it is on
/// the network.
pub fn bind_socket(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves HTTP/1.1 on a local control socket until `shutdown`: each connection in its own
/// task, its request heads within 10 s; `handle` answers every request.
pub async fn serve_socket<H, F>(
    listener: tokio::net::UnixListener,
    handle: H,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    while let Some((stream, _)) = next_connection(|| listener.accept(), &mut shutdown).await {
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
}

/// `body` as a JSON answer with `status`.
pub fn json_answer(
    status: hyper::StatusCode,
    body: &impl serde::Serialize,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"error": text}` with `status`.
pub fn json_error(
    status: hyper::StatusCode,
    text: impl Into<String>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    json_answer(status, &ApiError { error: text.into() })
}

/// The next connection `accept` yields, or `None` once `shutdown` turns true. A failed accept
/// (out of descriptors or the like) is logged and tried again after 100 ms instead of
/// spinning.
pub async fn next_connection<T, F, Fut>(
    mut accept: F,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    loop {
        if *shutdown.borrow() {
            return None;
        }
        tokio::select! {
            accepted = accept() => match accepted {
                Ok(connection) => return Some(connection),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

/// Serves `render()` as Prometheus text on `GET /metrics` of `listener` within `limits`,
/// until `shutdown` turns true.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    limits: ServeLimits,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { metrics_response(render()) }
        }),
    );
    serve(listener, app, limits, shutdown).await;
}

/// A Prometheus text answer.
pub fn metrics_response(body: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Why a request over a Unix socket got no answer.
#[derive(Debug, thiserror::Error)]
pub enum UnixCallError {
    /// A step of the exchange failed.
    #[error("{socket} ({stage}): {source}")]
    Failed {
        /// The socket.
        socket: String,
        /// `connect`, `handshake`, `send` or `body`.
        stage: &'static str,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("{socket}: no answer in {timeout:?}")]
    Timeout {
        /// The socket.
        socket: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// Sends `req` over a fresh HTTP/1.1 connection to the Unix socket `socket`; the answer's
/// status and body, unread.
async fn send_unix(
    socket: &std::path::Path,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<(StatusCode, hyper::body::Incoming), UnixCallError> {
    let failed = |stage, source: Box<dyn std::error::Error + Send + Sync>| UnixCallError::Failed {
        socket: socket.display().to_string(),
        stage,
        source,
    };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| failed("connect", e.into()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed("handshake", e.into()))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| failed("send", e.into()))?;
    Ok((resp.status(), resp.into_body()))
}

fn timed_out(socket: &std::path::Path, timeout: Duration) -> UnixCallError {
    UnixCallError::Timeout {
        socket: socket.display().to_string(),
        timeout,
    }
}

/// Sends `req` over a fresh HTTP/1.1 connection to the Unix socket `socket` and returns the
/// answer's status and body unread once its head arrives within `timeout` (for streams:
/// the caller bounds the reading, and dropping the body closes the connection).
pub async fn unix_stream(
    socket: &std::path::Path,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, hyper::body::Incoming), UnixCallError> {
    tokio::time::timeout(timeout, send_unix(socket, req))
        .await
        .map_err(|_| timed_out(socket, timeout))?
}

/// Sends `req` over a fresh HTTP/1.1 connection to the Unix socket `socket` and reads the
/// whole answer, all within `timeout`.
pub async fn unix_call(
    socket: &std::path::Path,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, bytes::Bytes), UnixCallError> {
    use http_body_util::BodyExt;
    let exchange = async {
        let (status, body) = send_unix(socket, req).await?;
        let body = body
            .collect()
            .await
            .map_err(|e| UnixCallError::Failed {
                socket: socket.display().to_string(),
                stage: "body",
                source: e.into(),
            })?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| timed_out(socket, timeout))?
}
