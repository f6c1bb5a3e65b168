//! Gateway configuration: a TOML file, then `BERTH_<FIELD>` overrides, through the services'
//! one loader ([`berth_runtime::config`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use berth_runtime::{
    LogFormat,
    config::{ConfigError, ServiceConfig, comma_list, millis, optional, seconds},
};
use serde::Deserialize;

/// Everything the gateway needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where HTTPS is served (`BERTH_LISTEN_ADDR`).
    #[serde(default = "defaults::listen_addr")]
    pub listen_addr: SocketAddr,
    /// The domain apps are served under: `<service>-<lease>-<tag>.<apps_domain>`.
    pub apps_domain: String,
    /// The provider API's own hostname (a sibling of the apps domain, never under it, so
    /// apps cannot read its cookies), proxied to `api_upstream`; unset: no API hostname.
    #[serde(default, deserialize_with = "optional")]
    pub api_host: Option<String>,
    /// The keeper's tenant API (`gateway_addr` in the keeper's config).
    #[serde(default = "defaults::api_upstream")]
    pub api_upstream: SocketAddr,
    /// Certificate chains and keys as PEM files, `cert.pem:key.pem` pairs (comma-separated in
    /// the environment). The certificate for a connection is the first whose names match
    /// its SNI; they are re-read when a file changes.
    #[serde(deserialize_with = "comma_list")]
    pub certificates: Vec<String>,
    /// How often the certificate files are checked for changes.
    #[serde(default = "defaults::cert_reload_s", deserialize_with = "seconds")]
    pub cert_reload_s: Duration,
    /// The local socket the keeper pushes routes to (`PUT /v1/routes`).
    #[serde(default = "defaults::admin_socket")]
    pub admin_socket: PathBuf,
    /// Where the route table is kept so a restarted gateway serves at once.
    #[serde(default, deserialize_with = "optional")]
    pub routes_file: Option<PathBuf>,
    /// Prometheus metrics, `host:port`; empty to disable.
    #[serde(default = "defaults::metrics_addr", deserialize_with = "optional")]
    pub metrics_addr: Option<SocketAddr>,
    /// Worker threads, each with its own listening socket and its own pool of connections
    /// to the apps; unset: one per CPU the gateway may run on.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Most open client connections; further ones are closed at once.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Deadline for the TLS handshake.
    #[serde(
        default = "defaults::handshake_timeout_ms",
        deserialize_with = "millis"
    )]
    pub handshake_timeout_ms: Duration,
    /// Deadline for a request's headers, and for an idle kept-alive connection.
    #[serde(default = "defaults::header_timeout_ms", deserialize_with = "millis")]
    pub header_timeout_ms: Duration,
    /// Largest request head (request line and headers), bytes.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Deadline for connecting to a workload.
    #[serde(default = "defaults::connect_timeout_ms", deserialize_with = "millis")]
    pub connect_timeout_ms: Duration,
    /// Deadline for a workload's response headers (bodies and upgraded connections stream
    /// for as long as both sides keep them).
    #[serde(default = "defaults::response_timeout_s", deserialize_with = "seconds")]
    pub response_timeout_s: Duration,
    /// The keeper's control socket, asked to start an app scaled to zero (`control_socket`
    /// in the keeper's config); empty: apps that sleep cannot be woken (503).
    #[serde(default = "defaults::keeper_socket", deserialize_with = "optional")]
    pub keeper_socket: Option<PathBuf>,
    /// The most a request waits for its app to wake before a 503 with `Retry-After`.
    #[serde(default = "defaults::wake_timeout_s", deserialize_with = "seconds")]
    pub wake_timeout_s: Duration,
    /// A file with the 32-byte key (64 hex digits) that seals private apps' session cookies,
    /// so sessions survive a restart; unset: a random key, and a restart signs everyone out.
    #[serde(default, deserialize_with = "optional")]
    pub session_key_file: Option<PathBuf>,
    /// The longest a sign-in session lasts (a shorter `Expiration Time` in the signed message
    /// wins).
    #[serde(default = "defaults::session_ttl_s", deserialize_with = "seconds")]
    pub session_ttl_s: Duration,
    /// The ACME server's directory URL (Let's Encrypt:
    /// `https://acme-v02.api.letsencrypt.org/directory`); certificates are then obtained for
    /// tenants' proven custom domains that no file covers. Unset: no ACME.
    #[serde(default, deserialize_with = "optional")]
    pub acme_directory: Option<String>,
    /// A PEM CA certificate to check the ACME server's HTTPS against instead of the system's
    /// roots (a test CA); unset: the system's.
    #[serde(default, deserialize_with = "optional")]
    pub acme_root: Option<PathBuf>,
    /// Where obtained certificates and the ACME account are kept.
    #[serde(default = "defaults::acme_store")]
    pub acme_store: PathBuf,
    /// The account's contact, `mailto:ops@example.com` (the CA's expiry warnings go there).
    #[serde(default, deserialize_with = "optional")]
    pub acme_contact: Option<String>,
    /// How often the routes are checked for domains to order or renew (each new route table
    /// is checked at once too).
    #[serde(default = "defaults::acme_check_s", deserialize_with = "seconds")]
    pub acme_check_s: Duration,
    /// Most certificate orders started in any hour (the CA's rate limits are the provider's).
    #[serde(default = "defaults::acme_orders_per_hour")]
    pub acme_orders_per_hour: usize,
    /// How long shutdown waits for requests in flight.
    #[serde(default = "defaults::drain_timeout_s", deserialize_with = "seconds")]
    pub drain_timeout_s: Duration,
    /// `text` or `json` logs.
    #[serde(default)]
    pub log_format: LogFormat,
}

