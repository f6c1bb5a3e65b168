//! Support for Berth's end-to-end tests: a local chain (anvil from the pinned npm package),
//! the contracts deployed through the generated bindings, and funded actors.

use std::path::{Path, PathBuf};

use alloy::{
    network::EthereumWallet,
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use berth_bindings::{LeaseEscrow, ProviderRegistry, TestToken};
use eyre::{Context, OptionExt, Result, ensure};

pub mod gateway;
pub mod indexer_harness;
pub mod keeper;
pub mod pebble;
pub mod registry;
pub mod rpc_proxy;
pub mod world;

/// The repository root (the workspace that holds `node_modules/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A Foundry tool: `$ANVIL`/`$FORGE`/`$CAST`, or the native binary of the pinned npm package.
pub fn foundry_binary(tool: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(tool.to_uppercase()) {
        return Ok(PathBuf::from(path));
    }
    let bin = repo_root().join("node_modules/.bin").join(tool);
    ensure!(
        bin.exists(),
        "{} is missing: run `npm ci` first",
        bin.display()
    );
    Ok(bin)
}

/// A number no other call in this process returns (temp names, chain ids).
pub fn unique_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A chain id no other test of this run uses: workloads are labelled with the chain id, so
/// tests that share one podman cannot mistake each other's workloads for their own.
fn unique_chain_id() -> u64 {
    1_000_000 + u64::from(std::process::id()) * 1000 + unique_suffix()
}

/// A fresh anvil chain with a chain id of its own; killed when dropped.
#[derive(Debug)]
pub struct Chain {
    anvil: AnvilInstance,
}

impl Chain {
    /// Starts anvil on a free port with instant mining.
    pub fn start() -> Result<Self> {
        // anvil's startup banner carries the port it picked: it must not run with --silent.
        let anvil = Anvil::at(foundry_binary("anvil")?)
            .chain_id(unique_chain_id())
            .timeout(20_000)
            .try_spawn()
            .wrap_err("starting anvil")?;
        Ok(Self { anvil })
    }

    /// The process id of anvil (to freeze it in outage tests).
    pub fn pid(&self) -> u32 {
        self.anvil.child().id()
    }

    /// The HTTP RPC endpoint.
    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// Anvil's `index`-th funded dev account.
    pub fn signer(&self, index: usize) -> Result<PrivateKeySigner> {
        let key = self
            .anvil
            .keys()
            .get(index)
            .ok_or_eyre("anvil has fewer dev accounts")?;
        Ok(PrivateKeySigner::from(key.clone()))
    }

    /// A provider that signs with anvil's `index`-th dev account.
    pub fn wallet(&self, index: usize) -> Result<DynProvider> {
        let signer = self.signer(index)?;
        let url = self.rpc_url().parse().wrap_err("anvil endpoint")?;
        Ok(ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url)
            .erased())
    }

    /// Moves the chain's clock forward by `secs` and mines a block at the new time.
    pub async fn advance(&self, secs: u64) -> Result<()> {
        let p = self.wallet(0)?;
        let _: serde_json::Value = p.raw_request("evm_increaseTime".into(), (secs,)).await?;
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await?;
        Ok(())
    }

    /// The timestamp of the latest block.
    pub async fn now(&self) -> Result<u64> {
        let p = self.wallet(0)?;
        let block = p
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or_eyre("no latest block")?;
        Ok(block.header.timestamp)
    }
}

/// Settings of a test deployment (seconds and base units).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Minimum provider stake.
    pub min_stake: u128,
    /// Provider unbonding delay.
    pub unbonding_delay: u64,
    /// Seconds before a tenant may cancel an unconfirmed lease.
    pub accept_timeout: u64,
    /// Seconds a charge stays disputable.
    pub challenge_window: u64,
    /// Seconds the provider has to report after a close.
    pub final_report_window: u64,
    /// Runway below which a lease may be suspended.
    pub min_runway: u64,
    /// Seconds a suspended lease has before it may be terminated.
    pub grace_period: u64,
    /// Runway a new lease's deposit must cover.
    pub min_open_runway: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_stake: 100_000_000,
            unbonding_delay: 7 * 24 * 3600,
            accept_timeout: 900,
            challenge_window: 3600,
            final_report_window: 600,
            min_runway: 600,
            grace_period: 300,
            min_open_runway: 1200,
        }
    }
}

