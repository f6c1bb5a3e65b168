//! The reconciler: level-triggered, idempotent, restart-safe. Desired state is every lease of
//! this provider and its status on chain; actual state is the workloads the engine runs,
//! found by label. Each pass makes the second match the first. New blocks and manifest
//! uploads only wake it; a periodic resync runs anyway.

mod settle;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{eips::BlockId, primitives::U256, sol_types::SolCall, transports::http::reqwest};
use berth_bindings::{LeaseEscrow, LeaseStatus, RejectReason};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use crate::{
    chain::{ChainError, ChainReader, EscrowSettings, LeaseView},
    engine::{Engine, EngineError, Workload},
    intake::{self, Rejection},
    manifest::{MAX_MANIFEST_BYTES, Manifest, policy::Policy},
    metrics::Metrics,
    render::{LeaseKey, render},
    signer::{Signer, SignerError, TxJob, TxOutcome},
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
    /// Leases of this provider worth looking at, with their manifest URIs.
    known: BTreeMap<U256, String>,
    scanned_to: Option<u64>,
    /// When the keeper first started a lease's workload (readiness deadline).
    started: HashMap<U256, Instant>,
    wake: Arc<Notify>,
    http: reqwest::Client,
    next_report: Instant,
    next_claim: Instant,
    /// Cached depletion time of active leases (refreshed after reports and when due).
    depletion: HashMap<U256, u64>,
    /// Manifest downloads under way, one task per lease, off the pass.
    downloads: HashMap<U256, JoinHandle<Result<Vec<u8>, String>>>,
    /// When a lease's failed download may be tried again.
    download_retry: HashMap<U256, Instant>,
    /// Engine applies (image pulls, `kube play`) under way, one task per lease, off the pass.
    applying: HashMap<U256, Applying>,
}

/// An engine apply running in its own task, with the public ports it will publish.
#[derive(Debug)]
struct Applying {
    task: JoinHandle<Result<(), EngineError>>,
    ports: crate::render::PortMap,
}

/// Where a lease's apply stands.
#[derive(Debug)]
enum ApplyState {
    /// None was started (or its outcome was already taken).
    Idle,
    /// Still running.
    Running,
    /// Finished with this outcome.
    Done(Result<(), EngineError>),
}

