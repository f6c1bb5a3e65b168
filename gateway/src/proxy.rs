//! The reverse proxy: one request from a client (HTTP/1.1 or HTTP/2 over TLS) to the workload
//! its hostname routes to (HTTP/1.1 on the provider's network), bodies streamed both ways,
//! WebSocket upgrades spliced, hop-by-hop headers dropped, `X-Forwarded-*` set by the gateway
//! alone. Whatever the client sends, the answer is the app's or one of the gateway's own
//! (400 bad host, 404 no app, 502 app down, 504 app too slow), never a crash.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{self, CONNECTION, HOST, UPGRADE},
};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;

use crate::{
    body::{Counted, CountedIo},
    metrics::{App, Metrics, Refused},
    routes::{Routes, Target},
    signin::{SignIn, strip_session_cookie},
    upstream::Upstreams,
    wake::{Busy, Waker},
};

/// The body of every answer.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Headers a client may not send on to an app: the gateway sets them.
const SET_BY_GATEWAY: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];
/// How long an unused connection to an app is kept.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Headers of one hop (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    UPGRADE,
];
/// Prefix of headers the gateway sets for apps (e.g. the signed-in address); a client's are
/// dropped.
const BERTH_PREFIX: &str = "x-berth-";

/// What the proxy needs besides the routes.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The provider API's hostname, if served.
    pub api_host: Option<String>,
    /// The keeper's tenant API.
    pub api_upstream: SocketAddr,
    /// Deadline for connecting to an app.
    pub connect_timeout: Duration,
    /// Deadline for an app's response headers.
    pub response_timeout: Duration,
    /// Wakes apps scaled to zero.
    pub waker: Waker,
    /// Signs people in to private apps.
    pub signin: Arc<SignIn>,
}

/// Forwards requests by hostname.
#[derive(Debug)]
pub struct Proxy {
    routes: Arc<Routes>,
    upstreams: Upstreams<Counted<Incoming>>,
    metrics: Arc<Metrics>,
    settings: ProxySettings,
    api: Arc<Target>,
}

impl Proxy {
    /// A proxy over `routes`.
    pub fn new(routes: Arc<Routes>, metrics: Arc<Metrics>, settings: ProxySettings) -> Self {
        let upstreams = Upstreams::new(settings.connect_timeout, UPSTREAM_IDLE_TIMEOUT);
        let app = App {
            lease: crate::routes::API_LEASE.into(),
            service: "api".into(),
        };
        let api = Arc::new(Target {
            counters: metrics.app(&app),
            activity: Arc::default(),
            app,
            upstream: settings.api_upstream.to_string(),
            asleep: None,
            access: None,
        });
        Self {
            routes,
            upstreams,
            metrics,
            settings,
            api,
        }
    }

