//! The route table: hostname → the workload that answers it. The keeper owns it and replaces
//! it whole (`PUT /v1/routes` on the gateway's local admin socket) whenever its leases change,
//! so a route never outlives its lease by more than one keeper pass; the gateway keeps the
//! last table in a file so that a restart serves at once, before the keeper's next push.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use berth_protocol::routing::{
    AppActivity, GatewayActivity, GatewayUsage, LeaseTraffic, MAX_ROUTES, Route, RouteTable,
    normalize_host,
};

use berth_protocol::manifest::MAX_ALLOWED;

use crate::{
    metrics::{App, AppCounters, Metrics},
    wake::Activity,
};

/// Where a hostname's requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Lease and service, as metrics label them.
    pub app: App,
    /// `host:port` of the workload.
    pub upstream: String,
    /// Its metrics.
    pub counters: AppCounters,
    /// Its open work and idle clock.
    pub activity: Arc<Activity>,
    /// The sleep it is in, if scaled to zero.
    pub asleep: Option<u64>,
    /// Who may use it, if private.
    pub access: Option<berth_protocol::routing::Access>,
}

/// The lease label of the provider API's target (a real lease is a number).
pub const API_LEASE: &str = "api";

impl Target {
    /// Whether this is the provider's API (`api_host`), not a tenant's app.
    pub fn is_api(&self) -> bool {
        self.app.lease == API_LEASE
    }
}

/// Why a table was refused (the old one stays).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{0} routes: at most {MAX_ROUTES}")]
    TooMany(usize),
    #[error("`{0}` is not a lower-case hostname")]
    BadHost(String),
    #[error("`{0}` allows more than {MAX_ALLOWED} addresses")]
    TooManyAllowed(String),
    #[error("`{0}` appears twice")]
    Duplicate(String),
    #[error("upstream `{upstream}` of `{host}` is not host:port")]
    BadUpstream { host: String, upstream: String },
    #[error("saving the table to {path}")]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The live table, read lock-free by every request.
#[derive(Debug)]
pub struct Routes {
    table: ArcSwap<HashMap<String, Arc<Target>>>,
    file: Option<PathBuf>,
    metrics: Arc<Metrics>,
    /// Activity by app, kept while the app has a route.
    activity: std::sync::Mutex<HashMap<App, Arc<Activity>>>,
    /// Told of every new table (the ACME manager waits on it).
    updated: tokio::sync::Notify,
}

impl Routes {
    /// An empty table, or the one saved in `file`. A saved table that cannot be read is
    /// logged and ignored: the keeper's next push replaces it anyway.
    pub fn new(file: Option<PathBuf>, metrics: Arc<Metrics>) -> Self {
        let routes = Self {
            table: ArcSwap::default(),
            file,
            metrics,
            activity: Default::default(),
            updated: tokio::sync::Notify::new(),
        };
        if let Some(path) = &routes.file {
            match read_saved(path) {
                Ok(Some(table)) => match routes.compile(&table) {
                    Ok(map) => {
                        tracing::info!(routes = map.len(), path = %path.display(), "saved routes loaded");
                        routes.metrics.routes_replaced(map.len(), &[]);
                        routes.table.store(Arc::new(map));
                    }
                    Err(e) => tracing::warn!(error = %e, "saved routes ignored"),
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "saved routes unreadable; starting empty")
                }
            }
        }
        routes
    }

    /// The target of `host` (already normalized).
    pub fn get(&self, host: &str) -> Option<Arc<Target>> {
        self.table.load().get(host).cloned()
    }

    /// Replaces the table with `table`, checked first; saved before it is served.
    pub fn replace(&self, table: &RouteTable) -> Result<usize, RouteError> {
        let map = self.compile(table)?;
        if let Some(path) = &self.file {
            save(path, table).map_err(|source| RouteError::Save {
                path: path.clone(),
                source,
            })?;
        }
        let old = self.table.swap(Arc::new(map));
        let new = self.table.load();
        let live: std::collections::HashSet<&App> = new.values().map(|t| &t.app).collect();
        let gone: Vec<App> = old
            .values()
            .map(|t| t.app.clone())
            .filter(|a| !live.contains(a))
            .collect();
        self.metrics.routes_replaced(new.len(), &gone);
        self.activities().retain(|app, _| live.contains(app));
        self.updated.notify_one();
        Ok(new.len())
    }

    /// Every routed hostname.
    pub fn hosts(&self) -> Vec<String> {
        self.table.load().keys().cloned().collect()
    }

    /// Resolves after the next table is installed (or at once if one was installed since
    /// the last call).
    pub async fn updated(&self) {
        self.updated.notified().await;
    }

    fn activities(&self) -> std::sync::MutexGuard<'_, HashMap<App, Arc<Activity>>> {
        self.activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open work and idle time of every routed app.
    pub fn activity(&self) -> GatewayActivity {
        let mut apps: Vec<AppActivity> = self
            .activities()
            .iter()
            .filter_map(|(app, a)| {
                let (open, idle_ms) = a.read();
                Some(AppActivity {
                    lease: app.lease.parse().ok()?,
                    service: app.service.clone(),
                    open,
                    idle_ms,
                })
            })
            .collect();
        apps.sort_by(|a, b| (a.lease, &a.service).cmp(&(b.lease, &b.service)));
        GatewayActivity { apps }
    }

    /// Bytes through the gateway per routed lease (its services summed).
    pub fn usage(&self) -> GatewayUsage {
        let table = self.table.load();
        // Two hostnames of one service (two HTTP ports) share its counters: count them once.
        let apps: std::collections::HashMap<&App, (u64, u64)> = table
            .values()
            .map(|t| (&t.app, t.counters.bytes()))
            .collect();
        let mut by_lease: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for (app, (sent, received)) in apps {
            let entry = by_lease.entry(app.lease.as_str()).or_default();
            entry.0 += sent;
            entry.1 += received;
        }
        let leases = by_lease
            .into_iter()
            .filter_map(|(lease, (request_bytes, response_bytes))| {
                Some(LeaseTraffic {
                    lease: lease.parse().ok()?,
                    request_bytes,
                    response_bytes,
                })
            })
            .collect();
        GatewayUsage { leases }
    }

    /// The table as served.
    pub fn snapshot(&self) -> RouteTable {
        let mut routes: Vec<Route> = self
            .table
            .load()
            .iter()
            .map(|(host, t)| Route {
                host: host.clone(),
                lease: t.app.lease.parse().unwrap_or_default(),
                service: t.app.service.clone(),
                upstream: t.upstream.clone(),
                asleep: t.asleep,
                access: t.access.clone(),
            })
            .collect();
        routes.sort_by(|a, b| a.host.cmp(&b.host));
        RouteTable { routes }
    }
}

