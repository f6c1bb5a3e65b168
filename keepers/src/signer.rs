//! The one task that signs and sends the keeper's transactions: it owns the nonce, records
//! every transaction before broadcasting it, and checks a transaction that may already be
//! mined before it sends another for the same lease and action.

use alloy::{
    eips::Encodable2718,
    network::{Ethereum, EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    chain::ChainError,
    store::{Store, StoreError},
};

/// How often transactions still marked sent are checked for a receipt.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most transactions checked in one sweep.
const SWEEP_BATCH: i64 = 200;

/// A transaction the reconciler wants sent.
#[derive(Debug, Clone)]
pub struct TxJob {
    /// The lease it acts on.
    pub lease: U256,
    /// `confirm`, `reject`, ...
    pub action: &'static str,
    /// Human-readable detail recorded with it (endpoint, reason).
    pub detail: String,
    /// Target contract.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
}

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// Broadcast now.
    Sent(B256),
    /// An earlier transaction for the same lease and action is still pending: nothing sent.
    InFlight(B256),
    /// An earlier transaction for the same lease and action was mined: nothing sent.
    AlreadyMined(B256),
}

/// Why a job failed; the reconciler retries on its next pass.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The node refused (a revert at gas estimation: the transaction would fail) or could
    /// not be reached.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The transaction could not be signed.
    #[error("signing: {0}")]
    Signing(#[source] alloy::network::TransactionBuilderError<Ethereum>),
    /// The keeper's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signer task is gone.
    #[error("signer task stopped")]
    Stopped,
}

impl SignerError {
    /// Whether the node said the transaction would revert (sending it again unchanged will
    /// fail again until the chain's state changes).
    pub fn is_revert(&self) -> bool {
        matches!(self, Self::Chain(e) if e.is_revert())
    }
}

fn rpc(what: &'static str, e: alloy::transports::TransportError) -> SignerError {
    SignerError::Chain(ChainError::transport(what, e))
}

/// Handle to the signer task.
#[derive(Debug, Clone)]
pub struct Signer {
    jobs: mpsc::Sender<(TxJob, oneshot::Sender<Result<TxOutcome, SignerError>>)>,
    address: Address,
}

impl Signer {
    /// Starts the signer task for `wallet` on `provider`, recording into `store`.
    pub fn spawn(
        provider: DynProvider,
        wallet: EthereumWallet,
        chain_id: u64,
        store: Store,
    ) -> Self {
        let address = alloy::network::NetworkWallet::<Ethereum>::default_signer_address(&wallet);
        let (jobs, rx) = mpsc::channel(64);
        let task = SignerTask {
            provider,
            wallet,
            chain_id,
            store,
            address,
            nonce: None,
        };
        tokio::spawn(task.run(rx));
        Self { jobs, address }
    }

    /// The operator address transactions come from.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Sends `job` unless a transaction for the same lease and action is pending or mined.
    pub async fn submit(&self, job: TxJob) -> Result<TxOutcome, SignerError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((job, tx))
            .await
            .map_err(|_| SignerError::Stopped)?;
        rx.await.map_err(|_| SignerError::Stopped)?
    }
}

struct SignerTask {
    provider: DynProvider,
    wallet: EthereumWallet,
    chain_id: u64,
    store: Store,
    address: Address,
    nonce: Option<u64>,
}

