//! `berth provider …`: what a provider's owner does on chain.

use alloy::primitives::{Address, U256};
use berth_bindings::{LeaseEscrow, ProviderRegistry, ProviderRegistry::ProviderRegistryInstance};
use clap::{Args, Subcommand};
use eyre::Result;
use serde_json::json;

use crate::{
    amounts::{self, Resources},
    context::Ctx,
    failure::{self, Kind, fail},
    history, market,
    output::emit,
    token::Token,
};
use berth_protocol::pricing::{self, HOURLY_UNITS};

/// Provider commands (signed by the provider's owner key).
#[derive(Debug, Subcommand)]
pub enum ProviderCmd {
    /// Register a provider: capacity, prices, gateway endpoint, operator (keeper) key, stake.
    Register(Register),
    /// Change a provider's endpoint, attributes, capacity, prices or operator.
    Update(Update),
    /// Stop taking new leases (running leases continue).
    Pause(Id),
    /// Take new leases again.
    Resume(Id),
    /// Start unbonding: no new leases; the stake is withdrawable after the delay.
    Exit(Id),
    /// Withdraw the stake after unbonding, once no lease is active.
    WithdrawStake(Id),
    /// Claim every matured charge of the provider's leases.
    Claim(Id),
    /// Show a provider: status, capacity, prices, stake, leases, earnings.
    Status(Id),
    /// Generate the next encryption key (appended to the keeper's key file) and register it.
    RotateKey(crate::encryption_key::RotateKey),
}

/// A provider id.
#[derive(Debug, Args)]
pub struct Id {
    /// Provider id.
    pub id: u32,
}

/// Hourly prices in token units.
#[derive(Debug, Args)]
pub struct PriceArgs {
    /// Price per lease-hour, in tokens.
    #[arg(long)]
    pub base_price: Option<String>,
    /// Price per CPU core-hour (1000 millicores), in tokens.
    #[arg(long)]
    pub cpu_price: Option<String>,
    /// Price per GiB-hour of memory, in tokens.
    #[arg(long)]
    pub memory_price: Option<String>,
    /// Price per GiB-hour of storage, in tokens.
    #[arg(long)]
    pub storage_price: Option<String>,
}

impl PriceArgs {
    fn given(&self) -> bool {
        [
            &self.base_price,
            &self.cpu_price,
            &self.memory_price,
            &self.storage_price,
        ]
        .iter()
        .any(|p| p.is_some())
    }

    /// The scaled prices, each missing one taken from `current`.
    fn scaled(&self, decimals: u8, current: [u128; 4]) -> Result<[u128; 4]> {
        let mut out = current;
        for (i, (flag, value)) in [
            ("--base-price", &self.base_price),
            ("--cpu-price", &self.cpu_price),
            ("--memory-price", &self.memory_price),
            ("--storage-price", &self.storage_price),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(text) = value {
                out[i] = amounts::price_from_hourly(flag, text, decimals, HOURLY_UNITS[i])?;
            }
        }
        Ok(out)
    }
}

/// `provider register`.
#[derive(Debug, Args)]
pub struct Register {
    /// Gateway URL tenants upload manifests to (the keeper's `gateway_addr` behind it).
    #[arg(long)]
    pub endpoint: String,
    /// The keeper's operator address [default: the signing account].
    #[arg(long)]
    pub operator: Option<Address>,
    /// Attributes, `key=value,key=value` (region, tier…).
    #[arg(long, default_value = "")]
    pub attributes: String,
    /// CPU capacity, millicores.
    #[arg(long)]
    pub cpu: u32,
    /// Memory capacity, MiB.
    #[arg(long)]
    pub memory: u32,
    /// Storage capacity, GiB.
    #[arg(long, default_value_t = 0)]
    pub storage: u32,
    #[command(flatten)]
    pub prices: PriceArgs,
    /// Stake to lock, in stake tokens.
    #[arg(long, default_value = "0")]
    pub stake: String,
    /// Payment token [default: the deployment's payment token].
    #[arg(long)]
    pub token: Option<Address>,
}

/// `provider update`.
#[derive(Debug, Args)]
pub struct Update {
    /// Provider id.
    pub id: u32,
    /// New gateway URL.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// New attributes, `key=value,key=value`.
    #[arg(long)]
    pub attributes: Option<String>,
    #[command(flatten)]
    pub prices: PriceArgs,
    /// New operator (keeper) address.
    #[arg(long)]
    pub operator: Option<Address>,
    /// New capacity (each left out: unchanged). Last: its help heading holds for every
    /// argument after it.
    #[command(flatten, next_help_heading = "New capacity (each left out: unchanged)")]
    pub capacity: Resources,
}

