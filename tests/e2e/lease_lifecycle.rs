//! A lease's whole life through the generated bindings on a real anvil: register a provider,
//! open, confirm, report usage, claim, close, final report, withdraw; every balance checked.

use alloy::primitives::{U256, keccak256};
use berth_bindings::{LeaseEscrow, LeaseStatus, PRICE_SCALE, ProviderRegistry, TestToken};
use berth_e2e::{Chain, Settings, deploy, mined};
use eyre::{Result, ensure};

const CPU: u32 = 500;
const MEM: u32 = 512;
const STO: u32 = 1;
// 6-decimal token: 0.01/h base, 0.02 per core-hour, 0.01 per GiB-hour, 0.0001 per GiB-hour disk.
const BASE_RATE: u128 = 10_000 * PRICE_SCALE as u128 / 3600;
const CPU_PRICE: u128 = 20_000 * PRICE_SCALE as u128 / (1000 * 3600);
const MEM_PRICE: u128 = 10_000 * PRICE_SCALE as u128 / (1024 * 3600);
const STO_PRICE: u128 = 100 * PRICE_SCALE as u128 / 3600;

fn charge(period: u64, cpu_units: u64, mem_units: u64, sto_units: u64) -> U256 {
    let scaled = period as u128 * BASE_RATE
        + cpu_units as u128 * CPU_PRICE
        + mem_units as u128 * MEM_PRICE
        + sto_units as u128 * STO_PRICE;
    U256::from(scaled / PRICE_SCALE as u128)
}