/// Contracts deployed by [`deploy`].
#[derive(Debug, Clone, Copy)]
pub struct Contracts {
    /// `ProviderRegistry`.
    pub registry: Address,
    /// `LeaseEscrow`.
    pub escrow: Address,
    /// A 6-decimal `TestToken`, allowlisted and used as the stake token too.
    pub token: Address,
    /// The arbiter (anvil account 1).
    pub arbiter: Address,
}

/// Deploys the token, the registry and the escrow through the bindings with anvil account 0
/// as owner and account 1 as arbiter, and binds them together.
pub async fn deploy(chain: &Chain, settings: Settings) -> Result<Contracts> {
    let admin = chain.wallet(0)?;
    let owner = chain.signer(0)?.address();
    let arbiter = chain.signer(1)?.address();
    let token = TestToken::deploy(&admin, "Berth Test USD".into(), "tUSD".into(), 6)
        .await
        .wrap_err("deploying TestToken")?;
    let registry = ProviderRegistry::deploy(
        &admin,
        owner,
        *token.address(),
        U256::from(settings.min_stake),
        U256::from(settings.unbonding_delay),
    )
    .await
    .wrap_err("deploying ProviderRegistry")?;
    let escrow = LeaseEscrow::deploy(
        &admin,
        owner,
        *registry.address(),
        arbiter,
        [
            U256::from(settings.accept_timeout),
            U256::from(settings.challenge_window),
            U256::from(settings.final_report_window),
            U256::from(settings.min_runway),
            U256::from(settings.grace_period),
            U256::from(settings.min_open_runway),
        ],
    )
    .await
    .wrap_err("deploying LeaseEscrow")?;
    let receipt = registry
        .setEscrow(*escrow.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "setEscrow reverted");
    let receipt = registry
        .setPaymentToken(*token.address(), true)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "setPaymentToken reverted");
    Ok(Contracts {
        registry: *registry.address(),
        escrow: *escrow.address(),
        token: *token.address(),
        arbiter,
    })
}

/// Sends a transaction and fails unless it was mined successfully.
pub async fn mined<P, D, N>(call: alloy::contract::CallBuilder<P, D, N>, what: &str) -> Result<()>
where
    P: Provider<N>,
    D: alloy::contract::CallDecoder,
    N: alloy::network::Network,
{
    let receipt = call
        .send()
        .await
        .wrap_err_with(|| format!("sending {what}"))?
        .get_receipt()
        .await?;
    ensure!(
        alloy::network::ReceiptResponse::status(&receipt),
        "{what} reverted"
    );
    Ok(())
}

/// A binary of this workspace, built first if needed (integration tests of another package
/// do not get it built by cargo).
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    let profile_dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .ok_or_eyre("the running binary is not under target/<profile>")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--quiet", "-p", package, "--bin", bin];
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        args.push("--release");
    }
    let status = std::process::Command::new(cargo)
        .args(&args)
        .current_dir(repo_root())
        .status()
        .wrap_err_with(|| format!("running cargo build for {bin}"))?;
    ensure!(status.success(), "building {bin} failed");
    let path = profile_dir.join(bin);
    ensure!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

/// Waits until `child` (a test's server, logging to `log`) accepts TCP on loopback `port`;
/// fails at once with its log if it exits, or after 30 s.
pub async fn wait_listening(
    child: &mut std::process::Child,
    port: u16,
    what: &str,
    log: &Path,
) -> Result<()> {
    let started = std::time::Instant::now();
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = child.try_wait()? {
            eyre::bail!("{what} exited with {status}:\n{}", log_text());
        }
        ensure!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} never listened:\n{}",
            log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// How many logs the indexer has stored: decoded ones in `berth.events`, the rest in
/// `berth.raw_logs`.
pub const LOGS_STORED: &str =
    "SELECT (SELECT COUNT(*) FROM berth.events) + (SELECT COUNT(*) FROM berth.raw_logs)";

/// The `berth-indexer` binary of this build.
pub fn indexer_binary() -> Result<PathBuf> {
    workspace_binary("berth-indexer", "berth-indexer")
}

