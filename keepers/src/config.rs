//! Keeper configuration: a TOML file, then `BERTH_<FIELD>` environment overrides (the field
//! name in upper case), loaded by the services' one loader ([`berth_runtime::config`]) and
//! validated at start with errors that name the bad field and where it came from.

use std::{
    collections::BTreeSet, net::SocketAddr, ops::RangeInclusive, path::PathBuf, str::FromStr,
    time::Duration,
};

use berth_runtime::{
    LogFormat,
    config::{ConfigError, ServiceConfig, comma_list},
};
use serde::{Deserialize, Serialize};

use berth_protocol::manifest::policy::{Policy, SAFE_CAPABILITIES};

/// Everything the provider keeper needs.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// JSON-RPC endpoint.
    pub rpc_url: String,
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
    pub podman_subnet: String,
    /// Host tenants reach public ports on.
    #[serde(default = "defaults::public_host")]
    pub public_host: String,
    /// Public ports, `first-last`.
    #[serde(default = "defaults::port_range")]
    pub port_range: PortRange,
    /// Capabilities a manifest may add (in the environment: comma-separated).
    #[serde(default = "defaults::capabilities", deserialize_with = "comma_list")]
    pub allowed_capabilities: Vec<String>,
    /// Address of the tenant API (also serves `/metrics`).
    #[serde(default = "defaults::gateway_addr")]
    pub gateway_addr: SocketAddr,
    /// Most open connections to the gateway; further ones are closed at once.
    #[serde(default = "defaults::gateway_max_connections")]
    pub gateway_max_connections: u64,
    /// How long a client may take to send a request's headers (also how long an idle
    /// connection is kept), ms.
    #[serde(default = "defaults::gateway_header_timeout_ms")]
    pub gateway_header_timeout_ms: u64,
    /// How long one request may take, body included, ms.
    #[serde(default = "defaults::gateway_request_timeout_ms")]
    pub gateway_request_timeout_ms: u64,
    /// Blocks behind the head a lease is read at before acting.
    #[serde(default)]
    pub confirmations: u64,
    /// Head polling interval, ms.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Full resync interval, s.
    #[serde(default = "defaults::resync_interval_s")]
    pub resync_interval_s: u64,
    /// How long a pending lease may wait for its manifest, s.
    #[serde(default = "defaults::manifest_timeout_s")]
    pub manifest_timeout_s: u64,
    /// How long a new workload may take to answer, s.
    #[serde(default = "defaults::ready_timeout_s")]
    pub ready_timeout_s: u64,
    /// Minimum runway of a new lease, s (the escrow's minimum applies when higher).
    #[serde(default)]
    pub min_runway_s: u64,
    /// Cluster CPU offered to leases, millicores (0: no limit beyond the registry's).
    #[serde(default)]
    pub max_cpu_millis: u64,
    /// Cluster memory offered to leases, MiB (0: no limit beyond the registry's).
    #[serde(default)]
    pub max_memory_mib: u64,
    /// Timeout of one RPC request, ms.
    #[serde(default = "defaults::timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// Timeout of one engine call, ms.
    #[serde(default = "defaults::timeout_ms")]
    pub engine_timeout_ms: u64,
    /// Timeout of an image pull, s.
    #[serde(default = "defaults::pull_timeout_s")]
    pub pull_timeout_s: u64,
    /// Timeout of a manifest download, s.
    #[serde(default = "defaults::download_timeout_s")]
    pub download_timeout_s: u64,
    /// How often every running container is sampled, ms.
    #[serde(default = "defaults::sample_interval_ms")]
    pub sample_interval_ms: u64,
    /// How often active leases are reported on chain, s.
    #[serde(default = "defaults::report_interval_s")]
    pub report_interval_s: u64,
    /// Most usage reports in one transaction.
    #[serde(default = "defaults::report_batch")]
    pub report_batch: u64,
    /// How often matured charges are claimed, s.
    #[serde(default = "defaults::claim_interval_s")]
    pub claim_interval_s: u64,
    /// `text` or `json` logs.
    #[serde(default)]
    pub log_format: LogFormat,
}

/// Whether `s` is `a.b.c.d/n` with n at most 30.
fn looks_like_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 30)
    })
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
    use std::path::PathBuf;

    pub fn podman_socket() -> PathBuf {
        "/run/berth/podman.sock".into()
    }
    pub fn podman_network() -> String {
        "berth".into()
    }
    pub fn podman_subnet() -> String {
        "10.90.0.0/16".into()
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
    pub fn gateway_addr() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 8443))
    }
    pub fn gateway_max_connections() -> u64 {
        256
    }
    pub fn gateway_header_timeout_ms() -> u64 {
        10_000
    }
    pub fn gateway_request_timeout_ms() -> u64 {
        30_000
    }
    pub fn poll_interval_ms() -> u64 {
        500
    }
    pub fn resync_interval_s() -> u64 {
        30
    }
    pub fn manifest_timeout_s() -> u64 {
        300
    }
    pub fn ready_timeout_s() -> u64 {
        120
    }
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn pull_timeout_s() -> u64 {
        300
    }
    pub fn download_timeout_s() -> u64 {
        10
    }
    pub fn sample_interval_ms() -> u64 {
        10_000
    }
    pub fn report_interval_s() -> u64 {
        300
    }
    pub fn report_batch() -> u64 {
        50
    }
    pub fn claim_interval_s() -> u64 {
        3600
    }
}

