//! The keeper tests' world: anvil with the contracts, provider 1 registered, a funded
//! tenant, a podman service and the hello image, and a keeper setup against them. Shared by
//! the end-to-end tests and the drills.

use std::time::Duration;

use alloy::{primitives::U256, providers::Provider, rpc::types::Filter, sol_types::SolEvent};
use berth_bindings::{LeaseEscrow, LeaseStatus, RejectReason};
use eyre::{Result, WrapErr};
use sqlx::postgres::PgConnectOptions;

use crate::{
    Chain, Contracts, Settings, database_url, deploy, fund_tenant, keeper::*, open_lease_for,
    register_provider,
};

pub const TENANT: usize = 4;
pub const WAIT: Duration = Duration::from_secs(60);
/// Provider 1's prices in the keeper tests (cheap: runways of years).
pub const CHEAP: [u128; 4] = [1_000_000, 1000, 1000, 0];

/// anvil with the contracts, provider 1 registered, a funded tenant, podman, the hello image.
#[derive(Debug)]
pub struct World {
    pub chain: Chain,
    pub c: Contracts,
    pub podman: PodmanService,
    pub setup: KeeperSetup,
}

impl Drop for World {
    fn drop(&mut self) {
        remove_pods_of_chain(self.chain.chain_id());
    }
}

pub async fn world(db: &PgConnectOptions, env: &[(&str, &str)]) -> Result<World> {
    let settings = Settings {
        min_stake: 0,
        ..Settings::default()
    };
    world_with(db, env, CHEAP, settings).await
}

/// A world with provider 1 at `prices` and the escrow at `settings`.
pub async fn world_with(
    db: &PgConnectOptions,
    env: &[(&str, &str)],
    prices: [u128; 4],
    settings: Settings,
) -> Result<World> {
    world_on(db, env, prices, settings, PodmanService::start().await?).await
}

/// A world whose keeper uses `podman`.
pub async fn world_on(
    db: &PgConnectOptions,
    env: &[(&str, &str)],
    prices: [u128; 4],
    settings: Settings,
    podman: PodmanService,
) -> Result<World> {
    hello_image()?;
    let chain = Chain::start()?;
    let c = deploy(&chain, settings).await?;
    register_provider(&chain, &c, prices).await?;
    fund_tenant(&chain, &c, TENANT, U256::from(10u64.pow(12))).await?;
    let mut setup = KeeperSetup::new(&chain, &c, settings, database_url(db), &podman)?;
    setup.env = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    Ok(World {
        chain,
        c,
        podman,
        setup,
    })
}

impl World {
    pub fn escrow(
        &self,
    ) -> Result<LeaseEscrow::LeaseEscrowInstance<alloy::providers::DynProvider>> {
        Ok(LeaseEscrow::new(self.c.escrow, self.chain.wallet(TENANT)?))
    }

    pub async fn status(&self, lease: U256) -> Result<LeaseStatus> {
        let l = self.escrow()?.getLease(lease).call().await?;
        LeaseStatus::from_u8(l.status).ok_or_else(|| eyre::eyre!("bad status"))
    }

    pub async fn wait_status(
        &self,
        lease: U256,
        want: LeaseStatus,
        keeper: &KeeperProcess,
    ) -> Result<()> {
        wait_for(
            &format!("lease {lease} to be {want:?}"),
            WAIT,
            || async move { Ok((self.status(lease).await? == want).then_some(())) },
        )
        .await
        .wrap_err_with(|| format!("keeper log:\n{}", keeper.log_text()))
    }

    /// Opens a lease for `manifest` and uploads `upload` (signed by the tenant).
    pub async fn lease_with(&self, manifest: &[u8], upload_bytes: &[u8]) -> Result<(U256, u16)> {
        self.lease_funded(manifest, upload_bytes, 10_000_000).await
    }

    /// [`World::lease_with`] with a deposit of `deposit` base units.
    pub async fn lease_funded(
        &self,
        manifest: &[u8],
        upload_bytes: &[u8],
        deposit: u64,
    ) -> Result<(U256, u16)> {
        let lease = open_lease_for(&self.chain, &self.c, TENANT, manifest, "", deposit).await?;
        let (status, _) = upload(
            &self.setup.gateway(),
            &self.chain,
            self.c.escrow,
            TENANT,
            lease,
            upload_bytes,
        )
        .await?;
        Ok((lease, status))
    }

    pub async fn workload(&self, lease: U256) -> Result<Option<berth_keepers::engine::Workload>> {
        workload(&self.podman, self.chain.chain_id(), self.c.escrow, lease).await
    }

    pub async fn pods(&self, lease: U256) -> Result<usize> {
        pod_count(self.chain.chain_id(), self.c.escrow, lease).await
    }

    pub async fn endpoint(&self, lease: U256) -> Result<String> {
        crate::keeper::endpoint_of(&self.chain, self.c.escrow, lease).await
    }

    /// The escrow's logs of event `E` for `lease`, in chain order.
    async fn lease_logs<E: SolEvent>(&self, lease: U256) -> Result<Vec<alloy::rpc::types::Log>> {
        Ok(self
            .chain
            .wallet(0)?
            .get_logs(
                &Filter::new()
                    .address(self.c.escrow)
                    .event_signature(E::SIGNATURE_HASH)
                    .topic1(alloy::primitives::B256::from(lease))
                    .from_block(0),
            )
            .await?)
    }

    /// The lease's usage reports on chain, by sequence.
    pub async fn reports(&self, lease: U256) -> Result<Vec<LeaseEscrow::UsageReported>> {
        let logs = self.lease_logs::<LeaseEscrow::UsageReported>(lease).await?;
        let mut out = Vec::new();
        for log in logs {
            out.push(LeaseEscrow::UsageReported::decode_log(&log.inner)?.data);
        }
        out.sort_by_key(|r| r.sequence);
        Ok(out)
    }

    /// The `Authorization` value of an access token for `operation` on `lease`, signed by
    /// anvil account `signer`, valid until `expires_at` (unix seconds).
    pub fn access_token(
        &self,
        signer: usize,
        operation: berth_protocol::access::Operation,
        lease: U256,
        expires_at: u64,
    ) -> Result<String> {
        use alloy::signers::SignerSync;
        let digest = berth_protocol::access::signing_hash(
            self.chain.chain_id(),
            self.c.escrow,
            lease,
            operation,
            expires_at,
        );
        let signature = self.chain.signer(signer)?.sign_hash_sync(&digest)?;
        let token = berth_protocol::access::Token {
            expires_at,
            signature,
        };
        Ok(format!("Berth {}", token.encode()))
    }

    pub async fn reject_reason(&self, lease: U256) -> Result<Option<RejectReason>> {
        let logs = self.lease_logs::<LeaseEscrow::LeaseRejected>(lease).await?;
        Ok(match logs.first() {
            Some(log) => RejectReason::from_u8(
                LeaseEscrow::LeaseRejected::decode_log(&log.inner)?
                    .data
                    .reason,
            ),
            None => None,
        })
    }
}

/// Fails unless a report's units fit the reservation of the test leases (500 millicores,
/// 512 MiB) over its period.
pub fn check_caps(r: &LeaseEscrow::UsageReported) -> Result<()> {
    let period = r.to.to::<u64>() - r.from.to::<u64>();
    eyre::ensure!(
        r.cpuUnits <= 500 * period,
        "cpu {} above the cap over {period} s",
        r.cpuUnits
    );
    eyre::ensure!(
        r.memoryUnits <= 512 * period,
        "memory {} above the cap over {period} s",
        r.memoryUnits
    );
    Ok(())
}