/// Writes a `deployments/<chainId>.json` for `contracts` into a fresh temp dir; returns its path.
pub fn write_deployment(
    chain: &Chain,
    contracts: &Contracts,
    settings: Settings,
) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "berth-deployment-{}-{}",
        std::process::id(),
        contracts.escrow
    ));
    std::fs::create_dir_all(&dir)?;
    let deployment = berth_bindings::Deployment {
        chain_id: chain.chain_id(),
        start_block: 0,
        provider_registry: contracts.registry,
        lease_escrow: contracts.escrow,
        payment_token: contracts.token,
        stake_token: contracts.token,
        arbiter: contracts.arbiter,
        accept_timeout: settings.accept_timeout,
        challenge_window: settings.challenge_window,
        final_report_window: settings.final_report_window,
        min_runway: settings.min_runway,
        grace_period: settings.grace_period,
        min_open_runway: settings.min_open_runway,
        unbonding_delay: settings.unbonding_delay,
    };
    let path = dir.join(format!("{}.json", chain.chain_id()));
    std::fs::write(&path, serde_json::to_string_pretty(&deployment)?)?;
    Ok(path)
}

/// Registers provider 1 with anvil account 2 as owner and account 3 as operator, no stake,
/// capacity 64 cores / 64 GiB / 100 GiB (room for the 50-lease tests), at `prices` (scaled,
/// see `PRICE_SCALE`).
pub async fn register_provider(chain: &Chain, c: &Contracts, prices: [u128; 4]) -> Result<()> {
    let owner = chain.wallet(2)?;
    mined(
        ProviderRegistry::new(c.registry, &owner).register(
            chain.signer(3)?.address(),
            c.token,
            "http://127.0.0.1:8443".into(),
            "region=local".into(),
            [64_000, 65_536, 100],
            prices,
            U256::ZERO,
        ),
        "register",
    )
    .await
}

/// Mints `amount` to anvil account `tenant` and approves the escrow for everything.
pub async fn fund_tenant(chain: &Chain, c: &Contracts, tenant: usize, amount: U256) -> Result<()> {
    let p = chain.wallet(tenant)?;
    let token = TestToken::new(c.token, &p);
    mined(token.mint(chain.signer(tenant)?.address(), amount), "mint").await?;
    mined(token.approve(c.escrow, U256::MAX), "approve").await
}

/// Opens a lease with provider 1 as anvil account `tenant`: 500 millicores, 512 MiB, 1 GiB.
pub async fn open_lease(chain: &Chain, c: &Contracts, tenant: usize, deposit: u64) -> Result<U256> {
    open_lease_for(chain, c, tenant, b"manifest", "", deposit).await
}

/// Opens a lease like [`open_lease`] committing to `manifest` (downloadable at `uri`, or
/// uploaded to the gateway when `uri` is empty).
pub async fn open_lease_for(
    chain: &Chain,
    c: &Contracts,
    tenant: usize,
    manifest: &[u8],
    uri: &str,
    deposit: u64,
) -> Result<U256> {
    let escrow = LeaseEscrow::new(c.escrow, chain.wallet(tenant)?);
    let call = escrow.openLease(
        U256::from(1),
        500,
        512,
        1,
        alloy::primitives::keccak256(manifest),
        uri.to_string(),
        U256::from(deposit),
        U256::MAX,
    );
    let id = call.call().await?;
    // Padded: a keeper rejecting or closing another lease meanwhile can free the provider's
    // allocation, and storing into a zeroed slot costs more than the estimate assumed.
    let gas = call.estimate_gas().await?;
    mined(call.gas(gas * 3 / 2), "openLease").await?;
    Ok(id)
}

/// Deploys (no provider stake), registers provider 1 at cheap prices, gives anvil account 4
/// `funds` and opens lease 1 for it (deposit 10 tUSD): the one-lease world of the process tests
/// and the indexer benchmark.
pub async fn deploy_with_one_lease(chain: &Chain, funds: U256) -> Result<(Contracts, Settings)> {
    let settings = Settings {
        min_stake: 0,
        ..Settings::default()
    };
    let c = deploy(chain, settings).await?;
    register_provider(chain, &c, [1_000_000, 1000, 1000, 0]).await?;
    fund_tenant(chain, &c, 4, funds).await?;
    open_lease(chain, &c, 4, 10_000_000).await?;
    Ok((c, settings))
}

/// A database of its own on the server of `DATABASE_URL`, for benchmarks; dropped by [`drop`].
///
/// [`drop`]: ScratchDb::drop
#[derive(Debug)]
pub struct ScratchDb {
    admin: sqlx::PgPool,
    name: String,
    /// Its URL.
    pub url: String,
}

