//! Connections to the apps: HTTP/1.1 over TCP, kept alive and reused.
//!
//! Each worker has its own [`Upstreams`], so a request, the connection it goes out on and
//! that connection's task all run on one thread and no lock is ever contended. A connection
//! goes back to its app's queue as soon as the response head arrives and is handed out again
//! once hyper reports it ready, i.e. once that response's body has been read; while a body
//! still streams the connection is skipped. Nothing is spawned per request (a general pool
//! spawns a task per response to wait for its connection to become idle, and looks the app
//! up under a lock shared by all threads): this is the gateway's hottest path.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use http::Request;
use hyper::{
    body::{Body, Incoming},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;

/// Most connections kept per app and worker; a connection beyond is closed once its
/// response is read.
const MAX_KEPT_PER_APP: usize = 128;

/// Why a request did not reach its app.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No TCP connection could be made.
    #[error("connecting to {upstream}: {source}")]
    Connect {
        /// The app's address.
        upstream: String,
        /// Why.
        source: std::io::Error,
    },
    /// No TCP connection within the connect timeout.
    #[error("connecting to {upstream}: no answer within {timeout:?}")]
    ConnectTimeout {
        /// The app's address.
        upstream: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The HTTP exchange failed (the app closed the connection, sent a malformed answer…).
    #[error("HTTP to {upstream}: {source}")]
    Http {
        /// The app's address.
        upstream: String,
        /// Why.
        source: hyper::Error,
    },
}

struct Kept<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// One worker's connections to the apps, by `host:port`.
pub struct Upstreams<B> {
    kept: Mutex<HashMap<String, VecDeque<Kept<B>>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl<B> std::fmt::Debug for Upstreams<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<B> Upstreams<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Connections made within `connect_timeout` and closed after `idle_timeout` unused.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            kept: Mutex::default(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// Sends `req` (origin-form target, `Host` set) to the app at `upstream` and returns its
    /// response head. `reusable: false` (an upgrade) keeps the connection out of the queue.
    /// A kept connection the app closed meanwhile gives the request back unsent, and it goes
    /// out once more on a new connection; one that failed after sending is an error.
    pub async fn send(
        &self,
        upstream: &str,
        req: Request<B>,
        reusable: bool,
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let http = |source| UpstreamError::Http {
            upstream: upstream.to_owned(),
            source,
        };
        let mut req = req;
        if let Some(mut sender) = self.checkout(upstream) {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    if reusable {
                        self.keep(upstream, sender);
                    }
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(http(e.into_error())),
                },
            }
        }
        // Boxed: connecting is the rare case and its future is large.
        let mut sender = Box::pin(self.connect(upstream)).await?;
        let resp = sender.send_request(req).await.map_err(http)?;
        if reusable {
            self.keep(upstream, sender);
        }
        Ok(resp)
    }

    /// A kept connection to `upstream` ready for a request; closed ones are dropped, busy
    /// ones (a body still streaming) stay queued.
    fn checkout(&self, upstream: &str) -> Option<SendRequest<B>> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = kept.get_mut(upstream)?;
        for _ in 0..queue.len() {
            let k = queue.pop_front()?;
            if k.sender.is_ready() {
                return Some(k.sender);
            }
            if !k.sender.is_closed() {
                queue.push_back(k);
            }
        }
        None
    }

    fn keep(&self, upstream: &str, sender: SendRequest<B>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let since = Instant::now();
        match kept.get_mut(upstream) {
            Some(queue) if queue.len() >= MAX_KEPT_PER_APP => {}
            Some(queue) => queue.push_back(Kept { sender, since }),
            None => {
                kept.insert(
                    upstream.to_owned(),
                    VecDeque::from([Kept { sender, since }]),
                );
            }
        }
    }

    async fn connect(&self, upstream: &str) -> Result<SendRequest<B>, UpstreamError> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(upstream),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(UpstreamError::Connect {
                    upstream: upstream.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    upstream: upstream.to_owned(),
                    timeout: self.connect_timeout,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Http {
                upstream: upstream.to_owned(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "app connection ended");
            }
        });
        Ok(sender)
    }

    /// Closes connections unused for the idle timeout or closed by their app, and forgets
    /// apps with none left (their routes may be gone). Returns how many are kept. A
    /// connection still streaming an answer older than the timeout leaves the queue too: the
    /// answer goes on to its end (hyper finishes a request in flight when its sender is
    /// dropped) and the connection then closes instead of being reused.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|_, queue| {
            queue.retain(|k| {
                !k.sender.is_closed() && now.saturating_duration_since(k.since) < self.idle_timeout
            });
            !queue.is_empty()
        });
        kept.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
