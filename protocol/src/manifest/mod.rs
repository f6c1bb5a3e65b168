//! The Berth manifest: a small, versioned YAML document that says what a lease runs.
//!
//! ```yaml
//! version: 1
//! services:
//!   web:
//!     image: localhost/berth-hello:latest
//!     ports: [{ port: 8080, expose: http }]
//!     resources: { cpu: 500m, memory: 256Mi }
//! ```
//!
//! The full format is documented in `docs/manifest.md`. Parsing is strict (unknown fields are
//! errors) and every error names the field it is about.

pub mod digest;
pub mod policy;
pub mod quantity;
pub mod scan;
pub mod sealed;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use digest::{MAX_MANIFEST_BYTES, ManifestError, verify};
pub use sealed::Secrets;

/// The only manifest version this keeper understands.
pub const VERSION: u32 = 1;
/// Most services in one manifest.
pub const MAX_SERVICES: usize = 16;
/// Most replicas of one service.
pub const MAX_REPLICAS: u32 = 16;
/// The shortest idle timeout a service may ask for, in seconds.
pub const MIN_IDLE_TIMEOUT_S: u64 = 5;
/// Most custom domains of one service.
pub const MAX_DOMAINS: usize = 4;
/// Most addresses a private service may allow besides its tenant.
pub const MAX_ALLOWED: usize = 32;
/// The longest idle timeout, in seconds (a week).
pub const MAX_IDLE_TIMEOUT_S: u64 = 7 * 24 * 3600;
/// The volume the keeper mounts `secret_files` from; no manifest volume may take its name.
pub const RESERVED_VOLUME: &str = "berth-secrets";

/// A parsed and validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, must be [`VERSION`].
    pub version: u32,
    /// Services by name (a DNS label).
    pub services: BTreeMap<String, Service>,
    /// Secrets sealed to the provider's key ([`crate::secrets`]), used by `secret_env`.
    #[serde(default)]
    pub secrets: Option<Secrets>,
}

/// One container image run as `replicas` identical containers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Image reference.
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's default arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables set from the manifest's secrets: variable → secret name.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// Files holding the manifest's secrets: absolute path in the container → secret name.
    /// Read-only, readable by any user of the container, never written to the provider's
    /// disk (a Kubernetes Secret volume; on podman a file in the keeper's memory-backed
    /// directory).
    #[serde(default)]
    pub secret_files: BTreeMap<String, String>,
    /// The secret holding `username:password` for the image's registry.
    #[serde(default)]
    pub pull_secret: Option<String>,
    /// Ports the container listens on.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Resources of one replica.
    pub resources: Resources,
    /// Identical containers to run.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Requests a privileged container (always refused by policy).
    #[serde(default)]
    pub privileged: bool,
    /// Requests the host's network namespace (always refused by policy).
    #[serde(default)]
    pub host_network: bool,
    /// Linux capabilities to add (only the provider's safe set is allowed).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Scratch volumes; `host_path` is refused by policy.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Scale to zero after this long without a request or an open connection through the
    /// provider's gateway (`30s`, `5m`, `1h`); the next request wakes it. Only for services
    /// with an HTTP port.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// Only signed-in wallets reach its HTTP ports (Sign-In with Ethereum at the provider's
    /// gateway): the lease's tenant and the addresses in `allow`.
    #[serde(default)]
    pub private: bool,
    /// Addresses besides the tenant's that may sign in to a private service.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The tenant may open a shell in it (`berth shell`); off by default.
    #[serde(default)]
    pub shell: bool,
    /// The tenant's own hostnames for the service's first HTTP port, routed once DNS proves
    /// the tenant holds them (a TXT record at `_berth.<domain>`).
    #[serde(default)]
    pub domains: Vec<String>,
}

fn one() -> u32 {
    1
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The port the container listens on.
    pub port: u16,
    /// How the port is reachable from outside the lease.
    #[serde(default)]
    pub expose: Expose,
    /// A specific public port; must lie in the provider's range. The keeper picks one when absent.
    #[serde(default)]
    pub host_port: Option<u16>,
}

