//! Where a lease's web services are reached: the hostname the provider's gateway serves each
//! public HTTP port of a lease under, and the route table the keeper hands the gateway.
//!
//! A hostname is `<service>-<lease>-<tag>.<apps domain>`, where `tag` is the first 8 hex
//! digits of `keccak256(abi.encodePacked(uint64 chainId, address escrow))`: the same lease id
//! on another chain or another escrow gets another name, and tenant and provider compute it
//! alike. A service with several HTTP ports names the others `<service>-<port>-<lease>-<tag>`
//! (its first HTTP port keeps the short name).

use alloy_primitives::{Address, U256, keccak256};
use serde::{Deserialize, Serialize};

use crate::manifest::{Expose, Manifest};

/// The longest DNS label.
pub const MAX_LABEL: usize = 63;
/// The longest hostname.
pub const MAX_HOSTNAME: usize = 253;

/// The 8 hex digits that tell deployments apart in hostnames.
pub fn deployment_tag(chain_id: u64, escrow: Address) -> String {
    let mut packed = Vec::with_capacity(28);
    packed.extend_from_slice(&chain_id.to_be_bytes());
    packed.extend_from_slice(escrow.as_slice());
    let hash = keccak256(&packed);
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hostname of a lease's service port, or `None` when the first label would exceed 63
/// characters (a lease id of more than ~30 digits).
pub fn app_hostname(
    apps_domain: &str,
    tag: &str,
    lease: U256,
    service: &str,
    port: Option<u16>,
) -> Option<String> {
    let label = match port {
        None => format!("{service}-{lease}-{tag}"),
        Some(p) => format!("{service}-{p}-{lease}-{tag}"),
    };
    let host = format!("{label}.{}", apps_domain.trim_end_matches('.'));
    (label.len() <= MAX_LABEL && host.len() <= MAX_HOSTNAME).then_some(host)
}

/// A public HTTP port of a lease and the hostname it is served under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName {
    /// The manifest service.
    pub service: String,
    /// The container port.
    pub port: u16,
    /// The hostname.
    pub host: String,
}

/// Every public HTTP port of `manifest` with its hostname.
pub fn app_hostnames(
    manifest: &Manifest,
    apps_domain: &str,
    tag: &str,
    lease: U256,
) -> Vec<AppName> {
    let mut out = Vec::new();
    for (name, service) in &manifest.services {
        let http = service.ports.iter().filter(|p| p.expose == Expose::Http);
        for (i, p) in http.enumerate() {
            let port = (i > 0).then_some(p.port);
            if let Some(host) = app_hostname(apps_domain, tag, lease, name, port) {
                out.push(AppName {
                    service: name.clone(),
                    port: p.port,
                    host,
                });
            }
        }
    }
    out
}

/// Lower-cases a request's host (from `Host` or `:authority`), drops a port and a trailing
/// dot, and checks it is a hostname: labels of 1-63 letters, digits and '-', at most 253
/// characters. `None` for anything else (an IP literal included).
pub fn normalize_host(raw: &str) -> Option<String> {
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return None,
        None => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOSTNAME {
        return None;
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    ok.then(|| host.to_ascii_lowercase())
}

/// Admin paths of the gateway (on its local socket, for the keeper).
pub mod admin {
    /// `PUT` replaces the whole table ([`super::RouteTable`]); `GET` returns it.
    pub const ROUTES: &str = "/v1/routes";
    /// `GET`: bytes through the gateway per routed lease ([`super::GatewayUsage`]).
    pub const USAGE: &str = "/v1/usage";
    /// `GET`: open requests and connections per app and how long each has been idle
    /// ([`super::GatewayActivity`]).
    pub const ACTIVITY: &str = "/v1/activity";
    /// `POST` on the keeper's control socket: start a service scaled to zero
    /// ([`super::WakeRequest`]); answers once it has started.
    pub const WAKE: &str = "/v1/wake";
    /// `POST` on the keeper's control socket: check a contract wallet's signature on chain
    /// ([`super::Erc1271Request`] → [`super::Erc1271Answer`]).
    pub const ERC1271: &str = "/v1/erc1271";
}

/// What the gateway sees of one app (a lease's service): requests and upgraded connections
/// (WebSocket, a streamed response) open now, and the time since the last one ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppActivity {
    /// The lease.
    #[serde(with = "crate::api::decimal")]
    pub lease: U256,
    /// The manifest service.
    pub service: String,
    /// Requests and connections open now.
    pub open: u64,
    /// Milliseconds since the last one ended, or since the route was installed (0 while any
    /// is open).
    pub idle_ms: u64,
}

/// Activity of every app the gateway routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayActivity {
    /// One entry per routed app.
    pub apps: Vec<AppActivity>,
}

/// The gateway asks the keeper to start a service it holds requests for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeRequest {
    /// The lease.
    #[serde(with = "crate::api::decimal")]
    pub lease: U256,
    /// The manifest service.
    pub service: String,
}

/// Bytes a lease's apps moved through the gateway, counted since the gateway started (a
/// restart starts again from zero: read deltas, treating a decrease as a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTraffic {
    /// The lease.
    #[serde(with = "crate::api::decimal")]
    pub lease: U256,
    /// Request bytes sent to its apps (upgraded connections included).
    pub request_bytes: u64,
    /// Response bytes its apps sent to clients: its egress.
    pub response_bytes: u64,
}