mod defaults {
    use std::{net::SocketAddr, path::PathBuf, time::Duration};

    pub fn listen_addr() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 443))
    }
    pub fn api_upstream() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8443))
    }
    pub fn cert_reload_s() -> Duration {
        Duration::from_secs(10)
    }
    pub fn admin_socket() -> PathBuf {
        "/run/berth/gateway.sock".into()
    }
    pub fn metrics_addr() -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 9465)))
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn handshake_timeout_ms() -> Duration {
        Duration::from_secs(10)
    }
    pub fn header_timeout_ms() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_header_bytes() -> usize {
        64 * 1024
    }
    pub fn connect_timeout_ms() -> Duration {
        Duration::from_secs(5)
    }
    pub fn response_timeout_s() -> Duration {
        Duration::from_secs(120)
    }
    pub fn keeper_socket() -> Option<PathBuf> {
        Some("/run/berth/keeper.sock".into())
    }
    pub fn wake_timeout_s() -> Duration {
        Duration::from_secs(30)
    }
    pub fn session_ttl_s() -> Duration {
        Duration::from_secs(12 * 3600)
    }
    pub fn acme_store() -> PathBuf {
        "/var/lib/berth-gateway/acme".into()
    }
    pub fn acme_check_s() -> Duration {
        Duration::from_secs(60)
    }
    pub fn acme_orders_per_hour() -> usize {
        30
    }
    pub fn drain_timeout_s() -> Duration {
        Duration::from_secs(30)
    }
}

/// A certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Config {
    /// The certificate pairs.
    pub fn cert_files(&self) -> Vec<CertFiles> {
        self.certificates
            .iter()
            .filter_map(|pair| pair.split_once(':'))
            .map(|(cert, key)| CertFiles {
                cert: cert.trim().into(),
                key: key.trim().into(),
            })
            .collect()
    }
}

impl Config {
    /// The ACME manager's settings, when ACME is on.
    pub fn acme_settings(&self) -> Option<crate::acme::AcmeSettings> {
        Some(crate::acme::AcmeSettings {
            directory: self.acme_directory.clone()?,
            root: self.acme_root.clone(),
            store: self.acme_store.clone(),
            contact: self.acme_contact.clone(),
            check_every: self.acme_check_s,
            orders_per_hour: self.acme_orders_per_hour,
            apps_domain: self.apps_domain.trim_end_matches('.').to_owned(),
            api_host: self.api_host.clone(),
        })
    }

