//! A tenant that is a contract wallet: it opens a lease through its owner, and its manifest
//! upload, and its day-two access tokens, are accepted when the wallet vouches for the
//! signature (ERC-1271), refused when a stranger signed them.

use alloy::{
    primitives::{Address, U256, keccak256},
    sol_types::{SolCall, SolValue},
};
use berth_bindings::{LeaseEscrow, LeaseStatus, TestToken, testing::ContractWallet};
use berth_e2e::{keeper::*, mined};
use berth_protocol::access::Operation;
use eyre::{Result, ensure};
use sqlx::PgPool;

use crate::keeper::{HELLO_BODY, TENANT, serves, world};

/// An anvil account that is neither the wallet's owner nor anyone in the world.
const STRANGER: usize = 6;

#[sqlx::test(migrations = false)]
async fn a_contract_wallet_tenant_uploads_with_its_owners_signature(pool: PgPool) -> Result<()> {
    let w = world(&pool.connect_options(), &[]).await?;
    let keeper = KeeperProcess::start(&w.setup).await?;
    let owner = w.chain.wallet(TENANT)?;
    let wallet = ContractWallet::deploy(&owner, w.chain.signer(TENANT)?.address()).await?;
    let at: Address = *wallet.address();

    // The wallet holds the deposit, approves the escrow and opens the lease itself.
    mined(
        TestToken::new(w.c.token, &owner).mint(at, U256::from(10u64.pow(12))),
        "mint",
    )
    .await?;
    let approve = TestToken::approveCall {
        spender: w.c.escrow,
        value: U256::MAX,
    };
    mined(
        wallet.execute(w.c.token, approve.abi_encode().into()),
        "approve through the wallet",
    )
    .await?;
    let manifest = hello_manifest();
    let open = LeaseEscrow::openLeaseCall {
        providerId: U256::from(1),
        cpuMillis: 500,
        memoryMiB: 512,
        storageGiB: 1,
        manifestHash: keccak256(&manifest),
        manifestUri: String::new(),
        deposit: U256::from(10_000_000u64),
        maxRateAllowed: U256::MAX,
    };
    let execute = wallet.execute(w.c.escrow, open.abi_encode().into());
    let answer = execute.call().await?;
    let lease = U256::abi_decode(&answer)?;
    let gas = execute.estimate_gas().await?;
    mined(execute.gas(gas * 3 / 2), "openLease through the wallet").await?;
    let tenant = w.escrow()?.getLease(lease).call().await?.tenant;
    ensure!(
        tenant == at,
        "the lease's tenant is the wallet, not {tenant}"
    );

    // A stranger's signature: the wallet does not vouch for it. The owner's: it does.
    for (signer, who, want) in [(STRANGER, "a stranger", 403), (TENANT, "the owner", 202)] {
        let gateway = w.setup.gateway();
        let (status, body) =
            upload(&gateway, &w.chain, w.c.escrow, signer, lease, &manifest).await?;
        ensure!(status == want, "{who}'s upload answered {status} {body}");
    }
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    serves(&w.endpoint(lease).await?, HELLO_BODY).await?;

    // Day-two access tokens: the wallet vouches for its owner's, not for a stranger's.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 600;
    for (signer, who, want) in [(STRANGER, "a stranger", 403), (TENANT, "the owner", 200)] {
        let token = w.access_token(signer, Operation::Events, lease, expires)?;
        let answer = alloy::transports::http::reqwest::Client::new()
            .get(format!("{}/v1/leases/{lease}/events", w.setup.gateway()))
            .header("authorization", token)
            .send()
            .await?;
        let (status, body) = (answer.status().as_u16(), answer.text().await?);
        ensure!(
            status == want,
            "{who}'s events token answered {status} {body}"
        );
        if want == 200 {
            ensure!(body.contains("\"deployed\""), "the lease's events: {body}");
        }
    }
    Ok(())
}
