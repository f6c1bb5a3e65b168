//! Certificates by ACME for tenants' custom domains. The keeper routes a custom domain only
//! after its DNS proof; the gateway then orders a certificate for every routed hostname that
//! is neither under the apps domain nor covered by a certificate from the files, proves it by
//! TLS-ALPN-01 on its own port ([`order`]), stores it ([`store`]) and serves it by SNI. It
//! renews in the last third of a certificate's life, backs off per domain after a failure
//! (1 min doubling to 6 h), and starts at most `orders_per_hour` orders, so tenants naming
//! domains cannot spend the provider's rate limits at the CA.

pub mod order;
pub mod store;

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use instant_acme::{Account, AccountCredentials, NewAccount};
use tokio::sync::watch;

use crate::{metrics::Metrics, routes::Routes, tls::Certificates};
use store::{Held, Store};

/// Why a certificate could not be obtained or kept.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("the ACME server refused: {0}")]
    Refused(String),
    #[error("making a key or request: {0}")]
    Key(#[from] rcgen::Error),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("account credentials: {0}")]
    Account(#[source] serde_json::Error),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl AcmeError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// What the manager needs from the configuration.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The ACME server's directory URL.
    pub directory: String,
    /// A PEM CA certificate the ACME server's HTTPS is checked against instead of the
    /// system's roots (a test CA such as pebble's).
    pub root: Option<PathBuf>,
    /// Where certificates and the account are kept.
    pub store: PathBuf,
    /// `mailto:` contact for the account.
    pub contact: Option<String>,
    /// How often the routes are looked at besides each new table.
    pub check_every: Duration,
    /// Most orders started in any hour.
    pub orders_per_hour: usize,
    /// The apps domain and the API hostname: never ordered (the provider's own files).
    pub apps_domain: String,
    pub api_host: Option<String>,
}

/// The longest one order may take, all steps.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// A domain's failed orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub retry_at: SystemTime,
}

impl Failures {
    /// After one more failure at `now`.
    pub fn after(previous: Option<Self>, now: SystemTime) -> Self {
        let count = previous.map_or(0, |f| f.count).saturating_add(1);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (count - 1).min(16))
            .min(MAX_BACKOFF);
        Self {
            count,
            retry_at: now + wait,
        }
    }
}

/// The domains to order now, in name order: routed custom domains (`hosts` already filtered
/// to those) with no certificate or one due for renewal, and not waiting after a failure.
pub fn due(
    hosts: &[String],
    held: &HashMap<String, Held>,
    failures: &HashMap<String, Failures>,
    now: SystemTime,
) -> Vec<String> {
    let mut due: Vec<String> = hosts
        .iter()
        .filter(|h| held.get(*h).is_none_or(|c| c.validity.renewal_due(now)))
        .filter(|h| failures.get(*h).is_none_or(|f| now >= f.retry_at))
        .cloned()
        .collect();
    due.sort();
    due.dedup();
    due
}

/// Orders started in the last hour.
#[derive(Debug, Default)]
struct Window(VecDeque<Instant>);

impl Window {
    fn admit(&mut self, limit: usize, now: Instant) -> bool {
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            self.0.pop_front();
        }
        let admitted = self.0.len() < limit;
        if admitted {
            self.0.push_back(now);
        }
        admitted
    }
}