/// Runs a provider command.
pub async fn run(ctx: &Ctx, cmd: ProviderCmd) -> Result<()> {
    match cmd {
        ProviderCmd::Register(a) => register(ctx, a).await,
        ProviderCmd::Update(a) => update(ctx, a).await,
        ProviderCmd::Pause(Id { id }) => simple(ctx, id, "pause").await,
        ProviderCmd::Resume(Id { id }) => simple(ctx, id, "resume").await,
        ProviderCmd::Exit(Id { id }) => simple(ctx, id, "exit").await,
        ProviderCmd::WithdrawStake(Id { id }) => simple(ctx, id, "withdraw-stake").await,
        ProviderCmd::Claim(Id { id }) => claim(ctx, id).await,
        ProviderCmd::Status(Id { id }) => status(ctx, id).await,
        ProviderCmd::RotateKey(a) => crate::encryption_key::rotate(ctx, a).await,
    }
}

async fn register(ctx: &Ctx, a: Register) -> Result<()> {
    let w = ctx.wallet()?;
    let token_address = a.token.unwrap_or(ctx.deployment.payment_token);
    let token = Token::load(ctx, token_address).await?;
    let stake_token = Token::load(ctx, ctx.deployment.stake_token).await?;
    let prices = a.prices.scaled(token.decimals, [0; 4])?;
    let stake = stake_token.parse("--stake", &a.stake)?;
    if a.endpoint.trim().is_empty() {
        return Err(fail(Kind::Input, "--endpoint is empty"));
    }
    if stake > U256::ZERO {
        stake_token.require_balance(ctx, w.address, stake).await?;
        stake_token
            .ensure_allowance(&w, ctx.deployment.provider_registry, stake)
            .await?;
    }
    let registry =
        ProviderRegistryInstance::new(ctx.deployment.provider_registry, w.provider.clone());
    let operator = a.operator.unwrap_or(w.address);
    let receipt = w
        .send(
            registry.register(
                operator,
                token_address,
                a.endpoint.clone(),
                a.attributes.clone(),
                [a.cpu, a.memory, a.storage],
                prices,
                stake,
            ),
            "register",
            20,
        )
        .await?;
    let id = receipt
        .decoded_log::<ProviderRegistry::ProviderRegistered>()
        .map(|l| l.data.providerId)
        .ok_or_else(|| fail(Kind::Internal, "register mined without ProviderRegistered"))?;
    emit(
        ctx.global.json,
        &json!({
            "provider": id.to_string(),
            "owner": w.address,
            "operator": operator,
            "token": token_address,
            "endpoint": a.endpoint,
            "tx": receipt.transaction_hash,
        }),
        || {
            format!(
                "registered provider {id} (owner {}, operator {operator})",
                w.address
            )
        },
    );
    Ok(())
}

async fn update(ctx: &Ctx, a: Update) -> Result<()> {
    let current = market::offer(ctx, a.id).await?;
    let capacity_given = a.capacity.any();
    if a.endpoint.is_none()
        && a.attributes.is_none()
        && !capacity_given
        && !a.prices.given()
        && a.operator.is_none()
    {
        return Err(fail(
            Kind::Input,
            "nothing to update: pass --endpoint, --attributes, --cpu/--memory/--storage, a --*-price or --operator",
        ));
    }
    let token = Token::load(ctx, current.token).await?;
    let prices = a.prices.scaled(token.decimals, current.prices)?;
    let w = ctx.wallet()?;
    let registry =
        ProviderRegistryInstance::new(ctx.deployment.provider_registry, w.provider.clone());
    let id = U256::from(a.id);
    let mut txs = Vec::new();
    if let Some(endpoint) = &a.endpoint {
        let r = w
            .send(
                registry.updateEndpoint(id, endpoint.clone()),
                "updateEndpoint",
                20,
            )
            .await?;
        txs.push(r.transaction_hash);
    }
    if let Some(attributes) = &a.attributes {
        let r = w
            .send(
                registry.updateAttributes(id, attributes.clone()),
                "updateAttributes",
                20,
            )
            .await?;
        txs.push(r.transaction_hash);
    }
    if capacity_given {
        let [cpu, mem, sto] = current.capacity;
        let r = w
            .send(
                registry.updateCapacity(
                    id,
                    a.capacity.cpu.unwrap_or(cpu),
                    a.capacity.memory.unwrap_or(mem),
                    a.capacity.storage.unwrap_or(sto),
                ),
                "updateCapacity",
                20,
            )
            .await?;
        txs.push(r.transaction_hash);
    }
    if a.prices.given() {
        let r = w
            .send(
                registry.updatePrices(id, prices[0], prices[1], prices[2], prices[3]),
                "updatePrices",
                20,
            )
            .await?;
        txs.push(r.transaction_hash);
    }
    if let Some(operator) = a.operator {
        let r = w
            .send(registry.setOperator(id, operator), "setOperator", 20)
            .await?;
        txs.push(r.transaction_hash);
    }
    emit(
        ctx.global.json,
        &json!({ "provider": a.id, "txs": txs }),
        || format!("updated provider {} ({} transactions)", a.id, txs.len()),
    );
    Ok(())
}

