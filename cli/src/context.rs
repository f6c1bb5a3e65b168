//! What every command starts from: the chain (checked to be the one asked for), the deployment
//! on it, and the user's key when the command sends a transaction.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{
    contract::{CallBuilder, CallDecoder},
    network::EthereumWallet,
    primitives::Address,
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::{client::RpcClient, types::TransactionReceipt},
    signers::local::PrivateKeySigner,
    transports::http::{Http, reqwest},
};
use berth_bindings::{
    Deployment, DeploymentError, LeaseEscrow::LeaseEscrowInstance,
    ProviderRegistry::ProviderRegistryInstance,
};
use eyre::{Result, WrapErr};

use crate::{
    failure::{self, Kind, fail},
    keys,
};

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// JSON-RPC endpoint of the chain.
    #[arg(
        long,
        env = "BERTH_RPC_URL",
        default_value = "http://127.0.0.1:8545",
        global = true
    )]
    pub rpc_url: String,
    /// Refuse to act unless the RPC serves this chain.
    #[arg(long, env = "BERTH_CHAIN_ID", global = true)]
    pub chain_id: Option<u64>,
    /// Deployment file written by `script/Deploy.s.sol` [default: deployments/<chain id>.json].
    #[arg(long, env = "BERTH_DEPLOYMENT", global = true)]
    pub deployment: Option<PathBuf>,
    /// Encrypted JSON keystore of the account that signs; without it the key is read from
    /// BERTH_PRIVATE_KEY.
    #[arg(long, env = "BERTH_KEYSTORE", global = true)]
    pub keystore: Option<PathBuf>,
    /// File holding the keystore's password [default: the BERTH_KEYSTORE_PASSWORD variable;
    /// passwords are never taken from arguments].
    #[arg(long, env = "BERTH_KEYSTORE_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds any single RPC request may take.
    #[arg(long, env = "BERTH_RPC_TIMEOUT_S", default_value_t = 10, global = true)]
    pub rpc_timeout_s: u64,
}

/// A connection to a Berth deployment.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The options it was made from.
    pub global: Global,
    /// Reads.
    pub rpc: DynProvider,
    /// The chain id the RPC serves.
    pub chain_id: u64,
    /// The deployment's addresses and settings.
    pub deployment: Deployment,
}

fn rpc_client(url: &str, timeout: Duration) -> Result<RpcClient> {
    let parsed = url
        .parse()
        .map_err(|_| fail(Kind::Input, format!("--rpc-url `{url}` is not a URL")))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .wrap_err("building the HTTP client")?;
    let http = Http::with_client(client, parsed);
    let local = http.guess_local();
    Ok(RpcClient::new(http, local))
}

impl Ctx {
    /// Connects, checks the chain id and loads the deployment.
    pub async fn connect(global: &Global) -> Result<Self> {
        let timeout = Duration::from_secs(global.rpc_timeout_s.max(1));
        let rpc = ProviderBuilder::new()
            .connect_client(rpc_client(&global.rpc_url, timeout)?)
            .erased();
        let chain_id = rpc
            .get_chain_id()
            .await
            .map_err(|e| failure::transport(&format!("RPC {}", global.rpc_url), &e))?;
        if let Some(expected) = global.chain_id
            && expected != chain_id
        {
            return Err(fail(
                Kind::WrongChain,
                format!(
                    "RPC {} serves chain {chain_id}, not chain {expected} (--chain-id)",
                    global.rpc_url
                ),
            ));
        }
        let path = global
            .deployment
            .clone()
            .unwrap_or_else(|| Path::new("deployments").join(format!("{chain_id}.json")));
        let deployment = Deployment::load_file(&path, Some(chain_id)).map_err(|e| match e {
            DeploymentError::Read { .. } => fail(
                Kind::WrongChain,
                format!(
                    "no Berth deployment known for chain {chain_id}: {} cannot be read (pass --deployment)",
                    path.display()
                ),
            ),
            DeploymentError::WrongChain { .. } => fail(Kind::WrongChain, e.to_string()),
            other => fail(Kind::Input, other.to_string()),
        })?;
        let code = rpc
            .get_code_at(deployment.lease_escrow)
            .await
            .map_err(|e| failure::transport("reading the escrow's code", &e))?;
        if code.is_empty() {
            return Err(fail(
                Kind::WrongChain,
                format!(
                    "chain {chain_id} has no contract at the deployment's LeaseEscrow {} ({})",
                    deployment.lease_escrow,
                    path.display()
                ),
            ));
        }
        Ok(Self {
            global: global.clone(),
            rpc,
            chain_id,
            deployment,
        })
    }