#[tokio::test]
async fn lease_lifecycle_through_bindings_moves_every_token_where_it_belongs() -> Result<()> {
    let chain = Chain::start()?;
    let settings = Settings::default();
    let c = deploy(&chain, settings).await?;

    let (owner_p, operator_p, tenant_p) = (chain.wallet(2)?, chain.wallet(3)?, chain.wallet(4)?);
    let (owner, operator, tenant) = (
        chain.signer(2)?.address(),
        chain.signer(3)?.address(),
        chain.signer(4)?.address(),
    );

    // The provider registers with a stake.
    let token = TestToken::new(c.token, &owner_p);
    let stake = U256::from(settings.min_stake);
    mined(token.mint(owner, stake), "mint").await?;
    mined(token.approve(c.registry, stake), "approve").await?;
    let registry = ProviderRegistry::new(c.registry, &owner_p);
    let register = registry.register(
        operator,
        c.token,
        "http://127.0.0.1:8443".into(),
        "region=local,tier=dev".into(),
        [8000, 16_384, 100],
        [BASE_RATE, CPU_PRICE, MEM_PRICE, STO_PRICE],
        stake,
    );
    let provider_id = register.call().await?;
    mined(register, "register").await?;
    ensure!(provider_id == U256::from(1), "first provider id is 1");

    // The tenant opens a lease funded for two hours.
    let manifest = b"version: 1\nservices:\n  web:\n    image: localhost/berth-hello\n";
    let manifest_hash = keccak256(manifest);
    let tenant_token = TestToken::new(c.token, &tenant_p);
    let initial = U256::from(1_000_000_000u64); // 1,000 tUSD
    mined(tenant_token.mint(tenant, initial), "mint").await?;
    mined(tenant_token.approve(c.escrow, U256::MAX), "approve").await?;
    let rate =
        BASE_RATE + CPU as u128 * CPU_PRICE + MEM as u128 * MEM_PRICE + STO as u128 * STO_PRICE;
    let deposit = U256::from(rate * 7200 / PRICE_SCALE as u128 + 1);
    let escrow_t = LeaseEscrow::new(c.escrow, &tenant_p);
    let open = escrow_t.openLease(
        provider_id,
        CPU,
        MEM,
        STO,
        manifest_hash,
        String::new(),
        deposit,
        U256::from(rate),
    );
    let lease_id = open.call().await?;
    mined(open, "openLease").await?;
    ensure!(
        token.balanceOf(c.escrow).call().await? == deposit,
        "escrow holds the deposit"
    );
    let opened = berth_e2e::keeper::lease_opened(&chain, c.escrow, lease_id).await?;
    ensure!(
        opened.manifestHash == manifest_hash,
        "manifest hash on chain (in LeaseOpened)"
    );
    let lease = escrow_t.getLease(lease_id).call().await?;
    ensure!(
        LeaseStatus::from_u8(lease.status) == Some(LeaseStatus::Pending),
        "pending"
    );

    // The provider's keeper confirms with the workload's endpoint.
    let escrow_o = LeaseEscrow::new(c.escrow, &operator_p);
    mined(
        escrow_o.confirmLease(lease_id, "http://127.0.0.1:30080".into()),
        "confirmLease",
    )
    .await?;
    let lease = escrow_t.getLease(lease_id).call().await?;
    ensure!(
        LeaseStatus::from_u8(lease.status) == Some(LeaseStatus::Active),
        "active"
    );
    ensure!(
        berth_e2e::keeper::endpoint_of(&chain, c.escrow, lease_id).await?
            == "http://127.0.0.1:30080",
        "endpoint on chain (in LeaseConfirmed)"
    );
    let confirmed_at: u64 = lease.billedUntil.to();

    // Ten minutes of service at 60% CPU and full memory, reported.
    chain.advance(600).await?;
    let to = chain.now().await?;
    let period = to - confirmed_at;
    let (cpu_units, mem_units, sto_units) =
        (CPU as u64 * period * 6 / 10, MEM as u64 * period, period);
    mined(
        escrow_o.reportUsage(
            lease_id,
            1,
            lease.billedUntil,
            alloy::primitives::aliases::U40::from(to),
            cpu_units,
            mem_units,
            sto_units,
            keccak256(b"samples"),
        ),
        "reportUsage",
    )
    .await?;
    let first = charge(period, cpu_units, mem_units, sto_units);
    let lease = escrow_t.getLease(lease_id).call().await?;
    ensure!(
        U256::from(lease.balance) == deposit - first,
        "balance minus the charge"
    );
    ensure!(
        escrow_t.pendingOf(lease_id).call().await? == first,
        "charge pending"
    );

    // After the challenge window the provider claims; the owner is paid, not the operator.
    chain.advance(settings.challenge_window).await?;
    ensure!(
        escrow_t.claimableOf(lease_id).call().await? == first,
        "charge matured"
    );
    mined(escrow_o.claim(lease_id), "claim").await?;
    ensure!(
        token.balanceOf(owner).call().await? == first,
        "owner paid the charge"
    );
    ensure!(
        token.balanceOf(operator).call().await? == U256::ZERO,
        "operator holds nothing"
    );

    // The tenant closes; the keeper sends the final report up to the close; the tenant withdraws.
    mined(escrow_t.closeLease(lease_id), "closeLease").await?;
    let lease = escrow_t.getLease(lease_id).call().await?;
    ensure!(
        LeaseStatus::from_u8(lease.status) == Some(LeaseStatus::Closing),
        "closing"
    );
    let closed_at: u64 = lease.closedAt.to();
    let from: u64 = lease.billedUntil.to();
    let period = closed_at - from;
    mined(
        escrow_o.reportUsage(
            lease_id,
            2,
            lease.billedUntil,
            lease.closedAt,
            0,
            MEM as u64 * period,
            0,
            keccak256(b"final"),
        ),
        "final report",
    )
    .await?;
    let second = charge(period, 0, MEM as u64 * period, 0);
    ensure!(
        escrow_t.refundableOf(lease_id).call().await? == deposit - first - second,
        "refundable"
    );
    mined(escrow_t.withdraw(lease_id), "withdraw").await?;
    ensure!(
        token.balanceOf(tenant).call().await? == initial - first - second,
        "tenant paid exactly the two charges"
    );

    // The final charge matures and is claimed: the escrow ends empty.
    chain.advance(settings.challenge_window).await?;
    mined(escrow_o.claim(lease_id), "claim").await?;
    ensure!(
        token.balanceOf(owner).call().await? == first + second,
        "owner paid both charges"
    );
    ensure!(
        token.balanceOf(c.escrow).call().await? == U256::ZERO,
        "escrow empty"
    );
    let lease = escrow_t.getLease(lease_id).call().await?;
    ensure!(
        LeaseStatus::from_u8(lease.status) == Some(LeaseStatus::Closed),
        "closed"
    );
    ensure!(
        ProviderRegistry::new(c.registry, &owner_p)
            .getProvider(provider_id)
            .call()
            .await?
            .activeLeases
            == 0,
        "capacity released"
    );
    Ok(())
}
