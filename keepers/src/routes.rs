//! What the provider's gateway serves: the keeper computes the whole route table from the
//! leases it runs (every public HTTP port of every active lease whose workload runs) and
//! replaces the gateway's table with it whenever it changes, and every half minute anyway
//! (so a restarted gateway is refilled). A lease that ends is missing from the next table.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use alloy::primitives::{Address, U256};
use berth_protocol::{
    manifest::Manifest,
    routing::{
        Access, AppName, GatewayActivity, Route, RouteTable, admin, app_hostnames, deployment_tag,
    },
};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::{engine::Workload, render::LeaseKey};

/// How long the gateway may take to take a table.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// An unchanged table is sent again this often.
const REFRESH: Duration = Duration::from_secs(30);

/// The apps domain the gateway serves, and how its URLs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsDomain {
    /// e.g. `apps.example.com`.
    pub domain: String,
    /// The gateway's HTTPS port as clients see it.
    pub https_port: u16,
    /// This deployment's hostname tag ([`deployment_tag`]).
    pub tag: String,
}

impl AppsDomain {
    /// The apps domain of one chain and escrow.
    pub fn new(domain: &str, https_port: u16, chain_id: u64, escrow: Address) -> Self {
        Self {
            domain: domain.to_owned(),
            https_port,
            tag: deployment_tag(chain_id, escrow),
        }
    }

    /// The `https://` URL of `host`.
    pub fn url(&self, host: &str) -> String {
        match self.https_port {
            443 => format!("https://{host}"),
            port => format!("https://{host}:{port}"),
        }
    }

    /// Every HTTP port of a lease's manifest: (service, container port, hostname).
    pub fn hostnames(&self, manifest: &Manifest, lease: U256) -> Vec<AppName> {
        app_hostnames(manifest, &self.domain, &self.tag, lease)
    }
}

/// Why the gateway could not be told or asked (the next pass tries again).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("gateway admin socket: {0}")]
    Call(#[from] berth_runtime::http::UnixCallError),
    #[error("gateway refused the request ({status}): {body}")]
    Refused { status: u16, body: String },
}

/// Where the gateway reaches a lease's HTTP ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The port published on this host address (podman).
    Published(String),
    /// The Service's cluster DNS name in this cluster domain (Kubernetes: HTTP ports have no
    /// NodePort).
    KubeService { cluster_domain: String },
}

impl Upstream {
    /// The address of `service`'s container `port`, published as `public`, of lease `key`.
    pub fn addr(&self, key: &LeaseKey, service: &str, port: u16, public: u16) -> String {
        match self {
            Self::Published(host) => format!("{host}:{public}"),
            Self::KubeService { cluster_domain } => {
                crate::render::service_upstream(key, service, port, cluster_domain)
            }
        }
    }
}

/// Keeps the gateway's table equal to the leases served.
#[derive(Debug)]
pub struct Publisher {
    apps: AppsDomain,
    socket: PathBuf,
    upstream: Upstream,
    escrow: Address,
    /// Hostnames by lease and manifest version (a manifest never changes under a version).
    names: HashMap<(U256, u32), Vec<AppName>>,
    /// Idle timeouts (ms) of the services that scale to zero, by lease and manifest version.
    idle: HashMap<(U256, u32), std::collections::BTreeMap<String, u64>>,
    /// Private services and the addresses they allow besides the tenant, likewise.
    private: HashMap<(U256, u32), std::collections::BTreeMap<String, Vec<Address>>>,
    /// Custom domains by service, likewise.
    domains: HashMap<(U256, u32), Vec<(String, String)>>,
    /// The deployment's chain (Sign-In messages name it).
    chain_id: u64,
    pushed: Option<(RouteTable, Instant)>,
}

impl Publisher {
    /// A publisher to the gateway at `socket`, which reaches the workloads of `escrow`'s
    /// leases on `chain_id` at `upstream`.
    pub fn new(
        apps: AppsDomain,
        socket: PathBuf,
        upstream: Upstream,
        chain_id: u64,
        escrow: Address,
    ) -> Self {
        Self {
            apps,
            socket,
            upstream,
            escrow,
            names: HashMap::new(),
            idle: HashMap::new(),
            private: HashMap::new(),
            domains: HashMap::new(),
            chain_id,
            pushed: None,
        }
    }

