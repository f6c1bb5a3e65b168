//! What the keeper reads from the chain: this provider's leases (found through their
//! `LeaseOpened` logs), each lease's state at a chosen block, and the escrow's settings.

use std::{collections::BTreeMap, time::Duration};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{
        client::{BatchRequest, RpcClient},
        types::{Filter, TransactionRequest},
    },
    sol_types::{SolCall, SolEvent},
    transports::{
        TransportError,
        http::{Http, reqwest},
    },
};
use berth_bindings::{Deployment, LeaseEscrow, LeaseStatus, ProviderRegistry};

use berth_protocol::manifest::policy::Reservation;

/// A chain read that failed; never a reason to tear anything down. A revert (the node ran the
/// call and it failed) is told apart from an outage (the request did not get an answer).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node ran the call and it reverted (with the revert data, when the node gave it).
    #[error("{what} reverted{}", data.as_ref().map(|d| format!(" with {d}")).unwrap_or_default())]
    Reverted {
        /// The call.
        what: &'static str,
        /// ABI-encoded revert reason.
        data: Option<Bytes>,
    },
    /// The request failed: the node is unreachable, timed out or answered an error.
    #[error("{what}: {source}")]
    Transport {
        /// The call.
        what: &'static str,
        /// What the transport said.
        #[source]
        source: TransportError,
    },
    /// The answer did not decode as the ABI says.
    #[error("{what}: undecodable answer: {source}")]
    Decode {
        /// The call.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: alloy::sol_types::Error,
    },
    /// The node answered something the escrow cannot have meant.
    #[error("{0}")]
    Unexpected(String),
    /// The RPC URL does not parse.
    #[error("bad rpc url `{0}`")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ChainError {
    /// Classifies a transport error: a revert or an outage.
    pub fn transport(what: &'static str, source: TransportError) -> Self {
        if let Some(resp) = source.as_error_resp()
            && (resp.code == 3 || resp.message.contains("revert"))
        {
            return Self::Reverted {
                what,
                data: resp.as_revert_data(),
            };
        }
        Self::Transport { what, source }
    }

    /// Classifies a contract call's error.
    pub fn call(what: &'static str, e: alloy::contract::Error) -> Self {
        match e {
            alloy::contract::Error::TransportError(t) => Self::transport(what, t),
            other => Self::Unexpected(format!("{what}: {other}")),
        }
    }

    /// Whether the node ran the call and it reverted (retrying the same call will not help
    /// until the state changes).
    pub fn is_revert(&self) -> bool {
        matches!(self, Self::Reverted { .. })
    }
}

/// An HTTP provider whose every request is bounded by `timeout`.
pub fn http_provider(url: &str, timeout: Duration) -> Result<DynProvider, ChainError> {
    let parsed = url.parse().map_err(|_| ChainError::Url(url.to_owned()))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(ChainError::Client)?;
    let http = Http::with_client(client, parsed);
    let is_local = http.guess_local();
    let rpc = RpcClient::new(http, is_local);
    Ok(ProviderBuilder::new().connect_client(rpc).erased())
}

/// A lease as the keeper needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Lease id.
    pub id: U256,
    /// Provider id.
    pub provider_id: u32,
    /// Status.
    pub status: LeaseStatus,
    /// Tenant.
    pub tenant: Address,
    /// Reservation.
    pub reservation: Reservation,
    /// Opening time while pending (unix seconds; 0 once confirmed).
    pub created_at: u64,
    /// Unearned deposit.
    pub balance: U256,
    /// Version of the manifest the lease is committed to (0: the one it opened with).
    pub manifest_version: u32,
    /// keccak256 of that manifest (from the lease's events; zero until they are read).
    pub manifest_hash: B256,
    /// Where the keeper may download it (empty: uploaded to the gateway).
    pub manifest_uri: String,
    /// Endpoint set at confirmation (from `LeaseConfirmed`; empty until read).
    pub endpoint: String,
    /// Sequence of the last accepted report.
    pub report_count: u32,
    /// End of the last reported period (billing starts at confirmation).
    pub billed_until: u64,
    /// End of billable time once closed or terminated (0 before).
    pub closed_at: u64,
    /// Start of the last suspension (0 if never suspended).
    pub suspended_at: u64,
    /// End of the last suspension (0 while suspended or never suspended).
    pub resumed_at: u64,
    /// When the balance runs out at the maximum rate.
    pub depletion_time: u64,
}