async fn simple(ctx: &Ctx, id: u32, what: &str) -> Result<()> {
    market::offer(ctx, id).await?;
    let w = ctx.wallet()?;
    let registry =
        ProviderRegistryInstance::new(ctx.deployment.provider_registry, w.provider.clone());
    let pid = U256::from(id);
    let receipt = match what {
        "pause" => w.send(registry.pause(pid), "pause", 20).await?,
        "resume" => w.send(registry.unpause(pid), "unpause", 20).await?,
        "exit" => w.send(registry.requestExit(pid), "requestExit", 20).await?,
        _ => {
            w.send(registry.withdrawStake(pid), "withdrawStake", 20)
                .await?
        }
    };
    let after = market::offer(ctx, id).await?;
    emit(
        ctx.global.json,
        &json!({ "provider": id, "status": after.status, "tx": receipt.transaction_hash }),
        || format!("provider {id} is now {}", after.status),
    );
    Ok(())
}

/// Matured charges of each of `leases`, in base units.
async fn claimable(ctx: &Ctx, leases: &[U256]) -> Result<Vec<(U256, U256)>> {
    let escrow = ctx.escrow();
    let mut out = Vec::new();
    for id in leases {
        let c = escrow
            .claimableOf(*id)
            .call()
            .await
            .map_err(|e| failure::contract("claimableOf", &e))?;
        out.push((*id, c));
    }
    Ok(out)
}

async fn claim(ctx: &Ctx, id: u32) -> Result<()> {
    let offer = market::offer(ctx, id).await?;
    let token = Token::load(ctx, offer.token).await?;
    let leases = history::leases_of_provider(ctx, id).await?;
    let due: Vec<U256> = claimable(ctx, &leases)
        .await?
        .into_iter()
        .filter(|(_, c)| !c.is_zero())
        .map(|(l, _)| l)
        .collect();
    let w = ctx.wallet()?;
    let escrow = LeaseEscrow::new(ctx.deployment.lease_escrow, w.provider.clone());
    let mut total = U256::ZERO;
    let mut txs = Vec::new();
    for batch in due.chunks(50) {
        let receipt = w
            .send(escrow.claimMany(batch.to_vec()), "claimMany", 20)
            .await?;
        total += receipt
            .logs()
            .iter()
            .filter_map(|l| l.log_decode::<LeaseEscrow::ChargesClaimed>().ok())
            .map(|l| l.inner.data.amount)
            .fold(U256::ZERO, |a, b| a + b);
        txs.push(receipt.transaction_hash);
    }
    emit(
        ctx.global.json,
        &json!({
            "provider": id,
            "leases": due.iter().map(U256::to_string).collect::<Vec<_>>(),
            "claimed": total.to_string(),
            "txs": txs,
        }),
        || {
            if due.is_empty() {
                format!("provider {id}: nothing has matured to claim")
            } else {
                format!(
                    "claimed {} from {} leases of provider {id}",
                    token.show(total),
                    due.len()
                )
            }
        },
    );
    Ok(())
}

async fn status(ctx: &Ctx, id: u32) -> Result<()> {
    let offer = market::offer(ctx, id).await?;
    let token = Token::load(ctx, offer.token).await?;
    let p = ctx
        .registry()
        .getProvider(U256::from(id))
        .call()
        .await
        .map_err(|e| failure::contract("getProvider", &e))?;
    let leases = history::leases_of_provider(ctx, id).await?;
    let claimable = claimable(ctx, &leases)
        .await?
        .into_iter()
        .fold(U256::ZERO, |a, (_, c)| a + c);
    let hourly: Vec<String> = (0..4)
        .map(|i| {
            token.show(pricing::hourly_base_units(
                U256::from(offer.prices[i]),
                HOURLY_UNITS[i],
            ))
        })
        .collect();
    let value = json!({
        "provider": id,
        "status": offer.status,
        "owner": p.owner,
        "operator": p.operator,
        "endpoint": offer.endpoint,
        "attributes": p.attributes,
        "token": offer.token,
        "capacity": offer.capacity,
        "free": offer.free,
        "prices_scaled": offer.prices.map(|x| x.to_string()),
        "price_version": p.priceVersion,
        "stake": offer.stake,
        "unbonding_ends_at": p.unbondingEndsAt.to::<u64>(),
        "active_leases": p.activeLeases,
        "leases_ever": leases.len(),
        "claimable": claimable.to_string(),
    });
    emit(ctx.global.json, &value, || {
        format!(
            "provider {id}: {}\n  owner       {}\n  operator    {}\n  endpoint    {}\n  attributes  {}\n  capacity    {} millicores, {} MiB, {} GiB ({} / {} / {} free)\n  prices      {} per lease-hour, {} per core-hour, {} per GiB-hour memory, {} per GiB-hour storage\n  stake       {}\n  leases      {} active, {} ever\n  claimable   {}",
            offer.status,
            p.owner,
            p.operator,
            offer.endpoint,
            p.attributes,
            offer.capacity[0],
            offer.capacity[1],
            offer.capacity[2],
            offer.free[0],
            offer.free[1],
            offer.free[2],
            hourly[0],
            hourly[1],
            hourly[2],
            hourly[3],
            offer.stake,
            p.activeLeases,
            leases.len(),
            token.show(claimable),
        )
    });
    Ok(())
}