    /// The apps domain.
    pub fn apps(&self) -> &AppsDomain {
        &self.apps
    }

    /// Whether the hostnames of a lease's manifest version are known.
    pub fn knows(&self, lease: U256, version: u32) -> bool {
        self.names.contains_key(&(lease, version))
    }

    /// Remembers the hostnames of a lease's manifest version.
    pub fn learn(&mut self, lease: U256, version: u32, manifest: &Manifest) {
        let names = self.apps.hostnames(manifest, lease);
        self.names.insert((lease, version), names);
        let idle = manifest
            .services
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.idle_timeout_s()? * 1000)))
            .collect();
        self.idle.insert((lease, version), idle);
        let private = manifest
            .services
            .iter()
            .filter(|(_, s)| s.private)
            .map(|(name, s)| (name.clone(), s.allowed()))
            .collect();
        self.private.insert((lease, version), private);
        let domains = manifest
            .services
            .iter()
            .flat_map(|(name, s)| s.domains.iter().map(move |d| (name.clone(), d.clone())))
            .collect();
        self.domains.insert((lease, version), domains);
    }

    /// The custom domains `served` leases name (those under the apps domain are ignored: the
    /// provider's names are not a tenant's to take).
    pub fn claims<'a>(
        &self,
        served: impl Iterator<Item = (U256, u32, Address)> + 'a,
    ) -> Vec<crate::domains::Claim> {
        let apps = format!(".{}", self.apps.domain);
        let mut out = Vec::new();
        for (lease, version, tenant) in served {
            for (service, domain) in self.domains.get(&(lease, version)).into_iter().flatten() {
                if domain == &self.apps.domain || domain.ends_with(&apps) {
                    continue;
                }
                out.push(crate::domains::Claim {
                    domain: domain.clone(),
                    lease,
                    service: service.clone(),
                    tenant,
                });
            }
        }
        out
    }

    /// Idle timeouts in ms of a lease's services that scale to zero (empty: none does, or
    /// the manifest version is not known yet).
    pub fn idle_timeouts(&self, lease: U256, version: u32) -> Vec<(&str, u64)> {
        self.idle
            .get(&(lease, version))
            .into_iter()
            .flatten()
            .map(|(s, ms)| (s.as_str(), *ms))
            .collect()
    }

    /// Forgets every lease not in `live`.
    pub fn retain(&mut self, live: impl Fn(U256) -> bool) {
        self.names.retain(|(lease, _), _| live(*lease));
        self.idle.retain(|(lease, _), _| live(*lease));
        self.private.retain(|(lease, _), _| live(*lease));
        self.domains.retain(|(lease, _), _| live(*lease));
    }

    /// Open work and idle time per app, as the gateway counts them.
    pub async fn activity(&self) -> Result<GatewayActivity, PushError> {
        let body = self
            .call(hyper::Method::GET, admin::ACTIVITY, Bytes::new())
            .await?;
        serde_json::from_slice(&body).map_err(|e| PushError::Refused {
            status: 200,
            body: format!("not an activity report: {e}"),
        })
    }

    /// One request on the gateway's admin socket; the body of a 2xx answer.
    async fn call(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, PushError> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://gateway{path}"))
            .header(hyper::header::HOST, "gateway")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| PushError::Refused {
                status: 0,
                body: e.to_string(),
            })?;
        let (status, body) =
            berth_runtime::http::unix_call(&self.socket, req, PUSH_TIMEOUT).await?;
        if !status.is_success() {
            return Err(PushError::Refused {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        Ok(body)
    }

    /// The table for `served` (lease, manifest version, tenant, its running workload): each
    /// known hostname whose port the workload publishes, and each proven custom domain of
    /// `domains` (domain → lease and service) on its service's first HTTP port.
    pub fn table<'a>(
        &self,
        served: impl Iterator<Item = (U256, u32, Address, &'a Workload)>,
        domains: &std::collections::BTreeMap<String, (U256, String)>,
    ) -> RouteTable {
        let mut routes = Vec::new();
        for (lease, version, tenant, workload) in served {
            let private = self.private.get(&(lease, version));
            for name in self.names.get(&(lease, version)).into_iter().flatten() {
                let access = private
                    .and_then(|p| p.get(&name.service))
                    .map(|allow| Access {
                        chain_id: self.chain_id,
                        tenant,
                        allow: allow.clone(),
                    });
                if let Some(public) = workload.ports.get(&(name.service.clone(), name.port)) {
                    routes.push(Route {
                        host: name.host.clone(),
                        lease,
                        service: name.service.clone(),
                        upstream: self.upstream.addr(
                            &LeaseKey {
                                chain_id: self.chain_id,
                                escrow: self.escrow,
                                lease_id: lease,
                            },
                            &name.service,
                            name.port,
                            *public,
                        ),
                        asleep: workload.asleep.get(&name.service).copied(),
                        access,
                    });
                }
            }
        }
        let mut custom = Vec::new();
        for (domain, (lease, service)) in domains {
            // The service's first HTTP port is its short name's route.
            let Some(route) = routes.iter().find(|r| {
                r.lease == *lease
                    && r.service == *service
                    && r.host.starts_with(&format!("{service}-{lease}-"))
            }) else {
                continue;
            };
            if routes.iter().any(|r| r.host == *domain) {
                continue;
            }
            custom.push(Route {
                host: domain.clone(),
                ..route.clone()
            });
        }
        routes.extend(custom);
        routes.sort_by(|a, b| a.host.cmp(&b.host));
        RouteTable { routes }
    }

    /// Sends `table` when it differs from the last one the gateway took, or that one is
    /// older than [`REFRESH`]. Returns whether it was sent.
    pub async fn publish(&mut self, table: RouteTable) -> Result<bool, PushError> {
        if let Some((last, at)) = &self.pushed
            && *last == table
            && at.elapsed() < REFRESH
        {
            return Ok(false);
        }
        let body = serde_json::to_vec(&table).unwrap_or_default();
        if let Err(e) = self
            .call(hyper::Method::PUT, admin::ROUTES, Bytes::from(body))
            .await
        {
            self.pushed = None;
            return Err(e);
        }
        tracing::debug!(
            routes = table.routes.len(),
            "route table sent to the gateway"
        );
        self.pushed = Some((table, Instant::now()));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_published_ports_of_known_manifests_are_routed() {
        let apps = AppsDomain::new("apps.test", 8443, 31337, Address::repeat_byte(1));
        assert_eq!(apps.url("a.apps.test"), "https://a.apps.test:8443");
        let mut publisher = Publisher::new(
            apps.clone(),
            "/nonexistent".into(),
            Upstream::Published("127.0.0.1".into()),
            31337,
            Address::repeat_byte(1),
        );
        let manifest = Manifest::parse(
            b"version: 1\nservices:\n  web:\n    image: x\n    ports: [{port: 80, expose: http}, {port: 9000, expose: tcp}]\n    resources: {cpu: 100m, memory: 16Mi}\n",
        )
        .expect("manifest");
        publisher.learn(U256::from(1), 1, &manifest);
        let mut running = Workload::default();
        running.ports.insert(("web".into(), 80), 30001);
        running.ports.insert(("web".into(), 9000), 30002);
        let starting = Workload::default();
        let tenant = Address::repeat_byte(9);
        let served = [
            (U256::from(1), 1, tenant, &running),
            (U256::from(1), 2, tenant, &running), // a version whose names are not known yet
            (U256::from(2), 1, tenant, &starting),
        ];
        let table = publisher.table(served.into_iter(), &Default::default());
        assert_eq!(
            table.routes,
            vec![Route {
                host: format!("web-1-{}.apps.test", apps.tag),
                lease: U256::from(1),
                service: "web".into(),
                upstream: "127.0.0.1:30001".into(),
                asleep: None,
                access: None,
            }]
        );
        publisher.retain(|lease| lease != U256::from(1));
        assert!(!publisher.knows(U256::from(1), 1));
    }
}