impl SignerTask {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(TxJob, oneshot::Sender<Result<TxOutcome, SignerError>>)>,
    ) {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (job, reply) = tokio::select! {
                next = rx.recv() => match next {
                    Some(next) => next,
                    None => return,
                },
                _ = sweep.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::debug!(error = %e, "settling sent transactions failed; next sweep retries");
                    }
                    continue;
                }
            };
            let result = self.handle(&job).await;
            if let Err(e) = &result {
                tracing::warn!(lease = %job.lease, action = job.action, error = %e, "transaction not sent");
                // The next job starts from the chain's view of the nonce.
                self.nonce = None;
            }
            let _ = reply.send(result);
        }
    }

    async fn handle(&mut self, job: &TxJob) -> Result<TxOutcome, SignerError> {
        if let Some(outcome) = self.earlier(job).await? {
            return Ok(outcome);
        }
        let nonce = match self.nonce {
            Some(n) => n,
            None => self
                .provider
                .get_transaction_count(self.address)
                .pending()
                .await
                .map_err(|e| rpc("eth_getTransactionCount", e))?,
        };
        let request = TransactionRequest::default()
            .with_from(self.address)
            .with_to(job.to)
            .with_input(job.input.clone());
        let gas = self
            .provider
            .estimate_gas(request.clone())
            // Against the pending block: a report may end after the latest block's time.
            .block(alloy::eips::BlockId::pending())
            .await
            .map_err(|e| rpc("eth_estimateGas", e))?;
        let fees = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(|e| rpc("fees", e))?;
        let request = request
            .with_nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas.saturating_mul(6) / 5)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = <TransactionRequest as NetworkTransactionBuilder<Ethereum>>::build(
            request,
            &self.wallet,
        )
        .await
        .map_err(SignerError::Signing)?;
        let hash = *envelope.tx_hash();
        // Recorded before it leaves: a crash after broadcasting cannot lose the hash.
        let id = self
            .store
            .record_tx(job.lease, job.action, &job.detail, hash, nonce)
            .await?;
        match self
            .provider
            .send_raw_transaction(&envelope.encoded_2718())
            .await
        {
            Ok(_) => {
                self.nonce = Some(nonce + 1);
                tracing::info!(lease = %job.lease, action = job.action, detail = %job.detail, tx = %hash, nonce, "transaction sent");
                Ok(TxOutcome::Sent(hash))
            }
            Err(e) => {
                // It may still have reached the node; only a later check can tell.
                if self
                    .provider
                    .get_transaction_by_hash(hash)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    self.nonce = Some(nonce + 1);
                    return Ok(TxOutcome::Sent(hash));
                }
                self.store.settle_tx(id, "dropped").await?;
                Err(rpc("eth_sendRawTransaction", e))
            }
        }
    }

    /// Records the outcome of up to [`SWEEP_BATCH`] transactions still marked sent: mined or
    /// reverted once a receipt exists; left alone while the node knows them as pending.
    async fn sweep(&mut self) -> Result<(), SignerError> {
        for open in self.store.unsettled_txs(SWEEP_BATCH).await? {
            let receipt = self
                .provider
                .get_transaction_receipt(open.hash)
                .await
                .map_err(|e| rpc("eth_getTransactionReceipt", e))?;
            if let Some(r) = receipt {
                let state = if r.status() { "mined" } else { "reverted" };
                self.store.settle_tx(open.id, state).await?;
            }
        }
        Ok(())
    }

    /// Looks at unsettled transactions for the same lease and action.
    async fn earlier(&mut self, job: &TxJob) -> Result<Option<TxOutcome>, SignerError> {
        for open in self.store.open_txs(job.lease, job.action).await? {
            let receipt = self
                .provider
                .get_transaction_receipt(open.hash)
                .await
                .map_err(|e| rpc("eth_getTransactionReceipt", e))?;
            if let Some(r) = receipt {
                let mined = r.status();
                self.store
                    .settle_tx(open.id, if mined { "mined" } else { "reverted" })
                    .await?;
                if mined {
                    return Ok(Some(TxOutcome::AlreadyMined(open.hash)));
                }
                continue;
            }
            let pending = self
                .provider
                .get_transaction_by_hash(open.hash)
                .await
                .map_err(|e| rpc("eth_getTransactionByHash", e))?;
            if pending.is_some() {
                return Ok(Some(TxOutcome::InFlight(open.hash)));
            }
            // Unknown to the node and not mined: it was dropped (its nonce may be reused).
            self.store.settle_tx(open.id, "dropped").await?;
            self.nonce = None;
        }
        Ok(None)
    }
}