/// How a port is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expose {
    /// Public, reported as an `http://` URL; readiness is an HTTP answer.
    Http,
    /// Public, reported as `host:port`; readiness is an accepted TCP connection.
    Tcp,
    /// Reachable only inside the lease.
    #[default]
    None,
}

/// Resources of one replica, in Kubernetes' quantity notation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU, e.g. `500m` or `1.5`.
    pub cpu: String,
    /// Memory, e.g. `256Mi`.
    pub memory: String,
    /// Ephemeral storage, e.g. `1Gi`.
    #[serde(default)]
    pub storage: Option<String>,
}

/// A volume mounted into a service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name (a DNS label).
    pub name: String,
    /// Where it is mounted in the container.
    pub mount: String,
    /// A directory of the host (refused by policy).
    #[serde(default)]
    pub host_path: Option<String>,
    /// Kept across container restarts, updates and suspension until the lease ends (a
    /// PersistentVolumeClaim, a named podman volume); scratch (emptyDir) otherwise.
    #[serde(default)]
    pub persistent: bool,
    /// The persistent volume's size (`10Gi`), counted in the lease's storage reservation.
    #[serde(default)]
    pub size: Option<String>,
}

/// The largest persistent volume: 16 TiB.
pub const MAX_VOLUME_BYTES: u64 = 16 << 40;

impl Volume {
    /// The persistent volume's size in bytes, when it has a valid one.
    pub fn size_bytes(&self) -> Option<u64> {
        self.size.as_deref().and_then(|s| quantity::bytes(s).ok())
    }