impl LeaseView {
    /// Seconds of `[from, to)` the workload was allowed to run: outside the last suspension.
    pub fn running_seconds(&self, from: u64, to: u64) -> u64 {
        berth_protocol::metering::running_seconds(from, to, self.suspended_at, self.resumed_at)
    }
}

/// A manifest a lease committed to, from `LeaseOpened` (version 0) or `ManifestUpdated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    /// keccak256 of the bytes.
    pub hash: B256,
    /// Download URI (empty: uploaded to the gateway).
    pub uri: String,
}

/// A tenant's auto top-up policy, from `AutoTopUpSet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoTopUpPolicy {
    /// Unix time after which it no longer applies.
    pub expires_at: u64,
    /// Runway (seconds) below which a top-up may be triggered.
    pub trigger_runway: u64,
}

/// What the events say about one lease that its storage does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Manifests by version.
    pub manifests: BTreeMap<u32, ManifestRef>,
    /// Endpoint from `LeaseConfirmed`.
    pub endpoint: String,
    /// The current auto top-up policy, if any.
    pub auto_top_up: Option<AutoTopUpPolicy>,
}

impl LeaseInfo {
    /// Fills the view's manifest and endpoint from these events.
    pub fn fill(&self, view: &mut LeaseView) {
        if let Some(m) = self.manifests.get(&view.manifest_version) {
            view.manifest_hash = m.hash;
            view.manifest_uri = m.uri.clone();
        }
        if view.endpoint.is_empty() {
            view.endpoint = self.endpoint.clone();
        }
    }
}

/// The escrow's timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowSettings {
    /// Seconds a lease may stay pending before its tenant can cancel.
    pub accept_timeout: u64,
    /// Runway below which the provider may suspend.
    pub min_runway: u64,
    /// Seconds a suspended lease has before it may be terminated.
    pub grace_period: u64,
    /// Seconds after closing in which the final report is accepted.
    pub final_report_window: u64,
}

/// Reads of one deployment for one provider.
#[derive(Debug, Clone)]
pub struct ChainReader {
    provider: DynProvider,
    escrow: Address,
    registry: Address,
    start_block: u64,
    provider_id: U256,
}

impl ChainReader {
    /// A reader of `deployment` for `provider_id` through `provider`.
    pub fn new(provider: DynProvider, deployment: &Deployment, provider_id: u32) -> Self {
        Self {
            provider,
            escrow: deployment.lease_escrow,
            registry: deployment.provider_registry,
            start_block: deployment.start_block,
            provider_id: U256::from(provider_id),
        }
    }

    /// The RPC provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The escrow address.
    pub fn escrow(&self) -> Address {
        self.escrow
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.provider
            .get_block_number()
            .await
            .map_err(|e| ChainError::transport("eth_blockNumber", e))
    }