/// Traffic of every lease the gateway routes now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayUsage {
    /// One entry per lease.
    pub leases: Vec<LeaseTraffic>,
}

/// One hostname the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The hostname, lower case.
    pub host: String,
    /// The lease, for metrics and logs.
    #[serde(with = "crate::api::decimal")]
    pub lease: U256,
    /// The manifest service.
    pub service: String,
    /// Where the workload answers, `host:port`.
    pub upstream: String,
    /// Set while the service is scaled to zero: the id of that sleep (the keeper's
    /// milliseconds when it began). The gateway holds a request for it, asks the keeper to
    /// wake the service once per sleep, and forwards when the app accepts connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep: Option<u64>,
    /// Set for a private service: who may sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

/// Who may use a private app: the lease's tenant and the manifest's `allow` list, signed in
/// with Ethereum on the lease's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The chain the lease is on (the Sign-In message must name it).
    pub chain_id: u64,
    /// The lease's tenant.
    pub tenant: Address,
    /// Other addresses the manifest allows.
    #[serde(default)]
    pub allow: Vec<Address>,
}

impl Access {
    /// Whether `address` may use the app.
    pub fn admits(&self, address: Address) -> bool {
        address == self.tenant || self.allow.contains(&address)
    }
}

/// Paths the gateway answers itself on every app hostname (Sign-In with Ethereum for private
/// apps); apps never see requests under [`signin::PREFIX`].
pub mod signin {
    /// The reserved prefix.
    pub const PREFIX: &str = "/.well-known/berth/";
    /// `POST`: a fresh single-use nonce, `{"nonce": "…", "expires_in_s": 300}`.
    pub const NONCE: &str = "/.well-known/berth/nonce";
    /// `POST` `{"message": "<EIP-4361 text>", "signature": "0x…"}`: sets the session cookie.
    pub const VERIFY: &str = "/.well-known/berth/verify";
    /// `POST`: ends the session (clears the cookie).
    pub const SIGN_OUT: &str = "/.well-known/berth/signout";
    /// The session cookie (host-only, `Secure`, `HttpOnly`, `Path=/`).
    pub const COOKIE: &str = "__Host-berth-session";
    /// The header an app receives with the signed-in address (set by the gateway alone).
    pub const ADDRESS_HEADER: &str = "x-berth-address";
}

/// The gateway asks the keeper whether a contract wallet accepts a signature (ERC-1271).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erc1271Request {
    /// The contract wallet.
    pub account: Address,
    /// The EIP-191 hash of the signed message.
    pub hash: alloy_primitives::B256,
    /// The signature, as the wallet made it.
    pub signature: alloy_primitives::Bytes,
}

/// The keeper's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erc1271Answer {
    /// The wallet answered the ERC-1271 magic value.
    pub valid: bool,
}

/// Every route, as the keeper wants them now. The gateway replaces its table with each one
/// it receives, so a lease that ended is gone from the next table the keeper sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// The routes, any order.
    pub routes: Vec<Route>,
}

/// The most routes one table may hold (far above what one provider runs).
pub const MAX_ROUTES: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_deterministic_and_tell_deployments_apart() {
        let escrow = Address::repeat_byte(0x11);
        let tag = deployment_tag(31337, escrow);
        assert_eq!(tag.len(), 8);
        assert_eq!(tag, deployment_tag(31337, escrow));
        assert_ne!(tag, deployment_tag(1, escrow));
        assert_ne!(tag, deployment_tag(31337, Address::repeat_byte(0x12)));
        let host = app_hostname("apps.example.com.", &tag, U256::from(42), "web", None);
        assert_eq!(host, Some(format!("web-42-{tag}.apps.example.com")));
        let host = app_hostname("apps.example.com", &tag, U256::from(42), "web", Some(8080));
        assert_eq!(host, Some(format!("web-8080-42-{tag}.apps.example.com")));
        assert_eq!(
            app_hostname("a.b", &tag, U256::MAX, "web", None),
            None,
            "label too long"
        );
    }

    #[test]
    fn every_http_port_gets_a_name_and_tcp_ports_none() {
        let manifest = Manifest::parse(
            b"version: 1\nservices:\n  web:\n    image: x\n    ports: [{port: 80, expose: http}, {port: 81, expose: http}, {port: 9000, expose: tcp}]\n    resources: {cpu: 100m, memory: 16Mi}\n",
        )
        .expect("manifest");
        let names = app_hostnames(&manifest, "apps.test", "abcd0123", U256::from(7));
        assert_eq!(
            names,
            vec![
                AppName {
                    service: "web".into(),
                    port: 80,
                    host: "web-7-abcd0123.apps.test".into()
                },
                AppName {
                    service: "web".into(),
                    port: 81,
                    host: "web-81-7-abcd0123.apps.test".into()
                },
            ]
        );
    }

    #[test]
    fn hosts_are_normalized_or_refused() {
        assert_eq!(
            normalize_host("Web-1-AB.Apps.Test:8443").as_deref(),
            Some("web-1-ab.apps.test")
        );
        assert_eq!(normalize_host("a.test.").as_deref(), Some("a.test"));
        for bad in [
            "",
            ":443",
            "a..b",
            "-a.test",
            "a-.test",
            "a.test:",
            "a.test:x",
            "[::1]:443",
            "a b.test",
            "a_b.test",
            "ä.test",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
        assert_eq!(normalize_host(&"a".repeat(64)), None);
        assert_eq!(normalize_host(&format!("{}.x", "a.".repeat(130))), None);
    }
}