impl ServiceConfig for Config {
    const FALLBACKS: &'static [(&'static str, &'static str)] = &[("database_url", "DATABASE_URL")];

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.rpc_url.starts_with("http://") || self.rpc_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "rpc_url",
                "an http(s) URL is required",
            ));
        }
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
            ("gateway_max_connections", self.gateway_max_connections),
            ("gateway_header_timeout_ms", self.gateway_header_timeout_ms),
            (
                "gateway_request_timeout_ms",
                self.gateway_request_timeout_ms,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(field, "must be above zero"));
            }
        }
        if !self.podman_network.is_empty() && !looks_like_cidr(&self.podman_subnet) {
            return Err(ConfigError::invalid(
                "podman_subnet",
                format!(
                    "`{}` is not an IPv4 subnet like 10.90.0.0/16",
                    self.podman_subnet
                ),
            ));
        }
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
    /// The public port range.
    pub fn ports(&self) -> RangeInclusive<u16> {
        self.port_range.range()
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

    /// `ms` as a duration.
    pub fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const MINIMAL: &str = "rpc_url = \"http://127.0.0.1:8545\"\ndeployment = \"deployments/31337.json\"\nprovider_id = 1\ndatabase_url = \"postgres://x\"\noperator_key = \"0x01\"\n";

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "berth-keeper-cfg-{}-{}",
            std::process::id(),
            text.len() + env.len()
        ));
        std::fs::write(&dir, text).expect("write");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let out = Config::load(Some(&dir), |k| env.get(k).cloned());
        let _ = std::fs::remove_file(&dir);
        out
    }

    #[test]
    fn defaults_and_env_overrides() {
        let cfg = load(
            MINIMAL,
            &[
                ("BERTH_CONFIRMATIONS", "2"),
                ("BERTH_PUBLIC_HOST", "10.0.0.1"),
                ("BERTH_ALLOWED_CAPABILITIES", "CHOWN, KILL"),
            ],
        )
        .expect("valid");
        assert_eq!(cfg.engine, EngineKind::Podman);
        assert_eq!(cfg.confirmations, 2);
        assert_eq!(cfg.public_host, "10.0.0.1");
        assert_eq!(cfg.allowed_capabilities, vec!["CHOWN", "KILL"]);
        assert_eq!(cfg.ports(), 30000..=30999);
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keeper.example.toml");
        let env = |k: &str| (k == "BERTH_OPERATOR_KEY").then(|| "0x01".to_string());
        let cfg = Config::load(Some(&path), env).expect("keeper.example.toml loads");
        assert_eq!(cfg.confirmations, 3);
        assert_eq!(cfg.ports(), 30000..=30999);
    }

    #[test]
    fn errors_name_the_field() {
        let e = load(MINIMAL, &[("BERTH_PORT_RANGE", "9-1")])
            .expect_err("bad range")
            .to_string();
        assert!(e.contains("BERTH_PORT_RANGE") && e.contains("`9-1`"), "{e}");
        let e = load(MINIMAL, &[("BERTH_ENGINE", "docker")])
            .expect_err("bad engine")
            .to_string();
        assert!(e.contains("BERTH_ENGINE") && e.contains("docker"), "{e}");
        let e = load(MINIMAL, &[("BERTH_POLL_INTERVAL_MS", "soon")])
            .expect_err("bad number")
            .to_string();
        assert!(e.contains("BERTH_POLL_INTERVAL_MS"), "{e}");
        let e = load(&format!("{MINIMAL}colour = 1\n"), &[])
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = load(MINIMAL, &[("BERTH_PODMAN_SUBNET", "10.90.0.0")])
            .expect_err("no prefix length")
            .to_string();
        assert!(e.contains("`podman_subnet` (BERTH_PODMAN_SUBNET)"), "{e}");
        let e = load(MINIMAL, &[("BERTH_LOG_FORMAT", "yaml")])
            .expect_err("bad log format")
            .to_string();
        assert!(e.contains("BERTH_LOG_FORMAT") && e.contains("yaml"), "{e}");
        let e = load(&format!("{MINIMAL}keystore = \"k.json\"\n"), &[])
            .expect_err("two keys")
            .to_string();
        assert!(e.contains("`operator_key`"), "{e}");
    }
}
