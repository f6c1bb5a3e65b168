//! The reconciler: level-triggered, idempotent, restart-safe. Desired state is every lease of
//! this provider and its status on chain; actual state is the workloads the engine runs,
//! found by label. Each pass makes the second match the first. New blocks and manifest
//! uploads only wake it; a periodic resync runs anyway.

mod admission;
mod lifecycle;
mod settle;
mod work;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{eips::BlockId, primitives::U256, transports::http::reqwest};
use berth_bindings::{LeaseStatus, RejectReason};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use self::work::{ApplyState, Applying};
use crate::{
    chain::{ChainError, ChainReader, EscrowSettings, LeaseInfo, LeaseView},
    engine::{Engine, EngineError, Workload},
    intake::{self, Rejection},
    manifest::{Manifest, policy::Policy},
    metrics::Metrics,
    render::LeaseKey,
    signer::{Signer, SignerError},
    store::{Store, StoreError},
};

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
    /// When a lease's auto top-up may be tried again (one try per lease at a time).
    top_up_retry: HashMap<U256, Instant>,
    /// Manifest versions found invalid: logged once, the workload keeps its version.
    refused_updates: BTreeSet<(U256, u32)>,
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
        let http = reqwest::Client::builder()
            .timeout(settings.download_timeout)
            .connect_timeout(settings.download_timeout)
            .build()
            .map_err(|e| ChainError::Rpc(format!("http client: {e}")))?;
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
            top_up_retry: HashMap::new(),
            refused_updates: BTreeSet::new(),
        })
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
                match self.pass().await {
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

    /// One pass over every lease of this provider and every workload of this escrow.
    pub async fn pass(&mut self) -> Result<PassReport, PassError> {
        let head = self.chain.head().await?;
        let from = self.scanned_to.map_or(self.chain.start_block(), |b| b + 1);
        self.chain.scan(from, head, &mut self.known).await?;
        self.scanned_to = Some(head);

        let workloads = self.engine.list(self.chain_id, self.chain.escrow()).await?;
        let at = BlockId::number(head.saturating_sub(self.settings.confirmations));
        let ids: BTreeSet<U256> = self.known.keys().chain(workloads.keys()).copied().collect();
        let mut views = BTreeMap::new();
        for id in ids {
            let mut view = self.chain.lease(id, at).await?;
            if let Some(info) = self.known.get(&id) {
                info.fill(&mut view);
            }
            views.insert(id, view);
        }

        // Work under way for a lease that ended is abandoned; whatever it created is labelled
        // and torn down below or in the next pass.
        for (id, v) in &views {
            if is_ended(v.status) {
                self.abandon(*id);
            }
        }
        // Ended leases first, all at once: teardown frees ports and capacity, and one slow
        // removal must not hold up the others.
        let ending: Vec<(U256, LeaseStatus)> = views
            .iter()
            .filter(|(id, v)| {
                workloads.contains_key(*id)
                    && is_ended(v.status)
                    && (v.status == LeaseStatus::None || v.provider_id == self.settings.provider_id)
            })
            .map(|(id, v)| (*id, v.status))
            .collect();
        let removed = self.teardown_all(&ending).await;
        let running = workloads.len() - removed.iter().filter(|r| r.is_ok()).count();
        // A closed lease stays watched until its final report is in (or its window is over):
        // a report round that could not send it this pass must find it again in the next.
        let wall_s = crate::metering::sampler::now_ms() / 1000;
        for ((id, _), result) in ending.iter().zip(&removed) {
            let awaiting = views
                .get(id)
                .is_some_and(|v| self.needs_final_report(v, wall_s));
            if result.is_ok() && !awaiting {
                self.known.remove(id);
                self.started.remove(id);
            }
        }
        if let Some(Err(e)) = removed.into_iter().find(Result::is_err) {
            self.metrics.set_workloads(running);
            return Err(e.into());
        }

        let mut report = PassReport::default();
        for (id, view) in &views {
            let workload = workloads.get(id);
            if view.status != LeaseStatus::None && view.provider_id != self.settings.provider_id {
                // Labelled for this escrow but another provider's lease: not ours to touch.
                self.known.remove(id);
                continue;
            }
            // One lease's failure is logged and retried in the next pass; the others go on.
            match view.status {
                LeaseStatus::Pending => {
                    match self.pending(view, workload, &workloads, &views).await {
                        Ok(true) => report.waiting += 1,
                        Ok(false) => {}
                        Err(e) => {
                            report.waiting += 1;
                            tracing::warn!(lease = %id, error = %e, "pending lease not handled this pass");
                        }
                    }
                }
                LeaseStatus::Active => match self.active(view, workload, &workloads).await {
                    Ok(waiting) => report.waiting += usize::from(waiting),
                    Err(e) => {
                        report.waiting += 1;
                        tracing::warn!(lease = %id, error = %e, "active lease not brought to its manifest this pass");
                    }
                },
                LeaseStatus::Suspended => {
                    if let Err(e) = self.suspended(view, workload).await {
                        tracing::warn!(lease = %id, error = %e, "suspended lease's workload not stopped this pass");
                    }
                }
                // Not yet at the confirmed depth (or gone in a reorg): look again next pass.
                LeaseStatus::None => {}
                // Ended: torn down above; nothing more to watch once the final report is in.
                _ => {
                    if !self.needs_final_report(view, wall_s) {
                        self.known.remove(id);
                        self.started.remove(id);
                    }
                }
            }
        }
        self.metrics.set_workloads(running);
        report.workloads = running;
        self.settle(&views).await?;
        tracing::debug!(
            head,
            leases = views.len(),
            workloads = running,
            waiting = report.waiting,
            "pass done"
        );
        Ok(report)
    }

    /// Removes the workloads of ended leases, [`TEARDOWN_CONCURRENCY`] at a time; one result
    /// per lease, in order.
    async fn teardown_all(&self, ending: &[(U256, LeaseStatus)]) -> Vec<Result<(), EngineError>> {
        use futures::StreamExt;
        futures::stream::iter(ending.iter().map(|(id, status)| async move {
            let result = self.engine.delete(&self.key(*id)).await;
            match &result {
                Ok(()) => {
                    self.metrics.torn_down();
                    tracing::info!(lease = %id, ?status, "workload torn down");
                }
                Err(e) => {
                    tracing::warn!(lease = %id, error = %e, "teardown failed; retrying next pass")
                }
            }
            result
        }))
        .buffered(TEARDOWN_CONCURRENCY)
        .collect()
        .await
    }

    /// A pending lease: intake and deploy, wait for readiness, confirm. Returns whether it is
    /// still waiting for its workload.
    async fn pending(
        &mut self,
        view: &LeaseView,
        workload: Option<&Workload>,
        all: &BTreeMap<U256, Workload>,
        views: &BTreeMap<U256, LeaseView>,
    ) -> Result<bool, PassError> {
        let id = view.id;
        // Rejected already (the confirmed depth may not show it yet): never deploy again.
        if self.store.decided(id, "reject").await? {
            self.abandon(id);
            return Ok(false);
        }
        let Some(bytes) = self.manifest_bytes(view).await? else {
            let now = self.chain.now().await?;
            if now.saturating_sub(view.created_at) > self.settings.manifest_timeout.as_secs() {
                let rule = format!(
                    "no manifest uploaded or downloadable within {} s",
                    self.settings.manifest_timeout.as_secs()
                );
                self.reject(
                    view,
                    Rejection::new(RejectReason::ManifestUnavailable, rule),
                )
                .await?;
            }
            return Ok(false);
        };
        let manifest = match intake::check_manifest(
            &bytes,
            view.manifest_hash,
            view.reservation,
            &self.settings.policy,
        ) {
            Ok(m) => m,
            Err(r) => {
                self.reject(view, r).await?;
                return Ok(false);
            }
        };

        match self.apply_state(id).await {
            ApplyState::Running => return Ok(true),
            ApplyState::Done(Err(EngineError::Refused(why))) => {
                self.reject(view, Rejection::new(RejectReason::ManifestInvalid, why))
                    .await?;
                return Ok(false);
            }
            ApplyState::Done(Err(e)) => return Err(e.into()),
            ApplyState::Done(Ok(())) if workload.is_none() => return Ok(true),
            ApplyState::Done(Ok(())) | ApplyState::Idle => {}
        }
        let Some(workload) = workload else {
            if let Err(r) = self.admit(view, all, views).await? {
                self.reject(view, r).await?;
                return Ok(false);
            }
            let used = self.used_ports(all);
            let ports = match intake::assign_ports(
                &manifest,
                &self.settings.policy.host_ports,
                &used,
                |p| self.bindable(p),
            ) {
                Ok(p) => p,
                Err(r) => {
                    self.reject(view, r).await?;
                    return Ok(false);
                }
            };
            self.spawn_apply(id, &manifest, ports, Some(view.manifest_version));
            self.metrics.deployed();
            self.started.insert(id, Instant::now());
            tracing::info!(lease = %id, engine = self.engine.name(), "deploying");
            return Ok(true);
        };

        if !workload.running() {
            let ports = workload.ports.clone();
            self.spawn_apply(id, &manifest, ports, Some(view.manifest_version));
        }
        let started = *self.started.entry(id).or_insert_with(Instant::now);
        let endpoint = intake::endpoint(&manifest, &workload.ports, &self.settings.public_host);
        if workload.running() && self.ready(&manifest, &workload.ports).await {
            self.confirm(view, endpoint).await?;
            return Ok(false);
        }
        if started.elapsed() > self.settings.ready_timeout {
            let rule = format!(
                "workload did not answer within {} s",
                self.settings.ready_timeout.as_secs()
            );
            self.reject(view, Rejection::new(RejectReason::ManifestInvalid, rule))
                .await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// An active lease whose workload is missing or stopped: bring it back as confirmed.
    pub(super) async fn redeploy(
        &mut self,
        view: &LeaseView,
        workload: Option<&Workload>,
        all: &BTreeMap<U256, Workload>,
    ) -> Result<(), PassError> {
        let Some(bytes) = self.manifest_bytes(view).await? else {
            tracing::error!(lease = %view.id, "active lease without a stored manifest: cannot redeploy");
            return Ok(());
        };
        let Ok(manifest) = Manifest::parse(&bytes) else {
            tracing::error!(lease = %view.id, "stored manifest of an active lease no longer parses");
            return Ok(());
        };
        match self.apply_state(view.id).await {
            ApplyState::Running => return Ok(()),
            ApplyState::Done(Err(e)) => {
                tracing::warn!(lease = %view.id, error = %e, "redeploy failed; trying again");
            }
            ApplyState::Done(Ok(())) | ApplyState::Idle => {}
        }
        let ports = match workload {
            Some(w) => w.ports.clone(),
            None => {
                // Keep the confirmed endpoint: reuse the ports it names when they are free.
                let used = self.used_ports(all);
                let mut ports =
                    intake::assign_ports(&manifest, &self.settings.policy.host_ports, &used, |p| {
                        self.bindable(p)
                    })
                    .unwrap_or_default();
                for ((svc, port), public) in ports.iter_mut() {
                    if let Some(p) =
                        confirmed_port(&view.endpoint, svc, *port, &self.settings.public_host)
                        && !used.contains(&p)
                    {
                        *public = p;
                    }
                }
                ports
            }
        };
        tracing::warn!(lease = %view.id, "active lease's workload is missing or stopped: (re)starting it");
        // Bytes of an earlier version (the update not delivered yet) run unlabelled, so that
        // the rollout replaces them once the new version arrives.
        let current = alloy::primitives::keccak256(&bytes) == view.manifest_hash;
        self.spawn_apply(
            view.id,
            &manifest,
            ports,
            current.then_some(view.manifest_version),
        );
        self.metrics.deployed();
        Ok(())
    }
}

/// Leases whose workloads must go: ended on chain, or unknown to the chain at the confirmed
/// depth although labelled for this escrow.
fn is_ended(status: LeaseStatus) -> bool {
    !matches!(
        status,
        LeaseStatus::Pending | LeaseStatus::Active | LeaseStatus::Suspended
    )
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
