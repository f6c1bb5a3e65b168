//! Keeper configuration: a TOML file, then `BERTH_<FIELD>` environment overrides (the field
//! name in upper case), loaded by the services' one loader ([`berth_runtime::config`]) and
//! validated at start with errors that name the bad field and where it came from.

use std::{
    collections::BTreeSet, net::SocketAddr, ops::RangeInclusive, path::PathBuf, str::FromStr,
    time::Duration,
};

use berth_runtime::{
    LogFormat,
    config::{
        ConfigError, ServiceConfig, Url, comma_list, millis, optional, require_scheme, seconds,
    },
};
use serde::{Deserialize, Serialize};

use berth_protocol::manifest::policy::{Policy, SAFE_CAPABILITIES};

/// Everything the provider keeper needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// JSON-RPC endpoint (http or https).
    pub rpc_url: Url,
    /// `deployments/<chainId>.json` written by the deploy script.
    pub deployment: PathBuf,
    /// The provider id this keeper serves.
    pub provider_id: u32,
    /// Postgres connection string (`DATABASE_URL` is used when unset).
    #[serde(default)]
    pub database_url: String,
    /// Operator key as hex, for local use (prefer `keystore`).
    #[serde(default)]
    pub operator_key: String,
    /// Encrypted JSON keystore of the operator key.
    #[serde(default)]
    pub keystore: Option<PathBuf>,
    /// File holding the keystore's password.
    #[serde(default)]
    pub keystore_password_file: Option<PathBuf>,
    /// `podman` or `kubernetes`.
    #[serde(default)]
    pub engine: EngineKind,
    /// podman's REST socket (podman engine).
    #[serde(default = "defaults::podman_socket")]
    pub podman_socket: PathBuf,
    /// podman network the pods join, created when missing (empty: podman's default kube
    /// network, a /24 that holds 253 pods).
    #[serde(default = "defaults::podman_network")]
    pub podman_network: String,
    /// Subnet of `podman_network` when the keeper creates it.
    #[serde(default = "defaults::podman_subnet")]
    pub podman_subnet: Ipv4Subnet,
    /// Host tenants reach public ports on.
    #[serde(default = "defaults::public_host")]
    pub public_host: String,
    /// Public ports, `first-last`.
    #[serde(default = "defaults::port_range")]
    pub port_range: PortRange,
    /// Capabilities a manifest may add (in the environment: comma-separated).
    #[serde(default = "defaults::capabilities", deserialize_with = "comma_list")]
    pub allowed_capabilities: Vec<String>,
    /// The domain the gateway serves apps under (`berth-gateway`'s `apps_domain`); when set,
    /// HTTP ports are confirmed as `https://<service>-<lease>-<tag>.<apps_domain>` and the
    /// keeper pushes routes to the gateway. Empty: HTTP ports are `http://public_host:port`.
    #[serde(default)]
    pub apps_domain: String,
    /// The gateway's HTTPS port as clients see it (443 leaves it out of URLs).
    #[serde(default = "defaults::apps_https_port")]
    pub apps_https_port: u16,
    /// The gateway's admin socket the keeper pushes routes to.
    #[serde(default = "defaults::gateway_admin_socket")]
    pub gateway_admin_socket: PathBuf,
    /// The keeper's control socket, where the gateway asks it to wake a service scaled to
    /// zero (`keeper_socket` in the gateway's config); used with `apps_domain`.
    #[serde(default = "defaults::control_socket")]
    pub control_socket: PathBuf,
    /// The DNS server custom domains' proofs are looked up at, `host:port`; empty: the
    /// system's resolvers (`/etc/resolv.conf`).
    #[serde(default, deserialize_with = "optional")]
    pub dns_server: Option<SocketAddr>,
    /// How long a custom domain's proof (or its absence) is trusted before it is looked up
    /// again; a record that goes away takes the route within this time.
    #[serde(default = "defaults::domain_recheck_s", deserialize_with = "seconds")]
    pub domain_recheck_s: Duration,
    /// How often a quiet logs stream is pinged, so that no proxy closes it.
    #[serde(default = "defaults::logs_ping_s", deserialize_with = "seconds")]
    pub logs_ping_s: Duration,
    /// The longest a logs stream stays open (the client resumes with its cursor).
    #[serde(default = "defaults::logs_max_stream_s", deserialize_with = "seconds")]
    pub logs_max_stream_s: Duration,
    /// A shell session with nothing passing either way for this long ends.
    #[serde(default = "defaults::shell_idle_s", deserialize_with = "seconds")]
    pub shell_idle_s: Duration,
    /// Most log streams open at once (4 per lease at most; never more than half of
    /// `gateway_max_connections`, since each holds a connection).
    #[serde(default = "defaults::logs_max_streams")]
    pub logs_max_streams: u32,
    /// Origins whose web pages may call the tenant API (`/v1/leases/…`) from a browser: `*`
    /// (the default: calls carry their own signatures, never cookies), comma-separated origins
    /// (`https://console.example.org`), or empty for none.
    #[serde(default = "defaults::api_cors_origins")]
    pub api_cors_origins: String,
    /// The address the gateway reaches published HTTP ports on; with `apps_domain` set,
    /// podman publishes HTTP ports on this address only, so no app is reachable around the
    /// gateway (TCP ports stay on every address).
    #[serde(default = "defaults::route_upstream_host")]
    pub route_upstream_host: std::net::IpAddr,
    /// The provider's encryption keys, which open tenants' secrets: a file readable by the
    /// keeper alone with one `<version> <64 hex>` line per key version, or
    /// `credential:<name>` for a systemd credential. Unset: leases with secrets are rejected.
    #[serde(default, deserialize_with = "optional")]
    pub encryption_keys: Option<String>,
    /// The gateway's `session_key_file`: with it, a tenant signed in with Ethereum on the
    /// gateway's API host reads logs and events and opens shells without an access token.
    #[serde(default, deserialize_with = "optional")]
    pub session_key_file: Option<PathBuf>,
    /// podman engine: where tenants' `secret_files` are written for their containers to
    /// mount. Must be memory-backed (tmpfs), checked at start when `encryption_keys` is set.
    #[serde(default = "defaults::secret_files_dir")]
    pub secret_files_dir: PathBuf,
    /// Kubernetes with `apps_domain`: the namespace the gateway runs in. HTTP ports get no
    /// NodePort and admit only the gateway (this namespace and/or `kube_gateway_cidrs`); the
    /// gateway reaches them at `<service>.<namespace>.svc.<kube_cluster_domain>`.
    #[serde(default, deserialize_with = "optional")]
    pub kube_gateway_namespace: Option<String>,
    /// Kubernetes with `apps_domain`: addresses (CIDR) the gateway connects from when it runs
    /// outside the cluster.
    #[serde(default, deserialize_with = "comma_list")]
    pub kube_gateway_cidrs: Vec<String>,
    /// The cluster's DNS domain.
    #[serde(default = "defaults::kube_cluster_domain")]
    pub kube_cluster_domain: String,
    /// Address of the tenant API (also serves `/metrics`).
    #[serde(default = "defaults::gateway_addr")]
    pub gateway_addr: SocketAddr,
    /// Most open connections to the gateway; further ones are closed at once.
    #[serde(default = "defaults::gateway_max_connections")]
    pub gateway_max_connections: u64,
    /// How long a client may take to send a request's headers (also how long an idle
    /// connection is kept), ms.
    #[serde(
        default = "defaults::gateway_header_timeout_ms",
        deserialize_with = "millis"
    )]
    pub gateway_header_timeout_ms: Duration,
    /// How long one request may take, body included, ms.
    #[serde(
        default = "defaults::gateway_request_timeout_ms",
        deserialize_with = "millis"
    )]
    pub gateway_request_timeout_ms: Duration,
    /// Blocks behind the head a lease is read at before acting.
    #[serde(default)]
    pub confirmations: u64,
    /// Head polling interval, ms.
    #[serde(default = "defaults::poll_interval_ms", deserialize_with = "millis")]
    pub poll_interval_ms: Duration,
    /// Full resync interval, s.
    #[serde(default = "defaults::resync_interval_s", deserialize_with = "seconds")]
    pub resync_interval_s: Duration,
    /// How long a pending lease may wait for its manifest, s.
    #[serde(default = "defaults::manifest_timeout_s", deserialize_with = "seconds")]
    pub manifest_timeout_s: Duration,
    /// How long a new workload may take to answer, s.
    #[serde(default = "defaults::ready_timeout_s", deserialize_with = "seconds")]
    pub ready_timeout_s: Duration,
    /// Minimum runway of a new lease, s (the escrow's minimum applies when higher).
    #[serde(default, deserialize_with = "seconds")]
    pub min_runway_s: Duration,
    /// Cluster CPU offered to leases, millicores (0: no limit beyond the registry's).
    #[serde(default)]
    pub max_cpu_millis: u64,
    /// Cluster memory offered to leases, MiB (0: no limit beyond the registry's).
    #[serde(default)]
    pub max_memory_mib: u64,
    /// Timeout of one RPC request, ms.
    #[serde(default = "defaults::timeout_ms", deserialize_with = "millis")]
    pub rpc_timeout_ms: Duration,
    /// Timeout of one engine call, ms.
    #[serde(default = "defaults::timeout_ms", deserialize_with = "millis")]
    pub engine_timeout_ms: Duration,
    /// Timeout of an image pull, s.
    #[serde(default = "defaults::pull_timeout_s", deserialize_with = "seconds")]
    pub pull_timeout_s: Duration,
    /// Timeout of a manifest download, s.
    #[serde(default = "defaults::download_timeout_s", deserialize_with = "seconds")]
    pub download_timeout_s: Duration,
    /// How often every running container is sampled, ms.
    #[serde(default = "defaults::sample_interval_ms", deserialize_with = "millis")]
    pub sample_interval_ms: Duration,
    /// How often active leases are reported on chain, s.
    #[serde(default = "defaults::report_interval_s", deserialize_with = "seconds")]
    pub report_interval_s: Duration,
    /// Most usage reports in one transaction.
    #[serde(default = "defaults::report_batch")]
    pub report_batch: u64,
    /// How often matured charges are claimed, s.
    #[serde(default = "defaults::claim_interval_s", deserialize_with = "seconds")]
    pub claim_interval_s: Duration,
    /// `text` or `json` logs.
    #[serde(default)]
    pub log_format: LogFormat,
}