    fn validate_acme(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.acme_directory
            && !url.starts_with("https://")
        {
            return Err(ConfigError::invalid(
                "acme_directory",
                format!("`{url}` is not an https:// URL"),
            ));
        }
        if let Some(contact) = &self.acme_contact
            && !contact.starts_with("mailto:")
        {
            return Err(ConfigError::invalid(
                "acme_contact",
                format!("`{contact}` is not a mailto: URL"),
            ));
        }
        if self.acme_orders_per_hour == 0 {
            return Err(ConfigError::invalid(
                "acme_orders_per_hour",
                "must be above zero",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_acme()?;
        let domain = self.apps_domain.trim_end_matches('.');
        if berth_protocol::routing::normalize_host(domain).as_deref() != Some(domain) {
            return Err(ConfigError::invalid(
                "apps_domain",
                format!("`{}` is not a lower-case hostname", self.apps_domain),
            ));
        }
        if let Some(api) = &self.api_host {
            if berth_protocol::routing::normalize_host(api).as_deref() != Some(api.as_str()) {
                return Err(ConfigError::invalid(
                    "api_host",
                    format!("`{api}` is not a lower-case hostname"),
                ));
            }
            if api.ends_with(&format!(".{domain}")) {
                return Err(ConfigError::invalid(
                    "api_host",
                    "must not be under apps_domain (apps would share its cookies)",
                ));
            }
        }
        if self.certificates.is_empty() {
            return Err(ConfigError::invalid(
                "certificates",
                "at least one cert.pem:key.pem pair is required",
            ));
        }
        if let Some(bad) = self.certificates.iter().find(|p| !p.contains(':')) {
            return Err(ConfigError::invalid(
                "certificates",
                format!("`{bad}` is not cert.pem:key.pem"),
            ));
        }
        for (field, v) in [
            ("cert_reload_s", self.cert_reload_s),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("response_timeout_s", self.response_timeout_s),
            ("wake_timeout_s", self.wake_timeout_s),
            ("session_ttl_s", self.session_ttl_s),
            ("acme_check_s", self.acme_check_s),
        ] {
            if v.is_zero() {
                return Err(ConfigError::invalid(field, "must be above zero"));
            }
        }
        if let Some(w) = self.workers
            && !(1..=1024).contains(&w)
        {
            return Err(ConfigError::invalid("workers", "must be 1 to 1024"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "max_connections",
                "must be above zero",
            ));
        }
        if !(8192..=1 << 20).contains(&self.max_header_bytes) {
            return Err(ConfigError::invalid(
                "max_header_bytes",
                "must be 8192 to 1048576",
            ));
        }
        Ok(())
    }

    fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::load(None, |k| env.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("BERTH_APPS_DOMAIN", "apps.example.com"),
        (
            "BERTH_CERTIFICATES",
            "/etc/berth/apps.crt:/etc/berth/apps.key",
        ),
    ];

    #[test]
    fn env_alone_is_enough() {
        let cfg = load(BASE).expect("valid");
        assert_eq!(cfg.listen_addr.port(), 443);
        assert_eq!(
            cfg.cert_files(),
            vec![CertFiles {
                cert: "/etc/berth/apps.crt".into(),
                key: "/etc/berth/apps.key".into()
            }]
        );
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
        let cfg = Config::load(Some(&path), |_| None).expect("gateway.example.toml loads");
        assert_eq!(cfg.apps_domain, "apps.example.com");
        assert_eq!(cfg.response_timeout_s, Duration::from_secs(120));
        assert_eq!(cfg.cert_files().len(), 1);
    }

    #[test]
    fn acme_is_off_unless_a_directory_is_set() {
        assert!(load(BASE).expect("valid").acme_settings().is_none());
        let mut env = BASE.to_vec();
        env.push(("BERTH_ACME_DIRECTORY", "https://acme.example/dir"));
        env.push(("BERTH_APPS_DOMAIN", "apps.example.com."));
        let acme = load(&env).expect("valid").acme_settings().expect("on");
        assert_eq!(acme.directory, "https://acme.example/dir");
        assert_eq!(acme.apps_domain, "apps.example.com");
        assert_eq!(acme.orders_per_hour, 30);
    }

    #[test]
    fn errors_name_the_field() {
        for (var, value, says) in [
            (
                "BERTH_ACME_DIRECTORY",
                "http://acme.example/dir",
                "`acme_directory`",
            ),
            ("BERTH_ACME_CONTACT", "ops@example.com", "`acme_contact`"),
            ("BERTH_ACME_ORDERS_PER_HOUR", "0", "`acme_orders_per_hour`"),
            ("BERTH_ACME_CHECK_S", "0", "`acme_check_s`"),
            ("BERTH_APPS_DOMAIN", "Apps_Example", "`apps_domain`"),
            (
                "BERTH_API_HOST",
                "api.apps.example.com",
                "must not be under apps_domain",
            ),
            (
                "BERTH_CERTIFICATES",
                "only-a-cert.pem",
                "is not cert.pem:key.pem",
            ),
            ("BERTH_MAX_HEADER_BYTES", "10", "`max_header_bytes`"),
            ("BERTH_WORKERS", "0", "`workers`"),
            ("BERTH_HEADER_TIMEOUT_MS", "0", "`header_timeout_ms`"),
            ("BERTH_WAKE_TIMEOUT_S", "0", "`wake_timeout_s`"),
            ("BERTH_SESSION_TTL_S", "soon", "BERTH_SESSION_TTL_S"),
        ] {
            let mut env = BASE.to_vec();
            env.push((var, value));
            let e = load(&env).expect_err(var).to_string();
            assert!(e.contains(says), "{var}: {e}");
        }
    }
}