    /// Closes this worker's app connections left unused for a minute, every 15 s, until
    /// `shutdown` turns true.
    pub async fn sweep_upstreams(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_secs(15));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    self.upstreams.sweep(std::time::Instant::now());
                }
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Answers one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: &Peer) -> Response<Body> {
        let Some(host) = request_host(&req) else {
            self.metrics.refused(Refused::BadHost);
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request does not name a valid hostname.",
            );
        };
        let target = if self.settings.api_host.as_deref() == Some(host.as_str()) {
            Arc::clone(&self.api)
        } else if let Some(t) = self.routes.get(&host) {
            t
        } else {
            self.metrics.refused(Refused::NoRoute);
            return page(
                StatusCode::NOT_FOUND,
                "No app here",
                "No running lease is served at this address. If the lease just started, try again in a few seconds; if it ended, its address is gone.",
            );
        };
        if req
            .uri()
            .path()
            .starts_with(berth_protocol::routing::signin::PREFIX)
        {
            // Boxed: rare and large, it would otherwise make every request's future larger.
            return Box::pin(self.settings.signin.endpoint(req, &host, &target)).await;
        }
        let address = match &target.access {
            Some(access) => match self
                .settings
                .signin
                .admit(req.headers(), &host, &target, access)
            {
                Ok(a) => Some(a),
                Err(answer) => return *answer,
            },
            None => None,
        };
        let busy = target.activity.busy();
        let mut held = None;
        if let Some(sleep) = target.asleep {
            let lease = target.app.lease.parse().unwrap_or_default();
            let woken = Box::pin(self.settings.waker.wake(
                &target.activity,
                sleep,
                lease,
                &target.app.service,
                &target.upstream,
            ))
            .await;
            match woken {
                Ok(w) => {
                    if w.waker {
                        tracing::info!(lease = %target.app.lease, service = %target.app.service, ms = w.held.as_millis(), "app woken");
                        self.metrics.cold_start(w.held);
                    }
                    held = (!w.held.is_zero()).then_some(w.held);
                }
                Err(e) => {
                    tracing::warn!(lease = %target.app.lease, service = %target.app.service, error = %e, "app not woken");
                    self.metrics.refused(Refused::WakeFailed);
                    target.counters.answered(503);
                    let mut resp = page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The app is starting",
                        "This app sleeps while nobody uses it and did not start in time for this request. Try again in a few seconds.",
                    );
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    return resp;
                }
            }
        }
        let mut resp = self.forward(req, peer, &host, &target, busy, address).await;
        if let Some(held) = held
            && let Ok(v) = HeaderValue::from_str(&format!(
                "cold-start;dur={:.1}",
                held.as_secs_f64() * 1000.0
            ))
        {
            resp.headers_mut().append(SERVER_TIMING, v);
        }
        resp
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: &Peer,
        host: &str,
        target: &Target,
        busy: Busy,
        address: Option<alloy_primitives::Address>,
    ) -> Response<Body> {
        let upgrade = wants_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        if let Some(uri) = origin_form(&parts.uri) {
            parts.uri = uri;
        }
        parts.version = Version::HTTP_11;
        let upgrade_to = parts.headers.get(UPGRADE).cloned();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.retain_not(|name| {
            SET_BY_GATEWAY.contains(&name.as_str()) || name.as_str().starts_with(BERTH_PREFIX)
        });
        set_forwarded(&mut parts.headers, peer, host);
        if let Some(a) = address {
            strip_session_cookie(&mut parts.headers);
            if let Ok(v) = HeaderValue::from_str(&a.to_checksum(None)) {
                parts.headers.insert(
                    HeaderName::from_static(berth_protocol::routing::signin::ADDRESS_HEADER),
                    v,
                );
            }
        }
        if let (Some(_), Some(to)) = (&upgrade, upgrade_to) {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, to);
        }
        let bytes_in = target.counters.bytes_in.clone();
        let request = Request::from_parts(parts, Counted::new(body, bytes_in.clone()));

        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(
            self.settings.response_timeout,
            self.upstreams
                .send(&target.upstream, request, upgrade.is_none()),
        )
        .await;
        self.metrics.upstream(started.elapsed());
        let mut resp = match answer {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::debug!(lease = %target.app.lease, service = %target.app.service, error = %e, "app did not answer");
                self.metrics.refused(Refused::UpstreamDown);
                target.counters.answered(502);
                return page(
                    StatusCode::BAD_GATEWAY,
                    "The app is not answering",
                    "The app's container did not accept the request. It may be starting or restarting; try again shortly.",
                );
            }
            Err(_) => {
                self.metrics.refused(Refused::UpstreamTimeout);
                target.counters.answered(504);
                return page(
                    StatusCode::GATEWAY_TIMEOUT,
                    "The app is too slow",
                    "The app did not begin its answer in time.",
                );
            }
        };
        target.counters.answered(resp.status().as_u16());
        let bytes_out = target.counters.bytes_out.clone();
        if let Some(client_side) =
            upgrade.filter(|_| resp.status() == StatusCode::SWITCHING_PROTOCOLS)
        {
            let app_side = hyper::upgrade::on(&mut resp);
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(splice(
                client_side,
                app_side,
                bytes_in,
                bytes_out,
                metrics,
                busy,
            ));
            let (mut parts, _) = resp.into_parts();
            let to = parts.headers.get(UPGRADE).cloned();
            strip_hop_by_hop(&mut parts.headers);
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(to) = to {
                parts.headers.insert(UPGRADE, to);
            }
            return Response::from_parts(parts, empty());
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, Counted::new(body, bytes_out).holding(busy).boxed())
    }
}

/// Copies an upgraded connection both ways until either side closes.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    app: hyper::upgrade::OnUpgrade,
    bytes_in: Counter,
    bytes_out: Counter,
    metrics: Arc<Metrics>,
    _busy: Busy,
) {
    let (client, app) = match tokio::try_join!(client, app) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    metrics.upgraded().inc();
    let mut client = TokioIo::new(client);
    let mut app = CountedIo::new(TokioIo::new(app), bytes_out, bytes_in);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut app).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
    metrics.upgraded().dec();
}

