//! The harness of the CLI's end-to-end tests: the `berth` binary run as a user runs it, its
//! answers, the escrow settings of those tests, and manifest files.

use std::{path::PathBuf, process::Command};

use alloy::primitives::{Address, U256};
use berth_bindings::TestToken;
use berth_e2e::{Chain, Contracts, Settings, keeper::remove_pods_of_chain, workspace_binary};
use eyre::{Result, WrapErr, ensure};
use serde_json::Value;

pub(crate) const OWNER: usize = 2;
pub(crate) const OPERATOR: usize = 3;

pub(crate) fn settings() -> Settings {
    Settings {
        min_stake: 0,
        challenge_window: 30,
        final_report_window: 30,
        min_runway: 60,
        grace_period: 30,
        min_open_runway: 120,
        ..Settings::default()
    }
}

/// A keeper that samples, reports and bills within seconds (claims left to the test).
pub(crate) fn quick_keeper_env() -> Vec<(String, String)> {
    [
        ("BERTH_SAMPLE_INTERVAL_MS", "200"),
        ("BERTH_REPORT_INTERVAL_S", "2"),
        ("BERTH_CLAIM_INTERVAL_S", "600"),
        ("BERTH_MIN_RUNWAY_S", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// One run of the CLI.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).wrap_err_with(|| format!("stdout is not JSON: {self:?}"))
    }

    pub(crate) fn ok(self) -> Result<Self> {
        ensure!(self.code == 0, "berth failed: {self:?}");
        Ok(self)
    }
}

/// The CLI against one chain and deployment.
pub(crate) struct Cli {
    pub(crate) rpc_url: String,
    pub(crate) deployment: PathBuf,
}

impl Cli {
    /// Runs `berth <args>`, signing with anvil account `key` when given.
    pub(crate) fn run(&self, chain: &Chain, key: Option<usize>, args: &[&str]) -> Result<Run> {
        let mut cmd = Command::new(workspace_binary("berth-cli", "berth")?);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BERTH_RPC_URL", &self.rpc_url)
            .env("BERTH_DEPLOYMENT", &self.deployment)
            .args(args);
        if let Some(k) = key {
            cmd.env(
                "BERTH_PRIVATE_KEY",
                format!("{}", chain.signer(k)?.to_bytes()),
            );
        }
        let out = cmd.output().wrap_err("running berth")?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl Cli {
    /// Runs `berth <args>` with stdout a pipe whose reading end is closed before it writes.
    pub(crate) fn run_closed_stdout(&self, args: &[&str]) -> Result<Run> {
        let mut child = Command::new(workspace_binary("berth-cli", "berth")?)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BERTH_RPC_URL", &self.rpc_url)
            .env("BERTH_DEPLOYMENT", &self.deployment)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .wrap_err("running berth")?;
        drop(child.stdout.take());
        let out = child.wait_with_output()?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

pub(crate) fn str_of(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) async fn token_balance(chain: &Chain, c: &Contracts, who: Address) -> Result<U256> {
    Ok(TestToken::new(c.token, chain.wallet(0)?)
        .balanceOf(who)
        .call()
        .await?)
}

pub(crate) fn manifest_file(name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "berth-cli-{}-{}-{name}",
        std::process::id(),
        berth_e2e::unique_suffix()
    ));
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Removes the chain's pods when the test ends, however it ends.
pub(crate) struct PodsOf(pub(crate) u64);

impl Drop for PodsOf {
    fn drop(&mut self) {
        remove_pods_of_chain(self.0);
    }
}