    fn validate_persistence(&self, at: &str, replicas: u32) -> Result<(), SchemaError> {
        match (&self.size, self.persistent) {
            (Some(_), false) => Err(field(
                format!("{at}.size"),
                "only a persistent volume has a size (scratch volumes count in resources.storage)",
            )),
            (None, true) => Err(field(
                format!("{at}.size"),
                "a persistent volume needs a size, e.g. `1Gi`",
            )),
            (None, false) => Ok(()),
            (Some(size), true) => {
                let bytes = quantity::bytes(size).map_err(|e| field(format!("{at}.size"), e))?;
                if bytes == 0 || bytes > MAX_VOLUME_BYTES {
                    return Err(field(
                        format!("{at}.size"),
                        "must be more than 0 and at most 16Ti",
                    ));
                }
                if self.host_path.is_some() {
                    return Err(field(
                        format!("{at}.host_path"),
                        "a persistent volume is the provider's, not a host directory",
                    ));
                }
                if replicas != 1 {
                    return Err(field(
                        format!("{at}.persistent"),
                        "a service with a persistent volume has one replica (the volume is mounted by one pod)",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// What the manifest asks for in total, in the units of a lease reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// CPU millicores over every replica.
    pub cpu_millis: u64,
    /// Memory MiB over every replica (each replica rounded up).
    pub memory_mib: u64,
    /// Storage GiB over every replica (each replica rounded up).
    pub storage_gib: u64,
}

/// Why manifest text is not a valid manifest; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Not UTF-8, not YAML, or not the manifest's shape.
    #[error("manifest does not parse: {0}")]
    Syntax(String),
    /// A field has a bad value.
    #[error("manifest field `{field}`: {reason}")]
    Field {
        /// Path of the field, e.g. `services.web.ports[0].port`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> SchemaError {
    SchemaError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Manifest {
    /// Parses and validates manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, SchemaError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(SchemaError::Syntax(format!(
                "{} bytes, the limit is {MAX_MANIFEST_BYTES}",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| SchemaError::Syntax(format!("not UTF-8: {e}")))?;
        // Bounded before serde sees it: no anchors or aliases, capped depth and size.
        scan::scan(text).map_err(|e| SchemaError::Syntax(e.to_string()))?;
        let manifest: Self =
            serde_yaml::from_str(text).map_err(|e| SchemaError::Syntax(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every value the types alone do not constrain.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.version != VERSION {
            return Err(field(
                "version",
                format!(
                    "version {} is not supported (this keeper reads {VERSION})",
                    self.version
                ),
            ));
        }
        if self.services.is_empty() {
            return Err(field("services", "at least one service is required"));
        }
        if self.services.len() > MAX_SERVICES {
            return Err(field(
                "services",
                format!("at most {MAX_SERVICES} services"),
            ));
        }
        for (name, service) in &self.services {
            let at = format!("services.{}", name.escape_debug());
            if !is_dns_label(name, 20) {
                return Err(field(
                    &at,
                    "a service name is 1-20 characters of a-z, 0-9 and '-', starting with a letter",
                ));
            }
            service.validate(&at)?;
        }
        self.validate_secrets()
    }

    /// Resources over every service and replica.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.services.values() {
            let r = u64::from(s.replicas);
            let (cpu, mem, sto) = s.per_replica();
            t.cpu_millis += u64::from(cpu) * r;
            t.memory_mib += mem * r;
            t.storage_gib += sto * r + s.persistent_gib();
        }
        t
    }
}

impl Service {
    fn validate(&self, at: &str) -> Result<(), SchemaError> {
        self.check_strings(at)?;
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(field(
                format!("{at}.image"),
                "an image reference without spaces is required",
            ));
        }
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return Err(field(
                format!("{at}.replicas"),
                format!("must be 1 to {MAX_REPLICAS}"),
            ));
        }
        for key in self.env.keys() {
            if !is_env_name(key) {
                return Err(field(
                    format!("{at}.env.{}", key.escape_debug()),
                    "not a valid variable name",
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.port == 0 {
                return Err(field(format!("{at}.ports[{i}].port"), "must be 1 to 65535"));
            }
            if !seen.insert(p.port) {
                return Err(field(
                    format!("{at}.ports[{i}].port"),
                    format!("port {} is listed twice", p.port),
                ));
            }
            if p.host_port.is_some() && p.expose == Expose::None {
                return Err(field(
                    format!("{at}.ports[{i}].host_port"),
                    "only exposed ports have a public port",
                ));
            }
        }
        quantity::cpu_millis(&self.resources.cpu)
            .map_err(|e| field(format!("{at}.resources.cpu"), e))?;
        quantity::bytes(&self.resources.memory)
            .map_err(|e| field(format!("{at}.resources.memory"), e))?;
        if let Some(s) = &self.resources.storage {
            quantity::bytes(s).map_err(|e| field(format!("{at}.resources.storage"), e))?;
        }
        if let Some(t) = &self.idle_timeout {
            let at = format!("{at}.idle_timeout");
            let s = quantity::seconds(t).map_err(|e| field(&at, e))?;
            if !(MIN_IDLE_TIMEOUT_S..=MAX_IDLE_TIMEOUT_S).contains(&s) {
                return Err(field(
                    &at,
                    format!(
                        "must be {MIN_IDLE_TIMEOUT_S}s to {}h",
                        MAX_IDLE_TIMEOUT_S / 3600
                    ),
                ));
            }
            if !self.ports.iter().any(|p| p.expose == Expose::Http) {
                return Err(field(
                    &at,
                    "only a service with an `expose: http` port can scale to zero (the gateway wakes it)",
                ));
            }
        }
        self.validate_gateway(at)?;
        let mut names = std::collections::BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if v.name == RESERVED_VOLUME {
                return Err(field(
                    format!("{at}.volumes[{i}].name"),
                    format!("`{RESERVED_VOLUME}` is the name of the secret files' volume"),
                ));
            }
            if !is_dns_label(&v.name, 40) || !names.insert(&v.name) {
                return Err(field(
                    format!("{at}.volumes[{i}].name"),
                    "a unique DNS label is required",
                ));
            }
            if !v.mount.starts_with('/') || v.mount.split('/').any(|part| part == "..") {
                return Err(field(
                    format!("{at}.volumes[{i}].mount"),
                    "an absolute path without `..` is required",
                ));
            }
            v.validate_persistence(&format!("{at}.volumes[{i}]"), self.replicas)?;
        }
        Ok(())
    }

    fn validate_gateway(&self, at: &str) -> Result<(), SchemaError> {
        if !self.allow.is_empty() && !self.private {
            return Err(field(
                format!("{at}.allow"),
                "only a private service has an allow list (set `private: true`)",
            ));
        }
        if self.allow.len() > MAX_ALLOWED {
            return Err(field(
                format!("{at}.allow"),
                format!("at most {MAX_ALLOWED} addresses"),
            ));
        }
        for (i, a) in self.allow.iter().enumerate() {
            let ok = a.len() == 42
                && a.starts_with("0x")
                && a[2..].bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(field(
                    format!("{at}.allow[{i}]"),
                    "not an address (0x and 40 hex digits)",
                ));
            }
        }
        if self.domains.len() > MAX_DOMAINS {
            return Err(field(
                format!("{at}.domains"),
                format!("at most {MAX_DOMAINS} domains"),
            ));
        }
        for (i, d) in self.domains.iter().enumerate() {
            let ok = crate::routing::normalize_host(d).as_deref() == Some(d.as_str())
                && d.contains('.')
                && !d.contains(':');
            if !ok {
                return Err(field(
                    format!("{at}.domains[{i}]"),
                    "a lower-case hostname with at least two labels (e.g. shop.example.org)",
                ));
            }
        }
        if !self.domains.is_empty() && !self.ports.iter().any(|p| p.expose == Expose::Http) {
            return Err(field(
                format!("{at}.domains"),
                "only a service with an `expose: http` port can have domains",
            ));
        }
        if self.private && !self.ports.iter().any(|p| p.expose == Expose::Http) {
            return Err(field(
                format!("{at}.private"),
                "only a service with an `expose: http` port can be private (the gateway signs people in)",
            ));
        }
        Ok(())
    }

    /// The addresses besides the tenant's allowed into a private service (validated by
    /// `parse`).
    pub fn allowed(&self) -> Vec<alloy_primitives::Address> {
        self.allow.iter().filter_map(|a| a.parse().ok()).collect()
    }

    /// The idle timeout in seconds, if the service scales to zero (validated by `parse`).
    pub fn idle_timeout_s(&self) -> Option<u64> {
        self.idle_timeout
            .as_deref()
            .and_then(|t| quantity::seconds(t).ok())
    }

    /// No string reaches a container with a NUL byte: the kernel cannot pass one in an
    /// argument or an environment variable, so such a container could never start.
    fn check_strings(&self, at: &str) -> Result<(), SchemaError> {
        let lists = [
            ("command", &self.command),
            ("args", &self.args),
            ("capabilities", &self.capabilities),
        ];
        let mut strings: Vec<(String, &str)> = vec![(format!("{at}.image"), self.image.as_str())];
        for (name, list) in lists {
            strings.extend(
                list.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{at}.{name}[{i}]"), v.as_str())),
            );
        }
        for (k, v) in &self.env {
            let path = format!("{at}.env.{}", k.escape_debug());
            strings.push((path.clone(), k.as_str()));
            strings.push((path, v.as_str()));
        }
        for (i, v) in self.volumes.iter().enumerate() {
            strings.push((format!("{at}.volumes[{i}].mount"), v.mount.as_str()));
        }
        for (path, value) in strings {
            if value.contains('\0') {
                return Err(field(path, "contains a NUL byte"));
            }
        }
        Ok(())
    }

    /// GiB of the service's persistent volumes (each rounded up; one replica holds them);
    /// call after validation.
    pub fn persistent_gib(&self) -> u64 {
        self.volumes
            .iter()
            .filter(|v| v.persistent)
            .filter_map(|v| v.size_bytes())
            .map(quantity::gib_ceil)
            .sum()
    }

    /// (CPU millicores, memory MiB, storage GiB) of one replica; call after validation.
    pub fn per_replica(&self) -> (u32, u64, u64) {
        let cpu = quantity::cpu_millis(&self.resources.cpu).unwrap_or(0);
        let mem = quantity::bytes(&self.resources.memory)
            .map(quantity::mib_ceil)
            .unwrap_or(0);
        let sto = self
            .resources
            .storage
            .as_deref()
            .and_then(|s| quantity::bytes(s).ok())
            .map(quantity::gib_ceil)
            .unwrap_or(0);
        (cpu, mem, sto)
    }
}

/// A letter or `_`, then letters, digits and `_`.
fn is_env_name(key: &str) -> bool {
    key.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Lowercase letters, digits and '-', starting with a letter, not ending with '-'.
fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests;