    /// The escrow, for reads.
    pub fn escrow(&self) -> LeaseEscrowInstance<DynProvider> {
        LeaseEscrowInstance::new(self.deployment.lease_escrow, self.rpc.clone())
    }

    /// The registry, for reads.
    pub fn registry(&self) -> ProviderRegistryInstance<DynProvider> {
        ProviderRegistryInstance::new(self.deployment.provider_registry, self.rpc.clone())
    }

    /// The user's key and a provider that signs with it.
    pub fn wallet(&self) -> Result<Wallet> {
        let signer = keys::load(&self.global)?;
        let address = signer.address();
        let timeout = Duration::from_secs(self.global.rpc_timeout_s.max(1));
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_client(rpc_client(&self.global.rpc_url, timeout)?)
            .erased();
        Ok(Wallet {
            provider,
            address,
            signer,
            json: self.global.json,
        })
    }

    /// The latest block's timestamp.
    pub async fn now(&self) -> Result<u64> {
        let block = self
            .rpc
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| failure::transport("reading the latest block", &e))?
            .ok_or_else(|| fail(Kind::Internal, "the RPC has no latest block"))?;
        Ok(block.header.timestamp)
    }
}

/// The account that signs.
#[derive(Debug, Clone)]
pub struct Wallet {
    /// A provider that signs with it.
    pub provider: DynProvider,
    /// Its address.
    pub address: Address,
    /// The key (for typed-data signatures: permits, manifest uploads).
    pub signer: PrivateKeySigner,
    json: bool,
}

/// How long a sent transaction may take to be mined.
const MINING_TIMEOUT: Duration = Duration::from_secs(120);

impl Wallet {
    /// Estimates, pads by `pad_percent` (state can change between the estimate and the mining,
    /// e.g. a keeper freeing capacity makes a slot costlier to fill), sends, and waits for
    /// the receipt; a revert, before or after sending, is [`Kind::Refused`] with its reason.
    pub async fn send<D: CallDecoder>(
        &self,
        call: CallBuilder<&DynProvider, D>,
        what: &str,
        pad_percent: u64,
    ) -> Result<TransactionReceipt> {
        let gas = call
            .estimate_gas()
            .await
            .map_err(|e| failure::contract(what, &e))?;
        let pending = call
            .gas(gas + gas * pad_percent / 100)
            .send()
            .await
            .map_err(|e| failure::contract(what, &e))?;
        let hash = *pending.tx_hash();
        self.progress(&format!("{what}: sent {hash}"));
        let receipt = pending
            .with_timeout(Some(MINING_TIMEOUT))
            .get_receipt()
            .await
            .map_err(|e| {
                fail(
                    Kind::Unreachable,
                    format!("{what}: no receipt for {hash}: {e}"),
                )
            })?;
        if !receipt.status() {
            return Err(fail(
                Kind::Refused,
                format!("{what}: transaction {hash} reverted"),
            ));
        }
        self.progress(&format!(
            "{what}: mined in block {}",
            receipt.block_number.unwrap_or_default()
        ));
        Ok(receipt)
    }

    /// A progress line on stderr (stdout stays the command's result).
    pub fn progress(&self, line: &str) {
        progress(self.json, line);
    }
}

/// A progress line on stderr, unless the output is JSON.
pub fn progress(json: bool, line: &str) {
    if !json {
        eprintln!("  {line}");
    }
}