/// How long a failed manifest download waits before it is tried again.
const DOWNLOAD_RETRY: Duration = Duration::from_secs(10);

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
            depletion: HashMap::new(),
            downloads: HashMap::new(),
            download_retry: HashMap::new(),
            applying: HashMap::new(),
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
        let opened = self.chain.opened(from, head).await?;
        self.known.extend(opened);
        self.scanned_to = Some(head);

        let workloads = self.engine.list(self.chain_id, self.chain.escrow()).await?;
        let at = BlockId::number(head.saturating_sub(self.settings.confirmations));
        let ids: BTreeSet<U256> = self.known.keys().chain(workloads.keys()).copied().collect();
        let mut views = BTreeMap::new();
        for id in ids {
            views.insert(id, self.chain.lease(id, at).await?);
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
                LeaseStatus::Active => {
                    if workload.is_none_or(|w| !w.running()) {
                        if let Err(e) = self.redeploy(view, workload, &workloads).await {
                            tracing::warn!(lease = %id, error = %e, "active lease not redeployed this pass");
                        }
                        report.waiting += 1;
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
            self.spawn_apply(id, &manifest, ports);
            self.metrics.deployed();
            self.started.insert(id, Instant::now());
            tracing::info!(lease = %id, engine = self.engine.name(), "deploying");
            return Ok(true);
        };

        if !workload.running() {
            let ports = workload.ports.clone();
            self.spawn_apply(id, &manifest, ports);
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

    /// Starts applying a lease's objects in a task of its own: an image pull or a slow
    /// engine holds up only this lease.
    fn spawn_apply(&mut self, id: U256, manifest: &Manifest, ports: crate::render::PortMap) {
        let rendered = render(self.key(id), manifest, &ports);
        let engine = self.engine.clone();
        let task = tokio::spawn(async move { engine.apply(&rendered).await });
        self.applying.insert(id, Applying { task, ports });
    }

    /// Where the lease's apply stands; a finished outcome is taken (returned once).
    async fn apply_state(&mut self, id: U256) -> ApplyState {
        match self.applying.get(&id) {
            None => ApplyState::Idle,
            Some(a) if !a.task.is_finished() => ApplyState::Running,
            Some(_) => match self.applying.remove(&id) {
                Some(a) => ApplyState::Done(a.task.await.unwrap_or_else(|e| {
                    Err(EngineError::Unavailable(format!("apply task ended: {e}")))
                })),
                None => ApplyState::Idle,
            },
        }
    }

    /// Stops the lease's download and apply, if any.
    fn abandon(&mut self, id: U256) {
        if let Some(a) = self.applying.remove(&id) {
            a.task.abort();
        }
        if let Some(d) = self.downloads.remove(&id) {
            d.abort();
        }
        self.download_retry.remove(&id);
    }

    /// Public ports held by workloads and by applies under way.
    fn used_ports(&self, all: &BTreeMap<U256, Workload>) -> BTreeSet<u16> {
        let mut used = used_ports(all);
        used.extend(
            self.applying
                .values()
                .flat_map(|a| a.ports.values().copied()),
        );
        used
    }

    /// An active lease whose workload is missing or stopped: bring it back as confirmed.
    async fn redeploy(
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
        tracing::warn!(lease = %view.id, "active lease's workload is missing or stopped: redeploying");
        self.spawn_apply(view.id, &manifest, ports);
        self.metrics.deployed();
        Ok(())
    }

    /// Whether a public port is free on this host: podman publishes ports here, so a port
    /// another process holds would fail the pod; the cluster owns NodePorts.
    fn bindable(&self, port: u16) -> bool {
        match self.engine {
            Engine::Podman(_) => std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
            Engine::Kubernetes(_) => true,
        }
    }

    /// Runway and cluster capacity for a new lease.
    async fn admit(
        &self,
        view: &LeaseView,
        all: &BTreeMap<U256, Workload>,
        views: &BTreeMap<U256, LeaseView>,
    ) -> Result<Result<(), Rejection>, PassError> {
        let now = self.chain.now().await?;
        let depletion = self.chain.depletion_time(view.id).await?;
        let min = self
            .settings
            .min_runway
            .as_secs()
            .max(self.escrow.min_runway);
        if depletion < now.saturating_add(min) {
            return Ok(Err(Rejection::new(
                RejectReason::InsufficientRunway,
                format!(
                    "runway {} s is below the minimum {min} s",
                    depletion.saturating_sub(now)
                ),
            )));
        }
        let (mut cpu, mut mem) = (
            u64::from(view.reservation.cpu_millis),
            u64::from(view.reservation.memory_mib),
        );
        for id in all.keys() {
            if let Some(v) = views.get(id) {
                cpu += u64::from(v.reservation.cpu_millis);
                mem += u64::from(v.reservation.memory_mib);
            }
        }
        for (what, need, max) in [
            ("cpu millicores", cpu, self.settings.max_cpu_millis),
            ("memory MiB", mem, self.settings.max_memory_mib),
        ] {
            if let Some(max) = max.filter(|m| need > *m) {
                return Ok(Err(Rejection::new(
                    RejectReason::CapacityUnavailable,
                    format!(
                        "{what}: running leases and this one need {need}, the cluster offers {max}"
                    ),
                )));
            }
        }
        Ok(Ok(()))
    }

    /// The stored manifest, or one downloaded from the lease's URI (then stored).
    async fn manifest_bytes(&mut self, view: &LeaseView) -> Result<Option<Vec<u8>>, PassError> {
        if let Some(m) = self.store.manifest(view.id).await? {
            return Ok(Some(m.bytes));
        }
        let uri = self.known.get(&view.id).cloned().unwrap_or_default();
        if uri.is_empty() {
            return Ok(None);
        }
        if let Some(task) = self.downloads.get(&view.id) {
            if !task.is_finished() {
                return Ok(None);
            }
            let result = match self.downloads.remove(&view.id) {
                Some(task) => task
                    .await
                    .unwrap_or_else(|e| Err(format!("download task: {e}"))),
                None => return Ok(None),
            };
            return match result {
                Ok(bytes) => {
                    self.store
                        .put_manifest(view.id, &bytes, view.manifest_hash, &uri, None)
                        .await?;
                    Ok(Some(bytes))
                }
                Err(e) => {
                    tracing::warn!(lease = %view.id, uri = %uri.escape_debug(), error = %e, "manifest download failed");
                    self.download_retry
                        .insert(view.id, Instant::now() + DOWNLOAD_RETRY);
                    Ok(None)
                }
            };
        }
        if self
            .download_retry
            .get(&view.id)
            .is_some_and(|at| Instant::now() < *at)
        {
            return Ok(None);
        }
        // In a task of its own, bounded in time and size: a server that never answers, or
        // trickles, holds up only this lease.
        let (http, limit) = (self.http.clone(), self.settings.download_timeout);
        let task = tokio::spawn(async move {
            tokio::time::timeout(limit, download(&http, &uri))
                .await
                .unwrap_or_else(|_| Err(format!("no complete answer within {} s", limit.as_secs())))
        });
        self.downloads.insert(view.id, task);
        Ok(None)
    }

    /// Probes every public port: an HTTP answer (any status) or an accepted TCP connection.
    async fn ready(&self, manifest: &Manifest, ports: &crate::render::PortMap) -> bool {
        for (name, s) in &manifest.services {
            for p in &s.ports {
                let Some(public) = ports.get(&(name.clone(), p.port)) else {
                    continue;
                };
                let addr = format!("{}:{public}", self.settings.public_host);
                let ok = match p.expose {
                    crate::manifest::Expose::Http => self
                        .http
                        .get(format!("http://{addr}/"))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok(),
                    crate::manifest::Expose::Tcp => tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(&addr),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok()),
                    crate::manifest::Expose::None => true,
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }

    /// Re-reads the lease at the latest block; true when it is still pending.
    async fn still_pending(&self, id: U256) -> Result<bool, PassError> {
        Ok(self.chain.lease(id, BlockId::latest()).await?.status == LeaseStatus::Pending)
    }

    async fn confirm(&mut self, view: &LeaseView, endpoint: String) -> Result<(), PassError> {
        if !self.still_pending(view.id).await? {
            return Ok(());
        }
        let input = LeaseEscrow::confirmLeaseCall {
            leaseId: view.id,
            endpoint: endpoint.clone(),
        }
        .abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: view.id,
                action: "confirm",
                detail: endpoint.clone(),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.confirmed();
            tracing::info!(lease = %view.id, %endpoint, %tx, "lease confirmed");
        }
        Ok(())
    }

    /// Rejects on chain (a full refund for the tenant) and removes anything deployed.
    async fn reject(&mut self, view: &LeaseView, r: Rejection) -> Result<(), PassError> {
        if !self.still_pending(view.id).await? {
            return Ok(());
        }
        self.abandon(view.id);
        self.engine.delete(&self.key(view.id)).await?;
        let reason_name = serde_json::to_value(r.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let input = LeaseEscrow::rejectLeaseCall {
            leaseId: view.id,
            reason: r.reason as u8,
        }
        .abi_encode();
        let outcome = self
            .signer
            .submit(TxJob {
                lease: view.id,
                action: "reject",
                detail: format!("{reason_name}: {}", r.rule),
                to: self.chain.escrow(),
                input: input.into(),
            })
            .await?;
        if let TxOutcome::Sent(tx) = outcome {
            self.metrics.rejected(&reason_name);
            tracing::warn!(lease = %view.id, reason = %reason_name, rule = %r.rule, %tx, "lease rejected");
        }
        Ok(())
    }
}

/// Leases whose workloads must go: ended on chain, or unknown to the chain at the confirmed
/// depth although labelled for this escrow.
fn is_ended(status: LeaseStatus) -> bool {
    !matches!(status, LeaseStatus::Pending | LeaseStatus::Active)
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

/// Downloads at most [`MAX_MANIFEST_BYTES`] + 1 bytes from an `http(s)` URI (one more than
/// allowed, so an oversized manifest is seen as such and rejected).
async fn download(http: &reqwest::Client, uri: &str) -> Result<Vec<u8>, String> {
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err("only http and https manifest URIs are supported".into());
    }
    let mut resp = http.get(uri).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        let room = MAX_MANIFEST_BYTES + 1 - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() > MAX_MANIFEST_BYTES {
            break;
        }
    }
    Ok(bytes)
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
