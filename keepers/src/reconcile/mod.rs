//! The reconciler: level-triggered, idempotent, restart-safe. Desired state is every lease of
//! this provider and its status on chain; actual state is the workloads the engine runs,
//! found by label. Each pass makes the second match the first. New blocks and manifest
//! uploads only wake it; a periodic resync runs anyway.

mod admission;
pub mod decide;
mod deploy;
mod feed;
mod idle;
mod lifecycle;
mod observe;
mod routing;
mod sealed;
mod settle;
mod work;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{primitives::U256, transports::http::reqwest};
use berth_bindings::LeaseStatus;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use tracing::Instrument;

use self::{
    decide::{Action, Memory, RunwayRules, WorkloadState, decide},
    observe::{Retries, Snapshot},
    work::Applying,
};
use crate::{
    chain::{ChainError, ChainReader, EscrowSettings, LeaseInfo, LeaseView},
    engine::{Engine, EngineError, Workload},
    metrics::Metrics,
    render::LeaseKey,
    signer::{Signer, SignerError},
    store::{Store, StoreError},
};
use crate::{
    control::AppLocks,
    routes::{AppsDomain, Publisher},
};
use berth_protocol::manifest::policy::Policy;

/// The reconciler's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This provider's id.
    pub provider_id: u32,
    /// Blocks behind the head a lease's state is read at before acting on it.
    pub confirmations: u64,
    /// How often the head is polled.
    pub poll_interval: Duration,
    /// A full pass runs at least this often.
    pub resync_interval: Duration,
    /// How long a pending lease may wait for its manifest before it is rejected.
    pub manifest_timeout: Duration,
    /// How long a workload may take to answer before the lease is rejected.
    pub ready_timeout: Duration,
    /// Minimum runway a new lease must have (the escrow's minimum applies when higher).
    pub min_runway: Duration,
    /// Host tenants reach public ports on.
    pub public_host: String,
    /// Policy for manifests (includes the public port range).
    pub policy: Policy,
    /// Most CPU millicores all workloads may reserve (None: the registry's capacity rules).
    pub max_cpu_millis: Option<u64>,
    /// Most memory MiB all workloads may reserve.
    pub max_memory_mib: Option<u64>,
    /// Time limit of a manifest download.
    pub download_timeout: Duration,
    /// How often active leases are reported.
    pub report_interval: Duration,
    /// Most reports in one transaction.
    pub report_batch: usize,
    /// How often matured charges are claimed.
    pub claim_interval: Duration,
    /// Longest gap between two samples that still bills memory for it.
    pub max_sample_gap_ms: u64,
    /// The gateway in front of HTTP ports (None: they are confirmed as
    /// `http://public_host:port`).
    pub gateway: Option<GatewaySettings>,
    /// The provider's encryption keys, which open leases' secrets (empty: none held, and a
    /// lease with secrets is rejected).
    pub secret_keys: crate::secrets::ProviderKeys,
}

/// Where the gateway is and how it names apps.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The domain apps are served under.
    pub apps_domain: String,
    /// The gateway's HTTPS port as clients see it.
    pub https_port: u16,
    /// The gateway's admin socket.
    pub admin_socket: std::path::PathBuf,
    /// Where the gateway reaches HTTP ports.
    pub upstream: crate::routes::Upstream,
    /// Where custom domains' proofs are looked up (None: the system's resolvers).
    pub dns_server: Option<std::net::SocketAddr>,
    /// How long a proof's answer is trusted.
    pub domain_recheck: Duration,
}

/// Why a pass stopped early; the loop retries with backoff, and nothing is torn down.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Chain read failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The keeper's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A transaction could not be sent.
    #[error(transparent)]
    Signer(#[from] SignerError),
}

impl PassError {
    /// Whether the chain said the call or transaction reverts (an outage is not a revert).
    pub fn is_revert(&self) -> bool {
        match self {
            Self::Chain(e) => e.is_revert(),
            Self::Signer(e) => e.is_revert(),
            Self::Engine(_) | Self::Store(_) => false,
        }
    }
}

/// What one pass saw, for the loop's pacing and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Leases waiting for their workload to answer (the loop comes back soon).
    pub waiting: usize,
    /// Workloads in the engine after the pass.
    pub workloads: usize,
}

