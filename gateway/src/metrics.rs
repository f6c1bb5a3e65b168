//! The gateway's Prometheus metrics (`prometheus-client`): requests and bytes per lease and
//! service (metering at the door: egress bytes are what a later price would bill), upstream
//! latency, connections, handshake failures. A route's series go when its route goes.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of a route's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct App {
    /// Lease id, decimal (`api` for the provider API).
    pub lease: String,
    /// Manifest service.
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    lease: String,
    service: String,
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    /// Why the gateway answered itself: `bad_host`, `no_route`, `upstream_down`,
    /// `upstream_timeout`.
    reason: String,
}

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Answer, Counter>,
    bytes_in: Family<App, Counter>,
    bytes_out: Family<App, Counter>,
    refusals: Family<Refusal, Counter>,
    upstream_seconds: Histogram,
    connections: Gauge,
    upgraded: Gauge,
    handshake_failures: Counter,
    routes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under `berth_gateway_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth_gateway");
        let requests = Family::<Answer, Counter>::default();
        let bytes_in = Family::<App, Counter>::default();
        let bytes_out = Family::<App, Counter>::default();
        let refusals = Family::<Refusal, Counter>::default();
        let upstream_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let connections = Gauge::default();
        let upgraded = Gauge::default();
        let handshake_failures = Counter::default();
        let routes = Gauge::default();
        registry.register(
            "requests",
            "Requests answered by an app, by status class",
            requests.clone(),
        );
        registry.register(
            "request_bytes",
            "Request body bytes sent to an app (upgraded connections included)",
            bytes_in.clone(),
        );
        registry.register(
            "response_bytes",
            "Response body bytes sent to clients: the app's egress (upgraded connections included)",
            bytes_out.clone(),
        );
        registry.register(
            "refusals",
            "Requests the gateway answered itself, by reason",
            refusals.clone(),
        );
        registry.register(
            "upstream_seconds",
            "Time from forwarding a request to the app's response headers",
            upstream_seconds.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "upgraded_connections",
            "Open upgraded (WebSocket) connections",
            upgraded.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            handshake_failures.clone(),
        );
        registry.register("routes", "Hostnames in the route table", routes.clone());
        Self {
            registry,
            requests,
            bytes_in,
            bytes_out,
            refusals,
            upstream_seconds,
            connections,
            upgraded,
            handshake_failures,
            routes,
        }
    }

    /// An app answered with `status`.
    pub fn answered(&self, app: &App, status: u16) {
        let class = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&Answer {
                lease: app.lease.clone(),
                service: app.service.clone(),
                class,
            })
            .inc();
    }

    /// The counter of bytes sent to `app`.
    pub fn bytes_in(&self, app: &App) -> Counter {
        self.bytes_in.get_or_create(app).clone()
    }

    /// The counter of bytes `app` sent to clients.
    pub fn bytes_out(&self, app: &App) -> Counter {
        self.bytes_out.get_or_create(app).clone()
    }

    /// The gateway answered itself.
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&Refusal {
                reason: reason.into(),
            })
            .inc();
    }

    /// Time to the app's response headers.
    pub fn upstream(&self, took: Duration) {
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    /// Open client connections.
    pub fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// Open upgraded connections.
    pub fn upgraded(&self) -> &Gauge {
        &self.upgraded
    }

    /// A failed TLS handshake.
    pub fn handshake_failed(&self) {
        self.handshake_failures.inc();
    }

    /// The route table now holds `routes`; the series of apps no longer in it are dropped.
    pub fn routes_replaced(&self, routes: usize, gone: &[App]) {
        self.routes.set(i64::try_from(routes).unwrap_or(i64::MAX));
        for app in gone {
            self.bytes_in.remove(app);
            self.bytes_out.remove(app);
            for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                self.requests.remove(&Answer {
                    lease: app.lease.clone(),
                    service: app.service.clone(),
                    class: class.into(),
                });
            }
        }
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