/// An IPv4 subnet written `a.b.c.d/n`, n from 8 to 30 (room for at least two pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Ipv4Subnet {
    /// The network address as written.
    pub addr: std::net::Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl FromStr for Ipv4Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an IPv4 subnet like 10.90.0.0/16 (prefix 8 to 30)");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr = addr.parse().map_err(|_| bad())?;
        let prefix = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for Ipv4Subnet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The container engine the keeper drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// podman on one host, through its REST socket.
    #[default]
    Podman,
    /// A Kubernetes cluster, through the kubeconfig or in-cluster service account.
    Kubernetes,
}

/// A range of public ports, written `first-last`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange(RangeInclusive<u16>);

impl PortRange {
    /// The ports.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.0.clone()
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not first-last (1-65535)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if a == 0 || a > b {
            return Err(bad());
        }
        Ok(Self(a..=b))
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> Self {
        format!("{}-{}", p.0.start(), p.0.end())
    }
}

mod defaults {
    use std::{path::PathBuf, time::Duration};

    pub fn podman_socket() -> PathBuf {
        "/run/berth/podman.sock".into()
    }
    pub fn podman_network() -> String {
        "berth".into()
    }
    pub fn podman_subnet() -> super::Ipv4Subnet {
        super::Ipv4Subnet {
            addr: std::net::Ipv4Addr::new(10, 90, 0, 0),
            prefix: 16,
        }
    }
    pub fn public_host() -> String {
        "127.0.0.1".into()
    }
    pub fn port_range() -> super::PortRange {
        super::PortRange(30000..=30999)
    }
    pub fn capabilities() -> Vec<String> {
        super::SAFE_CAPABILITIES
            .iter()
            .map(|c| (*c).to_string())
            .collect()
    }
    pub fn apps_https_port() -> u16 {
        443
    }
    pub fn gateway_admin_socket() -> PathBuf {
        "/run/berth/gateway.sock".into()
    }
    pub fn domain_recheck_s() -> Duration {
        Duration::from_secs(300)
    }
    pub fn logs_ping_s() -> Duration {
        Duration::from_secs(15)
    }
    pub fn logs_max_stream_s() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn shell_idle_s() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn logs_max_streams() -> u32 {
        64
    }
    pub fn api_cors_origins() -> String {
        "*".into()
    }
    pub fn secret_files_dir() -> PathBuf {
        crate::engine::podman::DEFAULT_SECRET_FILES_DIR.into()
    }
    pub fn control_socket() -> PathBuf {
        "/run/berth/keeper.sock".into()
    }
    pub fn kube_cluster_domain() -> String {
        "cluster.local".into()
    }
    pub fn route_upstream_host() -> std::net::IpAddr {
        std::net::Ipv4Addr::LOCALHOST.into()
    }
    pub fn gateway_addr() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 8443))
    }
    pub fn gateway_max_connections() -> u64 {
        256
    }
    pub fn gateway_header_timeout_ms() -> Duration {
        Duration::from_millis(10_000)
    }
    pub fn gateway_request_timeout_ms() -> Duration {
        Duration::from_millis(30_000)
    }
    pub fn poll_interval_ms() -> Duration {
        Duration::from_millis(500)
    }
    pub fn resync_interval_s() -> Duration {
        Duration::from_secs(30)
    }
    pub fn manifest_timeout_s() -> Duration {
        Duration::from_secs(300)
    }
    pub fn ready_timeout_s() -> Duration {
        Duration::from_secs(120)
    }
    pub fn timeout_ms() -> Duration {
        Duration::from_millis(10_000)
    }
    pub fn pull_timeout_s() -> Duration {
        Duration::from_secs(300)
    }
    pub fn download_timeout_s() -> Duration {
        Duration::from_secs(10)
    }
    pub fn sample_interval_ms() -> Duration {
        Duration::from_millis(10_000)
    }
    pub fn report_interval_s() -> Duration {
        Duration::from_secs(300)
    }
    pub fn report_batch() -> u64 {
        50
    }
    pub fn claim_interval_s() -> Duration {
        Duration::from_secs(3600)
    }
}