/// The request's hostname: HTTP/2's `:authority` or HTTP/1.1's `Host`, normalized.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(HOST)?.to_str().ok()?,
    };
    berth_protocol::routing::normalize_host(raw)
}

/// The origin-form target (`/path?query`) the app is sent, when `uri` is not one already
/// (HTTP/2's `:scheme` and `:authority`, an absolute-form or authority-form HTTP/1.1 target).
fn origin_form(uri: &Uri) -> Option<Uri> {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return None;
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Some(Uri::from(path))
}

/// An HTTP/1.1 request asking to switch protocols (WebSocket).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Drops the hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests and answers have none: one pass over the names instead of a lookup per
    // hop-by-hop name.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// How long a request waited for its app to wake (`cold-start;dur=<ms>`).
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A client connection, as its requests are forwarded: its `X-Forwarded-For` value, made
/// once for all its requests.
#[derive(Debug, Clone)]
pub struct Peer {
    forwarded_for: Option<HeaderValue>,
}

impl Peer {
    /// The client at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            forwarded_for: HeaderValue::from_str(&addr.ip().to_canonical().to_string()).ok(),
        }
    }
}

fn set_forwarded(headers: &mut HeaderMap, peer: &Peer, host: &str) {
    if let Some(v) = &peer.forwarded_for {
        headers.insert(X_FORWARDED_FOR, v.clone());
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(X_FORWARDED_HOST, v.clone());
        // HTTP/2 clients send `:authority`, not `Host`; the app gets one either way.
        headers.entry(HOST).or_insert(v);
    }
}

trait RetainNot {
    fn retain_not(&mut self, drop: impl Fn(&HeaderName) -> bool);
}

impl RetainNot for HeaderMap {
    fn retain_not(&mut self, drop: impl Fn(&HeaderName) -> bool) {
        if !self.keys().any(&drop) {
            return;
        }
        let names: Vec<HeaderName> = self.keys().filter(|n| drop(n)).cloned().collect();
        for name in names {
            self.remove(name);
        }
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// One of the gateway's own answers: a short HTML page a person can read (and `text/html`
/// is what a browser shows; API clients read the status).
pub fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{title}</h1><p>{text}</p><p><small>{} — Berth gateway</small></p></body></html>\n",
        status.as_u16()
    );
    html_answer(status, html)
}

/// An HTML page of the gateway's own, never cached.
pub fn html_answer(status: StatusCode, html: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(html))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-kept"]
        );
    }

    #[test]
    fn upgrades_are_recognized_in_any_case_and_list_position() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(wants_upgrade(&h));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!wants_upgrade(&h));
    }

    #[test]
    fn the_host_comes_from_the_authority_or_the_host_header() {
        let req = Request::builder()
            .uri("https://Web-1-ab.apps.test:8443/x")
            .body(())
            .expect("req");
        assert_eq!(request_host(&req).as_deref(), Some("web-1-ab.apps.test"));
        let req = Request::builder()
            .uri("/x")
            .header(HOST, "web-1-ab.apps.test")
            .body(())
            .expect("req");
        assert_eq!(request_host(&req).as_deref(), Some("web-1-ab.apps.test"));
        let req = Request::builder()
            .uri("/x")
            .header(HOST, "bad host")
            .body(())
            .expect("req");
        assert_eq!(request_host(&req), None);
        let req = Request::builder().uri("/x").body(()).expect("req");
        assert_eq!(request_host(&req), None);
    }

    #[test]
    fn apps_get_origin_form_targets() {
        for (target, sent) in [
            ("/a/b?c=1", None),
            ("*", None),
            ("https://web-1-ab.apps.test/a/b?c=1", Some("/a/b?c=1")),
            ("http://web-1-ab.apps.test", Some("/")),
            ("web-1-ab.apps.test:443", Some("/")),
        ] {
            let uri: Uri = target.parse().expect(target);
            assert_eq!(
                origin_form(&uri).map(|u| u.to_string()).as_deref(),
                sent,
                "{target}"
            );
        }
    }

    #[test]
    fn forwarded_headers_are_the_gateways() {
        let mut h = HeaderMap::new();
        set_forwarded(
            &mut h,
            &Peer::new("[::ffff:10.0.0.9]:5000".parse().expect("addr")),
            "a.apps.test",
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.apps.test");
        assert_eq!(h[HOST], "a.apps.test");
    }
}
