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
struct AcmeOutcome {
    /// `issued` or `failed`.
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    /// Why the gateway answered itself: `bad_host`, `no_route`, `upstream_down`,
    /// `upstream_timeout`, `wake_failed`.
    reason: String,
}

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No valid hostname in the request.
    BadHost,
    /// No route for the hostname.
    NoRoute,
    /// The app did not accept the request.
    UpstreamDown,
    /// The app did not answer in time.
    UpstreamTimeout,
    /// The app is scaled to zero and could not be woken within the budget.
    WakeFailed,
}

impl Refused {
    const ALL: [Self; 5] = [
        Self::BadHost,
        Self::NoRoute,
        Self::UpstreamDown,
        Self::UpstreamTimeout,
        Self::WakeFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::BadHost => "bad_host",
            Self::NoRoute => "no_route",
            Self::UpstreamDown => "upstream_down",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::WakeFailed => "wake_failed",
        }
    }
}

/// One app's counters, made once when its route is installed, so a request touches no lock
/// and allocates nothing for metrics.
#[derive(Debug, Clone)]
pub struct AppCounters {
    /// Answers by status class (1xx to 5xx).
    requests: [Counter; 5],
    /// Request body bytes sent to the app.
    pub bytes_in: Counter,
    /// Response body bytes sent to clients.
    pub bytes_out: Counter,
}

impl AppCounters {
    /// (request bytes, response bytes) so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_in.get(), self.bytes_out.get())
    }

    /// The app answered with `status`.
    pub fn answered(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
    }
}

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Answer, Counter>,
    bytes_in: Family<App, Counter>,
    bytes_out: Family<App, Counter>,
    refusals: [Counter; 5],
    upstream_seconds: Histogram,
    cold_start_seconds: Histogram,
    connections: Gauge,
    upgraded: Gauge,
    handshake_failures: Counter,
    routes: Gauge,
    /// Issued, failed.
    acme_orders: [Counter; 2],
    acme_certificates: Gauge,
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
        let refusal_family = Family::<Refusal, Counter>::default();
        let refusals = Refused::ALL.map(|r| {
            refusal_family
                .get_or_create(&Refusal {
                    reason: r.label().into(),
                })
                .clone()
        });
        let upstream_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let cold_start_seconds = Histogram::new(exponential_buckets(0.05, 1.5, 16));
        let connections = Gauge::default();
        let upgraded = Gauge::default();
        let handshake_failures = Counter::default();
        let routes = Gauge::default();
        let acme_family = Family::<AcmeOutcome, Counter>::default();
        let acme_orders = ["issued", "failed"].map(|r| {
            acme_family
                .get_or_create(&AcmeOutcome { result: r.into() })
                .clone()
        });
        let acme_certificates = Gauge::default();
        registry.register(
            "acme_orders",
            "Certificate orders to the ACME server, by result",
            acme_family,
        );
        registry.register(
            "acme_certificates",
            "Certificates obtained by ACME that the gateway serves",
            acme_certificates.clone(),
        );
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
            refusal_family,
        );
        registry.register(
            "upstream_seconds",
            "Time from forwarding a request to the app's response headers",
            upstream_seconds.clone(),
        );
        registry.register(
            "cold_start_seconds",
            "Time from the first request for an app scaled to zero until it accepted connections",
            cold_start_seconds.clone(),
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
            cold_start_seconds,
            connections,
            upgraded,
            handshake_failures,
            routes,
            acme_orders,
            acme_certificates,
        }
    }

    /// The counters of `app`'s series.
    pub fn app(&self, app: &App) -> AppCounters {
        let class = |c: &str| {
            self.requests
                .get_or_create(&Answer {
                    lease: app.lease.clone(),
                    service: app.service.clone(),
                    class: c.into(),
                })
                .clone()
        };
        AppCounters {
            requests: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(class),
            bytes_in: self.bytes_in.get_or_create(app).clone(),
            bytes_out: self.bytes_out.get_or_create(app).clone(),
        }
    }

    /// The gateway answered itself.
    pub fn refused(&self, why: Refused) {
        self.refusals[why as usize].inc();
    }

    /// Time to the app's response headers.
    pub fn upstream(&self, took: Duration) {
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    /// An app scaled to zero took `took` to wake.
    pub fn cold_start(&self, took: Duration) {
        self.cold_start_seconds.observe(took.as_secs_f64());
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

    /// An ACME order ended: a certificate (`issued`) or not.
    pub fn acme_order(&self, issued: bool) {
        self.acme_orders[usize::from(!issued)].inc();
    }

    /// The gateway serves `n` certificates obtained by ACME.
    pub fn acme_certificates(&self, n: usize) {
        self.acme_certificates
            .set(i64::try_from(n).unwrap_or(i64::MAX));
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