impl ScratchDb {
    /// Creates `berth_<purpose>_<pid>` on the server `DATABASE_URL` points at.
    pub async fn create(purpose: &str) -> Result<Self> {
        let base = std::env::var("DATABASE_URL").wrap_err("DATABASE_URL is required")?;
        let name = format!("berth_{purpose}_{}", std::process::id());
        let admin = sqlx::PgPool::connect(&base).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        let url = match base.rsplit_once('/') {
            Some((prefix, _)) => format!("{prefix}/{name}"),
            None => eyre::bail!("DATABASE_URL has no database part"),
        };
        Ok(Self { admin, name, url })
    }

    /// Drops the database, closing whatever connections linger.
    pub async fn drop(self) -> Result<()> {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await?;
        Ok(())
    }
}

/// A `postgres://` URL for the database `connect` points at (as `#[sqlx::test]` hands it out),
/// for processes that take a URL.
pub fn database_url(connect: &sqlx::postgres::PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        connect.get_username(),
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or("postgres")
    )
}

/// The entity tables the indexer maintains, each beside the reference view that computes
/// the same rows from the event log (`berth.*_from_events`), with the columns to compare.
const ENTITY_PAIRS: [(&str, &str, &str); 5] = [
    ("leases", "leases_from_events", "*"),
    ("providers", "providers_from_events", "*"),
    (
        "provider_revenue_daily",
        "provider_revenue_daily_from_events",
        "chain_id, provider_id, day, charged, reports",
    ),
    ("tenant_spend", "tenant_spend_from_events", "*"),
    ("utilisation", "utilisation_from_events", "*"),
];

/// Fails unless every entity table equals its reference view row for row (both ways), and
/// returns how many rows were compared.
pub async fn assert_entities_match_event_log(pool: &sqlx::PgPool) -> Result<i64> {
    let mut compared = 0;
    for (table, reference, columns) in ENTITY_PAIRS {
        let (missing, extra, rows): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT COUNT(*) FROM (SELECT {columns} FROM berth.{reference}
                                           EXCEPT ALL SELECT {columns} FROM berth.{table}) m),
                    (SELECT COUNT(*) FROM (SELECT {columns} FROM berth.{table}
                                           EXCEPT ALL SELECT {columns} FROM berth.{reference}) e),
                    (SELECT COUNT(*) FROM berth.{table})"
        ))
        .fetch_one(pool)
        .await?;
        eyre::ensure!(
            missing == 0 && extra == 0,
            "berth.{table} differs from the event log: {missing} rows of berth.{reference} missing, {extra} rows extra"
        );
        compared += rows;
    }
    Ok(compared)
}

/// The example queries of `indexer/README.md` for analysts, by what they answer (kept in
/// step with the README by hand; `analyst_queries` and `bench-analyst` run them).
pub const README_QUERIES: [(&str, &str); 7] = [
    (
        "running leases by runway",
        "SELECT lease_id, provider_id, tenant, balance, max_rate,
                balance * 1e9 / NULLIF(max_rate, 0) AS runway_seconds
         FROM berth.active_leases ORDER BY runway_seconds",
    ),
    (
        "provider revenue per day",
        "SELECT day, provider_id, charged, reports FROM berth.provider_revenue_daily ORDER BY day DESC, charged DESC",
    ),
    (
        "auto top-ups executed and failed",
        "SELECT lease_id, kind, amount, pulled_total, failure, block_time
         FROM berth.auto_top_ups WHERE kind IN ('executed', 'failed') ORDER BY block_time DESC",
    ),
    (
        "lease lifetimes by close reason",
        "SELECT close_reason, COUNT(*), AVG(served_seconds) / 3600 AS avg_hours
         FROM berth.lease_lifetimes WHERE closed_at IS NOT NULL GROUP BY close_reason",
    ),
    (
        "utilisation per provider",
        "SELECT provider_id, AVG(cpu_utilisation) AS cpu, AVG(memory_utilisation) AS memory
         FROM berth.utilisation GROUP BY provider_id",
    ),
    (
        "tenants' spend",
        "SELECT tenant, leases, paid_in, charged, returned FROM berth.tenant_spend ORDER BY charged DESC",
    ),
    (
        "disputes per provider",
        "SELECT * FROM berth.dispute_summary ORDER BY disputes DESC",
    ),
];