impl Routes {
    /// Checks `table` whole and builds the map it serves.
    fn compile(&self, table: &RouteTable) -> Result<HashMap<String, Arc<Target>>, RouteError> {
        if table.routes.len() > MAX_ROUTES {
            return Err(RouteError::TooMany(table.routes.len()));
        }
        let mut map = HashMap::with_capacity(table.routes.len());
        for r in &table.routes {
            if normalize_host(&r.host).as_deref() != Some(r.host.as_str()) {
                return Err(RouteError::BadHost(r.host.clone()));
            }
            if !is_authority(&r.upstream) {
                return Err(RouteError::BadUpstream {
                    host: r.host.clone(),
                    upstream: r.upstream.clone(),
                });
            }
            if r.access
                .as_ref()
                .is_some_and(|a| a.allow.len() > MAX_ALLOWED)
            {
                return Err(RouteError::TooManyAllowed(r.host.clone()));
            }
            if map.insert(r.host.clone(), r).is_some() {
                return Err(RouteError::Duplicate(r.host.clone()));
            }
        }
        // Checked whole first: a refused table leaves no metric series behind.
        let mut activities = self.activities();
        let map = map
            .into_iter()
            .map(|(host, r)| {
                let app = App {
                    lease: r.lease.to_string(),
                    service: r.service.clone(),
                };
                let target = Target {
                    counters: self.metrics.app(&app),
                    activity: Arc::clone(activities.entry(app.clone()).or_default()),
                    app,
                    upstream: r.upstream.clone(),
                    asleep: r.asleep,
                    access: r.access.clone(),
                };
                (host, Arc::new(target))
            })
            .collect();
        Ok(map)
    }
}

/// `host:port` with a hostname or an IPv4 address (or `[v6]:port`).
fn is_authority(s: &str) -> bool {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    s.rsplit_once(':').is_some_and(|(host, port)| {
        port.parse::<u16>().is_ok_and(|p| p > 0) && normalize_host(host).is_some()
    })
}

fn read_saved(path: &Path) -> Result<Option<RouteTable>, Box<dyn std::error::Error>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes a temporary file and renames it, so a crash leaves the old table or the new one.
fn save(path: &Path, table: &RouteTable) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(table).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::U256;

    use super::*;

    fn route(host: &str, lease: u64, upstream: &str) -> Route {
        Route {
            host: host.into(),
            lease: U256::from(lease),
            service: "web".into(),
            upstream: upstream.into(),
            asleep: None,
            access: None,
        }
    }

    #[test]
    fn a_table_is_checked_whole_and_the_old_one_stays_on_refusal() {
        let routes = Routes::new(None, Arc::new(Metrics::new()));
        let good = RouteTable {
            routes: vec![route("a.apps.test", 1, "127.0.0.1:30001")],
        };
        assert_eq!(routes.replace(&good).expect("valid"), 1);
        for (bad, says) in [
            (
                vec![route("A.apps.test", 2, "127.0.0.1:1")],
                "not a lower-case hostname",
            ),
            (vec![route("b.apps.test", 2, "127.0.0.1")], "not host:port"),
            (vec![route("b.apps.test", 2, "x:0")], "not host:port"),
            (
                vec![
                    route("b.apps.test", 2, "127.0.0.1:1"),
                    route("b.apps.test", 3, "127.0.0.1:2"),
                ],
                "appears twice",
            ),
        ] {
            let e = routes
                .replace(&RouteTable { routes: bad })
                .expect_err(says)
                .to_string();
            assert!(e.contains(says), "{e}");
        }
        assert_eq!(
            routes
                .get("a.apps.test")
                .map(|t| t.upstream.clone())
                .as_deref(),
            Some("127.0.0.1:30001")
        );
        assert_eq!(routes.snapshot(), good);
    }

    #[test]
    fn the_saved_table_is_served_after_a_restart() {
        let dir = std::env::temp_dir().join(format!("berth-gw-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("routes.json");
        let table = RouteTable {
            routes: vec![route("a.apps.test", 1, "pod.local:8080")],
        };
        Routes::new(Some(file.clone()), Arc::new(Metrics::new()))
            .replace(&table)
            .expect("saved");
        let restarted = Routes::new(Some(file.clone()), Arc::new(Metrics::new()));
        assert_eq!(restarted.snapshot(), table);
        std::fs::write(&file, "{not json").expect("corrupt");
        let restarted = Routes::new(Some(file), Arc::new(Metrics::new()));
        assert_eq!(
            restarted.snapshot(),
            RouteTable::default(),
            "a corrupt file starts empty"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