impl ServiceConfig for Config {
    const FALLBACKS: &'static [(&'static str, &'static str)] = &[("database_url", "DATABASE_URL")];

    fn validate(&self) -> Result<(), ConfigError> {
        require_scheme("rpc_url", &self.rpc_url, &["http", "https"])?;
        if self.provider_id == 0 {
            return Err(ConfigError::invalid(
                "provider_id",
                "provider ids start at 1",
            ));
        }
        if self.database_url.is_empty() {
            return Err(ConfigError::invalid(
                "database_url",
                "required (or set DATABASE_URL)",
            ));
        }
        if self.operator_key.is_empty() == self.keystore.is_none() {
            return Err(ConfigError::invalid(
                "operator_key",
                "set exactly one of operator_key and keystore",
            ));
        }
        if self.keystore.is_some() && self.keystore_password_file.is_none() {
            return Err(ConfigError::invalid(
                "keystore_password_file",
                "required with keystore",
            ));
        }
        for (field, v) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("resync_interval_s", self.resync_interval_s),
            ("ready_timeout_s", self.ready_timeout_s),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("engine_timeout_ms", self.engine_timeout_ms),
            ("download_timeout_s", self.download_timeout_s),
            ("sample_interval_ms", self.sample_interval_ms),
            ("report_interval_s", self.report_interval_s),
            ("claim_interval_s", self.claim_interval_s),
            ("gateway_header_timeout_ms", self.gateway_header_timeout_ms),
            (
                "gateway_request_timeout_ms",
                self.gateway_request_timeout_ms,
            ),
            ("logs_ping_s", self.logs_ping_s),
            ("logs_max_stream_s", self.logs_max_stream_s),
            ("shell_idle_s", self.shell_idle_s),
        ] {
            if v.is_zero() {
                return Err(ConfigError::invalid(field, "must be above zero"));
            }
        }
        crate::cors::Origins::parse(&self.api_cors_origins)
            .map_err(|e| ConfigError::invalid("api_cors_origins", e))?;
        if self.logs_max_streams == 0 {
            return Err(ConfigError::invalid(
                "logs_max_streams",
                "must be above zero",
            ));
        }
        if self.gateway_max_connections == 0 {
            return Err(ConfigError::invalid(
                "gateway_max_connections",
                "must be above zero",
            ));
        }
        if !self.apps_domain.is_empty()
            && berth_protocol::routing::normalize_host(&self.apps_domain).as_deref()
                != Some(self.apps_domain.as_str())
        {
            return Err(ConfigError::invalid(
                "apps_domain",
                format!("`{}` is not a lower-case hostname", self.apps_domain),
            ));
        }
        self.validate_kube_gateway()?;
        if !(1..=200).contains(&self.report_batch) {
            return Err(ConfigError::invalid("report_batch", "must be 1 to 200"));
        }
        for cap in &self.allowed_capabilities {
            if cap.is_empty() || !cap.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                return Err(ConfigError::invalid(
                    "allowed_capabilities",
                    format!("`{cap}` is not a capability name"),
                ));
            }
        }
        Ok(())
    }

    fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