    /// The latest block's timestamp.
    pub async fn now(&self) -> Result<u64, ChainError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| ChainError::transport("eth_getBlockByNumber", e))?
            .ok_or_else(|| ChainError::Unexpected("the node has no latest block".into()))?;
        Ok(block.header.timestamp)
    }

    /// The escrow's settings.
    pub async fn settings(&self) -> Result<EscrowSettings, ChainError> {
        let escrow = LeaseEscrow::new(self.escrow, &self.provider);
        let accept = escrow
            .acceptTimeout()
            .call()
            .await
            .map_err(|e| ChainError::call("acceptTimeout", e))?;
        let runway = escrow
            .minRunway()
            .call()
            .await
            .map_err(|e| ChainError::call("minRunway", e))?;
        let grace = escrow
            .gracePeriod()
            .call()
            .await
            .map_err(|e| ChainError::call("gracePeriod", e))?;
        let window = escrow
            .finalReportWindow()
            .call()
            .await
            .map_err(|e| ChainError::call("finalReportWindow", e))?;
        Ok(EscrowSettings {
            accept_timeout: accept.saturating_to(),
            min_runway: runway.saturating_to(),
            grace_period: grace.saturating_to(),
            final_report_window: window.saturating_to(),
        })
    }

    /// What this provider's lease events in blocks `from..=to` say: leases opened, manifests
    /// committed to, endpoints confirmed, auto top-up policies set or cleared. Merged into
    /// `known`, one entry per lease.
    pub async fn scan(
        &self,
        from: u64,
        to: u64,
        known: &mut BTreeMap<U256, LeaseInfo>,
    ) -> Result<(), ChainError> {
        if from > to {
            return Ok(());
        }
        let filter = Filter::new()
            .address(self.escrow)
            .event_signature(vec![
                LeaseEscrow::LeaseOpened::SIGNATURE_HASH,
                LeaseEscrow::ManifestUpdated::SIGNATURE_HASH,
                LeaseEscrow::LeaseConfirmed::SIGNATURE_HASH,
                LeaseEscrow::AutoTopUpSet::SIGNATURE_HASH,
                LeaseEscrow::AutoTopUpCleared::SIGNATURE_HASH,
            ])
            .topic2(B256::from(self.provider_id))
            .from_block(from.max(self.start_block))
            .to_block(to);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ChainError::transport("eth_getLogs", e))?;
        for log in logs {
            apply_event(&log.inner, known)?;
        }
        Ok(())
    }

    /// The events of one lease, read whole (the gateway's view of a lease it has not scanned).
    pub async fn lease_info(&self, id: U256) -> Result<LeaseInfo, ChainError> {
        let filter = Filter::new()
            .address(self.escrow)
            .event_signature(vec![
                LeaseEscrow::LeaseOpened::SIGNATURE_HASH,
                LeaseEscrow::ManifestUpdated::SIGNATURE_HASH,
                LeaseEscrow::LeaseConfirmed::SIGNATURE_HASH,
            ])
            .topic1(B256::from(id))
            .from_block(self.start_block);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ChainError::transport("eth_getLogs", e))?;
        let mut known = BTreeMap::new();
        for log in logs {
            apply_event(&log.inner, &mut known)?;
        }
        Ok(known.remove(&id).unwrap_or_default())
    }

    /// What `autoTopUp` would pull for a lease now (0: not due).
    pub async fn auto_top_up_due(&self, id: U256) -> Result<U256, ChainError> {
        LeaseEscrow::new(self.escrow, &self.provider)
            .autoTopUpDue(id)
            .call()
            .await
            .map_err(|e| ChainError::call("autoTopUpDue", e))
    }

    /// The first block to scan for this provider's leases.
    pub fn start_block(&self) -> u64 {
        self.start_block
    }

    /// A lease's state at `block`.
    pub async fn lease(&self, id: U256, block: BlockId) -> Result<LeaseView, ChainError> {
        let l = LeaseEscrow::new(self.escrow, &self.provider)
            .getLease(id)
            .block(block)
            .call()
            .await
            .map_err(|e| ChainError::call("getLease", e))?;
        view_of(id, &l)
    }

    /// The state of each lease in `ids` at `block`, in order, read in JSON-RPC batches (one
    /// HTTP request per [`BATCH_CALLS`] leases). One lease's failed read stays with that
    /// lease; a batch that gets no answer fails as a whole.
    pub async fn leases(
        &self,
        ids: &[U256],
        block: BlockId,
    ) -> Result<Vec<(U256, Result<LeaseView, ChainError>)>, ChainError> {
        let calls = ids
            .iter()
            .map(|id| (*id, LeaseEscrow::getLeaseCall { leaseId: *id }));
        let answers = self.batch_call("getLease", calls, block).await?;
        Ok(answers
            .into_iter()
            .map(|(id, r)| (id, r.and_then(|l| view_of(id, &l))))
            .collect())
    }

    /// Runs `calls` against the escrow at `block` as `eth_call`s in JSON-RPC batches of
    /// [`BATCH_CALLS`]; each answer (or its own error) comes back with its key, in order.
    pub async fn batch_call<K, C: SolCall>(
        &self,
        what: &'static str,
        calls: impl IntoIterator<Item = (K, C)>,
        block: BlockId,
    ) -> Result<Vec<(K, Result<C::Return, ChainError>)>, ChainError> {
        let mut calls = calls.into_iter().peekable();
        let mut out = Vec::new();
        while calls.peek().is_some() {
            let mut batch = BatchRequest::new(self.provider.client());
            let mut waiters = Vec::new();
            for (key, call) in calls.by_ref().take(BATCH_CALLS) {
                let request = TransactionRequest::default()
                    .to(self.escrow)
                    .input(Bytes::from(call.abi_encode()).into());
                let waiter = batch
                    .add_call::<_, Bytes>("eth_call", &(request, block))
                    .map_err(|e| ChainError::transport(what, e))?;
                waiters.push((key, waiter));
            }
            batch
                .send()
                .await
                .map_err(|e| ChainError::transport(what, e))?;
            for (key, waiter) in waiters {
                let answer = match waiter.await {
                    Ok(data) => C::abi_decode_returns(&data)
                        .map_err(|source| ChainError::Decode { what, source }),
                    Err(e) => Err(ChainError::transport(what, e)),
                };
                out.push((key, answer));
            }
        }
        Ok(out)
    }

    /// Unix time at which the lease's balance runs out at its maximum rate.
    pub async fn depletion_time(&self, id: U256) -> Result<u64, ChainError> {
        let escrow = LeaseEscrow::new(self.escrow, &self.provider);
        let t = escrow
            .depletionTimeOf(id)
            .call()
            .await
            .map_err(|e| ChainError::call("depletionTimeOf", e))?;
        Ok(t.saturating_to())
    }

    /// The provider's X25519 public key in the registry and its version (0: never set).
    pub async fn encryption_key(&self) -> Result<(B256, u32), ChainError> {
        let key = ProviderRegistry::new(self.registry, &self.provider)
            .encryptionKeyOf(self.provider_id)
            .call()
            .await
            .map_err(|e| ChainError::call("encryptionKeyOf", e))?;
        Ok((key.publicKey, key.version))
    }

    /// Matured charges of a lease not yet claimed.
    pub async fn claimable(&self, id: U256) -> Result<U256, ChainError> {
        LeaseEscrow::new(self.escrow, &self.provider)
            .claimableOf(id)
            .call()
            .await
            .map_err(|e| ChainError::call("claimableOf", e))
    }

    /// Charges of a lease still inside their challenge window.
    pub async fn pending_charges(&self, id: U256) -> Result<U256, ChainError> {
        LeaseEscrow::new(self.escrow, &self.provider)
            .pendingOf(id)
            .call()
            .await
            .map_err(|e| ChainError::call("pendingOf", e))
    }

    /// Whether `signer` has code (a contract wallet, checked with ERC-1271).
    pub async fn has_code(&self, account: Address) -> Result<bool, ChainError> {
        let code = self
            .provider
            .get_code_at(account)
            .await
            .map_err(|e| ChainError::transport("eth_getCode", e))?;
        Ok(!code.is_empty())
    }

    /// ERC-1271: whether contract wallet `account` accepts `signature` over `digest`.
    pub async fn erc1271_valid(
        &self,
        account: Address,
        digest: B256,
        signature: Bytes,
    ) -> Result<bool, ChainError> {
        alloy::sol! {
            #[sol(rpc)]
            interface IERC1271 {
                function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
            }
        }
        let wallet = IERC1271::new(account, &self.provider);
        match wallet.isValidSignature(digest, signature).call().await {
            Ok(magic) => Ok(magic.0 == [0x16, 0x26, 0xba, 0x7e]),
            // A revert means "not valid"; a transport failure is an error.
            Err(alloy::contract::Error::TransportError(e)) if !e.is_error_resp() => {
                Err(ChainError::transport("isValidSignature", e))
            }
            Err(_) => Ok(false),
        }
    }
}