/// The provider keeper's reconciler.
#[derive(Debug)]
pub struct Reconciler {
    chain: ChainReader,
    engine: Engine,
    store: Store,
    signer: Signer,
    settings: Settings,
    metrics: Metrics,
    chain_id: u64,
    escrow: EscrowSettings,
    /// Leases of this provider worth looking at, with what their events say (manifests by
    /// version, endpoint, auto top-up policy).
    known: BTreeMap<U256, LeaseInfo>,
    scanned_to: Option<u64>,
    /// When the keeper first started a lease's workload (readiness deadline).
    started: HashMap<U256, Instant>,
    wake: Arc<Notify>,
    http: reqwest::Client,
    next_report: Instant,
    next_claim: Instant,
    /// Manifest downloads under way, one task per lease, off the pass.
    downloads: HashMap<U256, JoinHandle<Result<Vec<u8>, String>>>,
    /// When a lease's failed download may be tried again.
    download_retry: HashMap<U256, Instant>,
    /// Engine applies (image pulls, `kube play`) under way, one task per lease, off the pass.
    applying: HashMap<U256, Applying>,
    /// Turns for engine applies ([`work::APPLY_CONCURRENCY`] at once).
    apply_permits: Arc<tokio::sync::Semaphore>,
    /// When a lease's auto top-up may be tried again (one try per lease at a time).
    top_up_retry: HashMap<U256, Instant>,
    /// Manifest versions found invalid: logged once, the workload keeps its version.
    refused_updates: BTreeSet<(U256, u32)>,
    /// Leases whose last action failed, and when they may be tried again.
    retries: Retries,
    /// The gateway's route table, when a gateway serves HTTP ports.
    routes: Option<Publisher>,
    /// Serializes each app's scale-to-zero stop with its wake ([`crate::control`]).
    app_locks: AppLocks,
    /// Custom domains' DNS proofs, when a gateway serves HTTP ports.
    domains: Option<crate::domains::Domains>,
    /// Lease events recorded already (lease, key), so a pass writes only what is new.
    noted: std::collections::HashSet<(U256, String)>,
}

impl Reconciler {
    /// A reconciler; reads the escrow's settings once.
    pub async fn new(
        chain: ChainReader,
        engine: Engine,
        store: Store,
        signer: Signer,
        settings: Settings,
        metrics: Metrics,
        chain_id: u64,
    ) -> Result<Self, PassError> {
        let escrow = chain.settings().await?;
        let settings_report_interval = settings.report_interval;
        let settings_gateway = settings.gateway.clone();
        let domains = settings.gateway.as_ref().and_then(|g| {
            crate::domains::Domains::new(chain_id, g.dns_server, g.domain_recheck)
                .inspect_err(|e| {
                    tracing::error!(error = %e, "no DNS resolver: custom domains are not routed")
                })
                .ok()
        });
        let escrow_address = chain.escrow();
        let http = reqwest::Client::builder()
            .timeout(settings.download_timeout)
            .connect_timeout(settings.download_timeout)
            .build()
            .map_err(ChainError::Client)?;
        Ok(Self {
            chain,
            engine,
            store,
            signer,
            settings,
            metrics,
            chain_id,
            escrow,
            known: BTreeMap::new(),
            scanned_to: None,
            started: HashMap::new(),
            wake: Arc::new(Notify::new()),
            http,
            next_report: Instant::now() + settings_report_interval,
            next_claim: Instant::now(),
            downloads: HashMap::new(),
            download_retry: HashMap::new(),
            applying: HashMap::new(),
            apply_permits: Arc::new(tokio::sync::Semaphore::new(work::APPLY_CONCURRENCY)),
            top_up_retry: HashMap::new(),
            refused_updates: BTreeSet::new(),
            retries: Retries::default(),
            routes: settings_gateway.map(|g| {
                let apps = AppsDomain::new(&g.apps_domain, g.https_port, chain_id, escrow_address);
                Publisher::new(apps, g.admin_socket, g.upstream, chain_id, escrow_address)
            }),
            app_locks: AppLocks::default(),
            noted: std::collections::HashSet::new(),
            domains,
        })
    }

    /// The per-app locks the control socket's wakes must share.
    pub fn app_locks(&self) -> AppLocks {
        self.app_locks.clone()
    }

