//! A world whose keeper routes its leases' web services through a real `berth-gateway`: a
//! test CA's certificate for `*.apps.test` and `*.custom.test` (the custom domains of the
//! tests), the keeper's control socket wired both ways (wakes, ERC-1271), samples every
//! 500 ms.

use std::path::PathBuf;

use alloy::primitives::U256;
use berth_bindings::LeaseStatus;
use berth_e2e::{
    gateway::{GatewayProcess, TestCa, scratch_dir},
    keeper::KeeperProcess,
};
use eyre::{Result, ensure};

use crate::keeper::{World, world};

pub(crate) struct Gated {
    pub(crate) dir: PathBuf,
    pub(crate) ca: TestCa,
    pub(crate) gw: GatewayProcess,
    pub(crate) w: World,
    pub(crate) keeper: KeeperProcess,
}

impl Gated {
    /// Starts the gateway (with `gateway_env` besides the essentials), the world and its
    /// keeper.
    pub(crate) async fn start(
        pool: &sqlx::PgPool,
        purpose: &str,
        gateway_env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_with(pool, purpose, gateway_env, &[]).await
    }

    /// As [`Self::start`], with `keeper_env` besides the essentials.
    pub(crate) async fn start_with(
        pool: &sqlx::PgPool,
        purpose: &str,
        gateway_env: &[(&str, &str)],
        keeper_env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = scratch_dir(purpose)?;
        let ca = TestCa::new(&dir)?;
        let apps = ca.issue("apps", &["*.apps.test", "*.custom.test"])?;
        let control = dir.join("keeper.sock").display().to_string();
        let mut env = vec![("BERTH_KEEPER_SOCKET", control.as_str())];
        env.extend_from_slice(gateway_env);
        let gw = GatewayProcess::start(&dir, "apps.test", &[apps], &env).await?;
        let port = gw.addr.port().to_string();
        let admin = gw.admin.display().to_string();
        let mut env = vec![
            ("BERTH_APPS_DOMAIN", "apps.test"),
            ("BERTH_APPS_HTTPS_PORT", port.as_str()),
            ("BERTH_GATEWAY_ADMIN_SOCKET", admin.as_str()),
            ("BERTH_CONTROL_SOCKET", control.as_str()),
            ("BERTH_SAMPLE_INTERVAL_MS", "500"),
        ];
        env.extend_from_slice(keeper_env);
        let w = world(&pool.connect_options(), &env).await?;
        let keeper = KeeperProcess::start(&w.setup).await?;
        Ok(Self {
            dir,
            ca,
            gw,
            w,
            keeper,
        })
    }

    /// Opens a lease of `manifest` (uploaded by the tenant) and waits until it is active.
    pub(crate) async fn lease(&self, manifest: &[u8]) -> Result<U256> {
        let (lease, status) = self.w.lease_with(manifest, manifest).await?;
        ensure!(status == 202, "upload answered {status}");
        self.w
            .wait_status(lease, LeaseStatus::Active, &self.keeper)
            .await?;
        Ok(lease)
    }

    /// The hostname of `service` of `lease`.
    pub(crate) fn host(&self, service: &str, lease: U256) -> String {
        let tag = berth_protocol::routing::deployment_tag(self.w.chain.chain_id(), self.w.c.escrow);
        format!("{service}-{lease}-{tag}.apps.test")
    }

    /// Both services' logs, for failures.
    pub(crate) fn logs(&self) -> String {
        format!(
            "gateway:\n{}\nkeeper:\n{}",
            self.gw.log_text(),
            self.keeper.log_text()
        )
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
