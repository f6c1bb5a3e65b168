//! What the keeper reads from the chain: this provider's leases (found through their
//! `LeaseOpened` logs), each lease's state at a chosen block, and the escrow's settings.

use std::{collections::BTreeMap, time::Duration};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{client::RpcClient, types::Filter},
    sol_types::SolEvent,
    transports::http::{Http, reqwest},
};
use berth_bindings::{Deployment, LeaseEscrow, LeaseStatus};

use crate::manifest::policy::Reservation;

/// A chain read that failed; never a reason to tear anything down.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC endpoint failed or answered something unexpected.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The RPC URL does not parse.
    #[error("bad rpc url `{0}`")]
    Url(String),
}

impl ChainError {
    fn rpc(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Rpc(format!("{what}: {e}"))
    }
}

/// An HTTP provider whose every request is bounded by `timeout`.
pub fn http_provider(url: &str, timeout: Duration) -> Result<DynProvider, ChainError> {
    let parsed = url.parse().map_err(|_| ChainError::Url(url.to_owned()))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| ChainError::rpc("http client", e))?;
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
    /// Opening time (unix seconds).
    pub created_at: u64,
    /// Unearned deposit.
    pub balance: U256,
    /// keccak256 of the manifest.
    pub manifest_hash: B256,
    /// Endpoint set at confirmation.
    pub endpoint: String,
    /// Sequence of the last accepted report.
    pub report_count: u32,
    /// End of the last reported period (billing starts at confirmation).
    pub billed_until: u64,
    /// End of billable time once closed or terminated (0 before).
    pub closed_at: u64,
}

/// The escrow's timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowSettings {
    /// Seconds a lease may stay pending before its tenant can cancel.
    pub accept_timeout: u64,
    /// Runway below which the provider may terminate.
    pub min_runway: u64,
    /// Seconds after closing in which the final report is accepted.
    pub final_report_window: u64,
}

/// Reads of one deployment for one provider.
#[derive(Debug, Clone)]
pub struct ChainReader {
    provider: DynProvider,
    escrow: Address,
    start_block: u64,
    provider_id: U256,
}

impl ChainReader {
    /// A reader of `deployment` for `provider_id` through `provider`.
    pub fn new(provider: DynProvider, deployment: &Deployment, provider_id: u32) -> Self {
        Self {
            provider,
            escrow: deployment.lease_escrow,
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
            .map_err(|e| ChainError::rpc("eth_blockNumber", e))
    }

    /// The latest block's timestamp.
    pub async fn now(&self) -> Result<u64, ChainError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| ChainError::rpc("eth_getBlockByNumber", e))?
            .ok_or_else(|| ChainError::Rpc("no latest block".into()))?;
        Ok(block.header.timestamp)
    }

    /// The escrow's settings.
    pub async fn settings(&self) -> Result<EscrowSettings, ChainError> {
        let escrow = LeaseEscrow::new(self.escrow, &self.provider);
        let accept = escrow
            .acceptTimeout()
            .call()
            .await
            .map_err(|e| ChainError::rpc("acceptTimeout", e))?;
        let runway = escrow
            .minRunway()
            .call()
            .await
            .map_err(|e| ChainError::rpc("minRunway", e))?;
        let window = escrow
            .finalReportWindow()
            .call()
            .await
            .map_err(|e| ChainError::rpc("finalReportWindow", e))?;
        Ok(EscrowSettings {
            accept_timeout: accept.saturating_to(),
            min_runway: runway.saturating_to(),
            final_report_window: window.saturating_to(),
        })
    }

    /// This provider's leases opened in blocks `from..=to`, with their manifest URIs.
    pub async fn opened(&self, from: u64, to: u64) -> Result<BTreeMap<U256, String>, ChainError> {
        let mut found = BTreeMap::new();
        if from > to {
            return Ok(found);
        }
        let filter = Filter::new()
            .address(self.escrow)
            .event_signature(LeaseEscrow::LeaseOpened::SIGNATURE_HASH)
            .topic2(B256::from(self.provider_id))
            .from_block(from.max(self.start_block))
            .to_block(to);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ChainError::rpc("eth_getLogs", e))?;
        for log in logs {
            let ev = LeaseEscrow::LeaseOpened::decode_log(&log.inner)
                .map_err(|e| ChainError::rpc("decoding LeaseOpened", e))?;
            found.insert(ev.data.leaseId, ev.data.manifestUri.clone());
        }
        Ok(found)
    }

    /// The first block to scan for this provider's leases.
    pub fn start_block(&self) -> u64 {
        self.start_block
    }

    /// A lease's state at `block`.
    pub async fn lease(&self, id: U256, block: BlockId) -> Result<LeaseView, ChainError> {
        let escrow = LeaseEscrow::new(self.escrow, &self.provider);
        let l = escrow
            .getLease(id)
            .block(block)
            .call()
            .await
            .map_err(|e| ChainError::rpc("getLease", e))?;
        Ok(LeaseView {
            id,
            provider_id: l.providerId,
            status: LeaseStatus::from_u8(l.status).ok_or_else(|| {
                ChainError::Rpc(format!("lease {id} has unknown status {}", l.status))
            })?,
            tenant: l.tenant,
            reservation: Reservation {
                cpu_millis: l.cpuMillis,
                memory_mib: l.memoryMiB,
                storage_gib: l.storageGiB,
            },
            created_at: l.createdAt.to::<u64>(),
            balance: U256::from(l.balance),
            manifest_hash: l.manifestHash,
            endpoint: l.endpoint,
            report_count: l.reportCount,
            billed_until: l.billedUntil.to::<u64>(),
            closed_at: l.closedAt.to::<u64>(),
        })
    }

    /// Unix time at which the lease's balance runs out at its maximum rate.
    pub async fn depletion_time(&self, id: U256) -> Result<u64, ChainError> {
        let escrow = LeaseEscrow::new(self.escrow, &self.provider);
        let t = escrow
            .depletionTimeOf(id)
            .call()
            .await
            .map_err(|e| ChainError::rpc("depletionTimeOf", e))?;
        Ok(t.saturating_to())
    }

    /// Matured charges of a lease not yet claimed.
    pub async fn claimable(&self, id: U256) -> Result<U256, ChainError> {
        LeaseEscrow::new(self.escrow, &self.provider)
            .claimableOf(id)
            .call()
            .await
            .map_err(|e| ChainError::rpc("claimableOf", e))
    }

    /// Charges of a lease still inside their challenge window.
    pub async fn pending_charges(&self, id: U256) -> Result<U256, ChainError> {
        LeaseEscrow::new(self.escrow, &self.provider)
            .pendingOf(id)
            .call()
            .await
            .map_err(|e| ChainError::rpc("pendingOf", e))
    }

    /// Whether `signer` has code (a contract wallet, checked with ERC-1271).
    pub async fn has_code(&self, account: Address) -> Result<bool, ChainError> {
        let code = self
            .provider
            .get_code_at(account)
            .await
            .map_err(|e| ChainError::rpc("eth_getCode", e))?;
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
                Err(ChainError::rpc("isValidSignature", e))
            }
            Err(_) => Ok(false),
        }
    }
}