    /// Wakes the loop (a manifest arrived, a block was seen).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn key(&self, lease: U256) -> LeaseKey {
        LeaseKey {
            chain_id: self.chain_id,
            escrow: self.chain.escrow(),
            lease_id: lease,
        }
    }

    /// Runs passes until `shutdown`: after each new block, each wake-up, every
    /// `resync_interval`, and quickly while a workload is starting. Failed passes back off
    /// exponentially up to 30 s.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        let mut last_head = None;
        let mut last_pass = Instant::now() - self.settings.resync_interval;
        let mut waiting = 0;
        let wake = self.wake.clone();
        while !*shutdown.borrow() {
            let head = self.chain.head().await.ok();
            let due = waiting > 0
                || head != last_head
                || last_pass.elapsed() >= self.settings.resync_interval;
            if due {
                last_pass = Instant::now();
                match self.pass(head).await {
                    Ok(report) => {
                        self.metrics.pass(true);
                        last_head = head;
                        waiting = report.waiting;
                        backoff = Duration::from_millis(250);
                    }
                    Err(e) => {
                        self.metrics.pass(false);
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "pass failed; nothing torn down");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            let pause = if waiting > 0 {
                Duration::from_millis(100)
            } else {
                self.settings.poll_interval
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = wake.notified() => { last_head = None; }
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass: observe (one snapshot), decide (a pure function per lease), act (per lease,
    /// in its own span). A lease whose action fails is logged, waits out its own backoff and
    /// is tried again; the others go on. Only a failed snapshot fails the pass. `head` is
    /// the head the loop just read (None: read it now).
    pub async fn pass(&mut self, head: Option<u64>) -> Result<PassReport, PassError> {
        let timer = Instant::now();
        let mut snap = self.observe(head).await?;
        let wall_s = crate::metering::sampler::now_ms() / 1000;
        let rules = self.rules();

        let mut plan = Vec::with_capacity(snap.views.len());
        for (id, view) in &snap.views {
            let held = snap.held.contains(id);
            let memory = match self.memory(view, wall_s, rules, held).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(lease = %id, error = %e, "lease skipped this pass");
                    continue;
                }
            };
            let workload = WorkloadState::of(snap.workloads.get(id));
            let action = decide(view, workload, memory, self.settings.provider_id);
            plan.push((*id, action));
        }

        // Routes first: an ended lease's hostname goes before its (slow) teardown starts.
        // Idle services are marked asleep in the table before they stop, so the gateway
        // holds (and wakes them for) any request that comes meanwhile.
        self.learn_manifests(&snap).await;
        self.note_snapshot(&snap).await;
        let sleepers = self.put_idle_to_sleep(&mut snap, &plan).await;
        self.publish_routes(&snap).await;
        self.stop_sleepers(sleepers).await;

        // Ended leases first, all at once: teardown frees ports and capacity, and one slow
        // removal must not hold up the others. Work under way for them is abandoned first.
        let ending: Vec<(U256, LeaseStatus, Action)> = plan
            .iter()
            .filter(|(_, a)| lifecycle::removes(*a))
            .map(|(id, a)| (*id, snap.views[id].status, *a))
            .collect();
        for (id, _, _) in &ending {
            self.abandon(*id);
        }
        let removed = self.teardown_all(&ending).await;
        self.note_teardowns(&ending, &removed).await;
        let running = snap.workloads.len()
            - ending
                .iter()
                .zip(&removed)
                .filter(|((id, _, _), r)| r.is_ok() && snap.workloads.contains_key(id))
                .count();

        let mut report = PassReport::default();
        for (id, action) in plan {
            let view = &snap.views[&id];
            match action {
                Action::NotOurs | Action::Forget => self.forget(id),
                Action::Abandon => self.abandon(id),
                Action::Wait
                | Action::TearDown
                | Action::TearDownKeepingVolumes
                | Action::DeleteVolumes
                | Action::AwaitFinalReport => {}
                Action::Steady => {
                    if view.status == LeaseStatus::Suspended {
                        self.abandon(id); // nothing of a suspended lease may start
                    }
                    self.retries.settled(id);
                }
                _ if self.retries.waiting(id) => {}
                Action::Admit | Action::Redeploy | Action::RollOut | Action::Stop => {
                    let span = tracing::info_span!("lease", lease = %id, ?action);
                    let workload = snap.workloads.get(&id);
                    let result = self
                        .act(view, action, workload, &snap)
                        .instrument(span)
                        .await;
                    match result {
                        Ok(true) => report.waiting += 1,
                        Ok(false) => self.retries.settled(id),
                        Err(e) => {
                            let wait = self.retries.failed(id);
                            self.metrics.lease_error(action_name(action));
                            tracing::warn!(lease = %id, ?action, error = %e, retry_in_ms = wait.as_millis() as u64, "lease not handled; retrying it alone");
                        }
                    }
                }
            }
        }
        self.metrics.set_workloads(running);
        report.workloads = running;
        self.settle(&snap.views).await?;
        self.metrics.pass_duration(timer.elapsed());
        tracing::debug!(
            head = snap.head,
            leases = snap.views.len(),
            unread = snap.unread,
            failing = self.retries.failing(),
            workloads = running,
            waiting = report.waiting,
            "pass done"
        );
        Ok(report)
    }

    /// What the keeper remembers of a lease, for [`decide`].
    async fn memory(
        &self,
        view: &LeaseView,
        now: u64,
        rules: RunwayRules,
        holds_volumes: bool,
    ) -> Result<Memory, PassError> {
        Ok(Memory {
            // Rejected already (the confirmed depth may not show it yet): never deploy again.
            rejected: view.status == LeaseStatus::Pending
                && self.store.decided(view.id, "reject").await?,
            update_refused: self
                .refused_updates
                .contains(&(view.id, view.manifest_version)),
            owes_final_report: decide::owes_final_report(view, now, rules),
            holds_volumes,
        })
    }

    /// Runs the action [`decide`] chose for one lease. Returns whether the lease waits for
    /// work under way (an apply, a download, readiness).
    async fn act(
        &mut self,
        view: &LeaseView,
        action: Action,
        workload: Option<&Workload>,
        snap: &Snapshot,
    ) -> Result<bool, PassError> {
        match (action, workload) {
            (Action::Admit, _) => {
                self.pending(view, workload, &snap.workloads, &snap.views)
                    .await
            }
            (Action::Redeploy, _) => {
                self.redeploy(view, workload, &snap.workloads).await?;
                Ok(true)
            }
            (Action::RollOut, Some(w)) => {
                self.roll_out(view, w, &snap.workloads).await?;
                Ok(true)
            }
            (Action::Stop, _) => {
                self.suspended(view, workload).await?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Stops watching a lease: ended and settled, or another provider's.
    fn forget(&mut self, id: U256) {
        self.abandon(id);
        self.known.remove(&id);
        self.started.remove(&id);
        self.retries.settled(id);
        self.top_up_retry.remove(&id);
        self.refused_updates.retain(|(lease, _)| *lease != id);
        self.forget_noted(id);
    }

    /// The escrow's runway rules, for the settlement decisions.
    pub(super) fn rules(&self) -> RunwayRules {
        RunwayRules {
            min_runway: self.escrow.min_runway,
            grace_period: self.escrow.grace_period,
            final_report_window: self.escrow.final_report_window,
        }
    }
}

/// The metrics label of an action.
fn action_name(action: Action) -> &'static str {
    match action {
        Action::Admit => "admit",
        Action::Redeploy => "redeploy",
        Action::RollOut => "roll_out",
        Action::Stop => "stop",
        _ => "other",
    }
}

/// Workloads removed at once.
pub const TEARDOWN_CONCURRENCY: usize = 16;

/// Public ports held by workloads.
fn used_ports(all: &BTreeMap<U256, Workload>) -> BTreeSet<u16> {
    all.values()
        .flat_map(|w| w.ports.values().copied())
        .collect()
}

/// The public port an endpoint confirmed on chain gives for a service port, if any.
fn confirmed_port(endpoint: &str, service: &str, port: u16, host: &str) -> Option<u16> {
    let pick = |addr: &str| {
        addr.trim_start_matches("http://")
            .strip_prefix(&format!("{host}:"))
            .and_then(|p| p.parse().ok())
    };
    if !endpoint.contains('=') {
        return pick(endpoint);
    }
    endpoint.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k == format!("{service}/{port}"))
            .then(|| pick(v))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_ports_are_read_back_from_the_endpoint() {
        assert_eq!(
            confirmed_port("http://h:30005", "web", 8080, "h"),
            Some(30005)
        );
        let multi = "api/80=http://h:30002,api/9000=h:30000";
        assert_eq!(confirmed_port(multi, "api", 9000, "h"), Some(30000));
        assert_eq!(confirmed_port(multi, "api", 81, "h"), None);
        assert_eq!(confirmed_port("http://other:1", "web", 8080, "h"), None);
    }
}