impl Config {
    fn validate_kube_gateway(&self) -> Result<(), ConfigError> {
        for cidr in &self.kube_gateway_cidrs {
            let ok = cidr.split_once('/').is_some_and(|(ip, bits)| {
                let max = match ip.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(_)) => 32,
                    Ok(std::net::IpAddr::V6(_)) => 128,
                    Err(_) => return false,
                };
                bits.parse::<u8>().is_ok_and(|b| b <= max)
            });
            if !ok {
                return Err(ConfigError::invalid(
                    "kube_gateway_cidrs",
                    format!("`{cidr}` is not an address/prefix"),
                ));
            }
        }
        if self.engine == EngineKind::Kubernetes
            && !self.apps_domain.is_empty()
            && self.kube_gateway_peers().is_none()
        {
            return Err(ConfigError::invalid(
                "kube_gateway_namespace",
                "with apps_domain on Kubernetes, set it or kube_gateway_cidrs (who may reach HTTP ports)",
            ));
        }
        Ok(())
    }

    /// Who may reach HTTP ports on Kubernetes, when set.
    pub fn kube_gateway_peers(&self) -> Option<crate::render::GatewayPeers> {
        (self.kube_gateway_namespace.is_some() || !self.kube_gateway_cidrs.is_empty()).then(|| {
            crate::render::GatewayPeers {
                namespace: self.kube_gateway_namespace.clone(),
                cidrs: self.kube_gateway_cidrs.clone(),
            }
        })
    }

    /// The public port range.
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.port_range.range()
    }

    /// The origins allowed to call the tenant API from a browser (validated by `load`).
    pub fn cors_origins(&self) -> crate::cors::Origins {
        crate::cors::Origins::parse(&self.api_cors_origins).unwrap_or(crate::cors::Origins::None)
    }

    /// The manifest policy.
    pub fn policy(&self) -> Policy {
        Policy {
            host_ports: self.ports(),
            allowed_capabilities: self
                .allowed_capabilities
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>(),
            single_host: self.engine == EngineKind::Podman,
        }
    }
}

#[cfg(test)]
mod tests;
