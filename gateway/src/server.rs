//! The HTTPS listener: a cap on open connections, a deadline for the TLS handshake and for
//! each request's headers, a bound on the header size and on HTTP/2 streams, and a graceful
//! drain on shutdown. No client can hold more than its share.
//!
//! The protocol is the one ALPN agreed (`h2`, else HTTP/1.1, as RFC 9113 §3.3 has HTTPS
//! clients do), so a connection is served by hyper's HTTP/1.1 or HTTP/2 server directly
//! rather than through a layer that sniffs the first bytes of every connection.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use hyper::{
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;

use berth_runtime::http::next_connection;

use crate::{
    metrics::Metrics,
    proxy::{Peer, Proxy},
};

/// What bounds each client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most open connections; a connection beyond is closed at once.
    pub max_connections: usize,
    /// Deadline for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for a request's headers (and an idle kept-alive HTTP/1.1 connection).
    pub header_timeout: Duration,
    /// Largest request head, bytes.
    pub max_header_bytes: usize,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

/// `count` listening sockets on `addr` sharing the port (`SO_REUSEPORT`): the kernel spreads
/// new connections over them, one per worker thread, so a connection's tasks (client side,
/// app side, TLS) all run on one thread and never wake another.
pub fn listeners(
    addr: std::net::SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..count.max(1))
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            Ok(socket.into())
        })
        .collect()
}

/// Most concurrent HTTP/2 streams per connection.
const MAX_STREAMS: u32 = 256;

/// Serves HTTPS on `listener` until `shutdown` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Every connection task holds a sender; the drain is over when all are dropped.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    let sweeper = tokio::spawn({
        let (proxy, shutdown) = (Arc::clone(&proxy), shutdown.clone());
        async move { proxy.sweep_upstreams(shutdown).await }
    });
    while let Some((stream, peer)) = next_connection(|| listener.accept(), &mut shutdown).await {
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(
                limit = limits.max_connections,
                "connection cap reached: connection closed"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let proxy = Arc::clone(&proxy);
        let metrics = Arc::clone(&metrics);
        let (h1, h2) = (Arc::clone(&h1), Arc::clone(&h2));
        let (open, stop) = (open.clone(), shutdown.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    metrics.handshake_failed();
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    metrics.handshake_failed();
                    return;
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the answer (RFC 8737 §3).
                tracing::debug!(%peer, "ACME validation handshake served");
                return;
            }
            metrics.connections().inc();
            let client = Peer::new(peer);
            let service = service_fn(move |req| {
                let (proxy, client) = (Arc::clone(&proxy), client.clone());
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, &client).await) }
            });
            let h2_agreed = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let served = if h2_agreed {
                let conn = h2.serve_connection(io, service);
                until_stopped(conn, stop, |c| c.graceful_shutdown()).await
            } else {
                let conn = h1.serve_connection(io, service).with_upgrades();
                until_stopped(conn, stop, |c| c.graceful_shutdown()).await
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            metrics.connections().dec();
            drop((permit, open));
        });
    }
    sweeper.abort();
    tracing::info!("draining connections");
    drop(open);
    if tokio::time::timeout(limits.drain_timeout, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

/// Serves `conn` to its end; once `stop` turns true (or its sender is gone), asks it to
/// finish gracefully (HTTP/1.1: after the request in flight; HTTP/2: GOAWAY) and waits.
async fn until_stopped<C>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    graceful: impl FnOnce(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        served = conn.as_mut() => return served,
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    graceful(conn.as_mut());
    conn.await
}