/// Most calls in one JSON-RPC batch.
pub const BATCH_CALLS: usize = 500;

/// The keeper's view of a lease from the escrow's `getLease` answer.
fn view_of(
    id: U256,
    l: &<LeaseEscrow::getLeaseCall as SolCall>::Return,
) -> Result<LeaseView, ChainError> {
    Ok(LeaseView {
        id,
        provider_id: l.providerId,
        status: LeaseStatus::from_u8(l.status).ok_or_else(|| {
            ChainError::Unexpected(format!("lease {id} has unknown status {}", l.status))
        })?,
        tenant: l.tenant,
        reservation: Reservation {
            cpu_millis: l.cpuMillis,
            memory_mib: l.memoryMiB,
            storage_gib: l.storageGiB,
        },
        created_at: l.createdAt.to::<u64>(),
        balance: l.balance,
        manifest_version: l.manifestVersion,
        manifest_hash: B256::ZERO,
        manifest_uri: String::new(),
        endpoint: String::new(),
        report_count: l.reportCount,
        billed_until: l.billedUntil.to::<u64>(),
        closed_at: l.closedAt.to::<u64>(),
        suspended_at: l.suspendedAt.to::<u64>(),
        resumed_at: l.resumedAt.to::<u64>(),
        depletion_time: l.depletionTime.saturating_to(),
    })
}

