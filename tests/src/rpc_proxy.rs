//! A JSON-RPC proxy in front of anvil for races on purpose: it adds latency to every request
//! and can hold every request of one method until the test releases it, so a test can
//! reorganise the chain at an exact point of a client's work.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::transports::http::reqwest;
use eyre::Result;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};

/// What the proxy does to requests.
#[derive(Debug, Default)]
struct Rules {
    /// Added to every request: a delay from `.0` to `.1` ms (spread by a counter).
    latency_ms: (u64, u64),
    /// Requests of this method wait until released.
    hold: Option<String>,
    /// Requests held so far.
    held: usize,
    counter: u64,
    /// JSON-RPC calls seen (a batch counts each call in it).
    calls: u64,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct RpcProxy {
    url: String,
    rules: Arc<Mutex<Rules>>,
    released: watch::Sender<u64>,
    arrived: Arc<Notify>,
    stop: watch::Sender<bool>,
}

impl RpcProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: String) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let rules = Arc::new(Mutex::new(Rules::default()));
        let (released, released_rx) = watch::channel(0u64);
        let arrived = Arc::new(Notify::new());
        let (stop, mut stop_rx) = watch::channel(false);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let shared = (rules.clone(), released_rx, arrived.clone(), client);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                    _ = stop_rx.changed() => return,
                };
                let (rules, released, arrived, client) = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (rules, mut released, arrived, client, upstream) = (
                            rules.clone(),
                            released.clone(),
                            arrived.clone(),
                            client.clone(),
                            upstream.clone(),
                        );
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
                            let method = parsed
                                .as_ref()
                                .and_then(|v| v["method"].as_str().map(str::to_owned))
                                .unwrap_or_default();
                            let calls = parsed
                                .as_ref()
                                .and_then(|v| v.as_array().map(|a| a.len() as u64))
                                .unwrap_or(1);
                            let (delay, hold) = {
                                let mut r = rules.lock().unwrap_or_else(|e| e.into_inner());
                                r.counter += 1;
                                r.calls += calls;
                                let (lo, hi) = r.latency_ms;
                                let delay = lo + (r.counter * 7919) % (hi - lo + 1);
                                let hold = r.hold.as_deref() == Some(method.as_str());
                                if hold {
                                    r.held += 1;
                                }
                                (delay, hold)
                            };
                            if hold {
                                let seen = *released.borrow();
                                arrived.notify_one();
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(60),
                                    released.wait_for(|v| *v > seen),
                                )
                                .await;
                            }
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            let answer = client
                                .post(&upstream)
                                .header("content-type", "application/json")
                                .body(body.to_vec())
                                .send()
                                .await;
                            let bytes = match answer {
                                Ok(r) => r.bytes().await.unwrap_or_default(),
                                Err(_) => Bytes::new(),
                            };
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(bytes))
                                    .unwrap_or_default(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url,
            rules,
            released,
            arrived,
            stop,
        })
    }

    /// The proxy's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// HTTP requests forwarded so far (a JSON-RPC batch is one).
    pub fn requests(&self) -> u64 {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).counter
    }

    /// JSON-RPC calls forwarded so far (each call of a batch counts).
    pub fn calls(&self) -> u64 {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).calls
    }

    /// Adds `lo..=hi` ms to every request.
    pub fn latency(&self, lo: u64, hi: u64) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latency_ms = (lo, hi.max(lo));
    }

    /// Holds every request of `method` (None: none) until [`Self::release`].
    pub fn hold(&self, method: Option<&str>) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).hold = method.map(str::to_owned);
    }

    /// Waits until a held request has arrived (at most `limit`).
    pub async fn wait_held(&self, limit: Duration) -> Result<()> {
        tokio::time::timeout(limit, self.arrived.notified())
            .await
            .map_err(|_| eyre::eyre!("no request was held within {limit:?}"))
    }

    /// Lets every held request through and stops holding.
    pub fn release(&self) {
        self.hold(None);
        self.released.send_modify(|v| *v += 1);
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.release();
    }
}