/// Obtains and renews custom domains' certificates for as long as the gateway runs.
pub struct Manager {
    settings: AcmeSettings,
    certificates: Arc<Certificates>,
    routes: Arc<Routes>,
    metrics: Arc<Metrics>,
    store: Store,
    account: Option<Account>,
    held: HashMap<String, Held>,
    failures: HashMap<String, Failures>,
    window: Window,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("settings", &self.settings)
            .field("held", &self.held.keys().collect::<Vec<_>>())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Opens the store and serves the certificates already in it.
    pub fn new(
        settings: AcmeSettings,
        certificates: Arc<Certificates>,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AcmeError> {
        let store = Store::open(&settings.store)?;
        let mut held = HashMap::new();
        for (domain, cert) in store.load_all()? {
            certificates.install_issued(&domain, &cert.key);
            held.insert(domain, cert);
        }
        metrics.acme_certificates(held.len());
        tracing::info!(certificates = held.len(), store = %settings.store.display(), "ACME store loaded");
        Ok(Self {
            settings,
            certificates,
            routes,
            metrics,
            store,
            account: None,
            held,
            failures: HashMap::new(),
            window: Window::default(),
        })
    }

    /// The routed hostnames a certificate must be ordered for.
    fn custom_domains(&self) -> Vec<String> {
        let apps = format!(".{}", self.settings.apps_domain);
        self.routes
            .hosts()
            .into_iter()
            .filter(|h| !h.ends_with(&apps) && Some(h) != self.settings.api_host.as_ref())
            .filter(|h| !self.certificates.files_cover(h))
            .collect()
    }

    /// Looks at the routes after each new table and every `check_every`, until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = SystemTime::now();
            for domain in due(&self.custom_domains(), &self.held, &self.failures, now) {
                if !self
                    .window
                    .admit(self.settings.orders_per_hour, Instant::now())
                {
                    tracing::warn!(
                        limit = self.settings.orders_per_hour,
                        "ACME orders per hour reached; the rest wait"
                    );
                    break;
                }
                tokio::select! {
                    () = self.order(&domain) => {}
                    _ = shutdown.changed() => return,
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.check_every) => {}
                () = self.routes.updated() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn order(&mut self, domain: &str) {
        let started = Instant::now();
        tracing::info!(%domain, "ordering a certificate");
        let result = match tokio::time::timeout(ORDER_TIMEOUT, self.obtain(domain)).await {
            Ok(r) => r,
            Err(_) => Err(AcmeError::Timeout(ORDER_TIMEOUT)),
        };
        match result {
            Ok(held) => {
                tracing::info!(%domain, took_ms = started.elapsed().as_millis(), "certificate obtained");
                self.certificates.install_issued(domain, &held.key);
                self.held.insert(domain.to_owned(), held);
                self.failures.remove(domain);
                self.metrics.acme_order(true);
                self.metrics.acme_certificates(self.held.len());
            }
            Err(e) => {
                let failures =
                    Failures::after(self.failures.get(domain).copied(), SystemTime::now());
                tracing::warn!(%domain, error = %e, failures = failures.count, "certificate not obtained; retrying later");
                self.failures.insert(domain.to_owned(), failures);
                self.metrics.acme_order(false);
            }
        }
    }

    async fn obtain(&mut self, domain: &str) -> Result<Held, AcmeError> {
        let account = self.account().await?;
        let issued = order::obtain(&account, &self.certificates, domain).await?;
        let held = store::parse(&issued.chain_pem, &issued.key_pem)?;
        self.store
            .save(domain, &issued.chain_pem, &issued.key_pem)?;
        Ok(held)
    }

    /// The account: restored from the store, or created (and saved) on the first order.
    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let builder = match &self.settings.root {
            Some(root) => Account::builder_with_root(root)?,
            None => Account::builder()?,
        };
        let account = match self.store.account()? {
            Some(json) => {
                let credentials: AccountCredentials =
                    serde_json::from_str(&json).map_err(AcmeError::Account)?;
                builder.from_credentials(credentials).await?
            }
            None => {
                let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.settings.directory.clone(),
                        None,
                    )
                    .await?;
                let json = serde_json::to_string(&credentials).map_err(AcmeError::Account)?;
                self.store.save_account(&json)?;
                tracing::info!(id = account.id(), "ACME account created");
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn backoff_doubles_to_six_hours() {
        let mut f = None;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = Failures::after(f, at(0));
            waits.push(
                next.retry_at
                    .duration_since(at(0))
                    .expect("test value")
                    .as_secs(),
            );
            f = Some(next);
        }
        assert_eq!(&waits[..4], &[60, 120, 240, 480]);
        assert_eq!(*waits.last().expect("test value"), 6 * 3600);
    }

    #[test]
    fn due_skips_held_and_waiting_domains() {
        let key = rcgen::KeyPair::generate().expect("test value");
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .expect("test value")
            .self_signed(&key)
            .expect("test value");
        let fresh = store::parse(&cert.pem(), &key.serialize_pem()).expect("test value");
        let mut old = fresh.clone();
        old.validity.not_after = SystemTime::now();
        let held = HashMap::from([
            ("a.example".to_owned(), fresh),
            ("b.example".to_owned(), old),
        ]);
        let now = SystemTime::now();
        let failures = HashMap::from([
            (
                "c.example".to_owned(),
                Failures {
                    count: 1,
                    retry_at: now + Duration::from_secs(60),
                },
            ),
            (
                "d.example".to_owned(),
                Failures {
                    count: 3,
                    retry_at: now - Duration::from_secs(1),
                },
            ),
        ]);
        let hosts: Vec<String> = [
            "e.example",
            "d.example",
            "c.example",
            "b.example",
            "a.example",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            due(&hosts, &held, &failures, now),
            ["b.example", "d.example", "e.example"]
        );
    }

    #[test]
    fn the_window_admits_so_many_per_hour() {
        let mut w = Window::default();
        let t0 = Instant::now();
        assert!(w.admit(2, t0));
        assert!(w.admit(2, t0 + Duration::from_secs(1)));
        assert!(!w.admit(2, t0 + Duration::from_secs(2)));
        assert!(w.admit(2, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn the_challenge_certificate_names_the_domain_and_carries_the_digest() {
        let digest = [7u8; 32];
        let key = order::challenge_key("shop.example.org", &digest).expect("test value");
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).expect("test value");
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(ext.value, [&[0x04, 0x20][..], &digest].concat());
        let san = cert
            .subject_alternative_name()
            .expect("test value")
            .expect("test value");
        assert_eq!(san.value.general_names.len(), 1);
    }
}