/// Folds one lease event into `known`.
fn apply_event(
    log: &alloy::primitives::Log,
    known: &mut BTreeMap<U256, LeaseInfo>,
) -> Result<(), ChainError> {
    let decode = |source| ChainError::Decode {
        what: "a lease event",
        source,
    };
    match log.topics().first().copied() {
        Some(LeaseEscrow::LeaseOpened::SIGNATURE_HASH) => {
            let ev = LeaseEscrow::LeaseOpened::decode_log(log).map_err(decode)?;
            let info = known.entry(ev.data.leaseId).or_default();
            info.manifests.insert(
                0,
                ManifestRef {
                    hash: ev.data.manifestHash,
                    uri: ev.data.manifestUri.clone(),
                },
            );
        }
        Some(LeaseEscrow::ManifestUpdated::SIGNATURE_HASH) => {
            let ev = LeaseEscrow::ManifestUpdated::decode_log(log).map_err(decode)?;
            let info = known.entry(ev.data.leaseId).or_default();
            info.manifests.insert(
                ev.data.version,
                ManifestRef {
                    hash: ev.data.manifestHash,
                    uri: ev.data.manifestUri.clone(),
                },
            );
        }
        Some(LeaseEscrow::LeaseConfirmed::SIGNATURE_HASH) => {
            let ev = LeaseEscrow::LeaseConfirmed::decode_log(log).map_err(decode)?;
            known.entry(ev.data.leaseId).or_default().endpoint = ev.data.endpoint.clone();
        }
        Some(LeaseEscrow::AutoTopUpSet::SIGNATURE_HASH) => {
            let ev = LeaseEscrow::AutoTopUpSet::decode_log(log).map_err(decode)?;
            known.entry(ev.data.leaseId).or_default().auto_top_up = Some(AutoTopUpPolicy {
                expires_at: ev.data.expiresAt.saturating_to(),
                trigger_runway: ev.data.triggerRunway.saturating_to(),
            });
        }
        Some(LeaseEscrow::AutoTopUpCleared::SIGNATURE_HASH) => {
            let ev = LeaseEscrow::AutoTopUpCleared::decode_log(log).map_err(decode)?;
            known.entry(ev.data.leaseId).or_default().auto_top_up = None;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(suspended_at: u64, resumed_at: u64) -> LeaseView {
        LeaseView {
            id: U256::from(1),
            provider_id: 1,
            status: LeaseStatus::Active,
            tenant: Address::ZERO,
            reservation: Reservation {
                cpu_millis: 1,
                memory_mib: 1,
                storage_gib: 0,
            },
            created_at: 0,
            balance: U256::ZERO,
            manifest_version: 0,
            manifest_hash: B256::ZERO,
            manifest_uri: String::new(),
            endpoint: String::new(),
            report_count: 0,
            billed_until: 0,
            closed_at: 0,
            suspended_at,
            resumed_at,
            depletion_time: 0,
        }
    }

    #[test]
    fn running_seconds_leave_out_the_suspension_as_the_escrow_does() {
        assert_eq!(view(0, 0).running_seconds(100, 200), 100, "never suspended");
        assert_eq!(
            view(150, 0).running_seconds(100, 200),
            50,
            "still suspended"
        );
        assert_eq!(view(120, 180).running_seconds(100, 200), 40, "resumed");
        assert_eq!(
            view(120, 180).running_seconds(200, 300),
            100,
            "after the suspension"
        );
        assert_eq!(
            view(50, 0).running_seconds(100, 200),
            0,
            "suspended throughout"
        );
    }
}
