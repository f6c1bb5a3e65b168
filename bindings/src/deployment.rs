//! `deployments/<chainId>.json`, written by `script/Deploy.s.sol`.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

/// Addresses and settings of one deployment, as the deploy script writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Chain the contracts live on.
    pub chain_id: u64,
    /// Block the deployment started at: where the indexer backfills from.
    pub start_block: u64,
    /// `ProviderRegistry`.
    pub provider_registry: Address,
    /// `LeaseEscrow`.
    pub lease_escrow: Address,
    /// The payment token allowlisted at deployment.
    pub payment_token: Address,
    /// The token providers stake.
    pub stake_token: Address,
    /// The dispute arbiter.
    pub arbiter: Address,
    /// Seconds before a tenant may cancel an unconfirmed lease.
    pub accept_timeout: u64,
    /// Seconds a charge stays disputable.
    pub challenge_window: u64,
    /// Seconds the provider has to report after a close.
    pub final_report_window: u64,
    /// Runway (seconds at the maximum rate) below which a lease may be suspended.
    pub min_runway: u64,
    /// Seconds a suspended lease has before it may be terminated (0 in files written before
    /// suspension existed).
    #[serde(default)]
    pub grace_period: u64,
    /// Runway a new lease's deposit must cover (0 in files written before it existed).
    #[serde(default)]
    pub min_open_runway: u64,
    /// Seconds from exit request to stake withdrawal.
    pub unbonding_delay: u64,
}

/// Why a deployment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The file could not be read.
    #[error("cannot read deployment file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a deployment.
    #[error("deployment file {path} is invalid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The file is for another chain than the one asked for.
    #[error("deployment file {path} is for chain {found}, expected chain {expected}")]
    WrongChain {
        /// The file.
        path: PathBuf,
        /// The chain asked for.
        expected: u64,
        /// The chain in the file.
        found: u64,
    },
}

impl Deployment {
    /// Reads `<dir>/<chain_id>.json` and checks that it is for `chain_id`.
    pub fn load(dir: &Path, chain_id: u64) -> Result<Self, DeploymentError> {
        Self::load_file(&dir.join(format!("{chain_id}.json")), Some(chain_id))
    }

    /// Reads one deployment file; with `expected_chain`, refuses a file of another chain.
    pub fn load_file(path: &Path, expected_chain: Option<u64>) -> Result<Self, DeploymentError> {
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.to_owned(),
            source,
        })?;
        let deployment: Self =
            serde_json::from_str(&text).map_err(|source| DeploymentError::Parse {
                path: path.to_owned(),
                source,
            })?;
        match expected_chain {
            Some(expected) if expected != deployment.chain_id => Err(DeploymentError::WrongChain {
                path: path.to_owned(),
                expected,
                found: deployment.chain_id,
            }),
            _ => Ok(deployment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "acceptTimeout": 900, "arbiter": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
      "chainId": 31337, "challengeWindow": 86400, "finalReportWindow": 3600,
      "leaseEscrow": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", "minRunway": 3600,
      "paymentToken": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
      "providerRegistry": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
      "stakeToken": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
      "startBlock": 0, "unbondingDelay": 604800 }"#;

    fn write_sample(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("berth-deployment-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("31337.json"), SAMPLE).expect("write sample");
        dir
    }

    #[test]
    fn loads_what_the_deploy_script_writes() {
        let dir = write_sample("ok");
        let d = Deployment::load(&dir, 31337).expect("loads");
        assert_eq!(d.chain_id, 31337);
        assert_eq!(d.challenge_window, 86_400);
        assert_eq!(
            d.lease_escrow,
            "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
                .parse::<Address>()
                .expect("address")
        );
    }

    #[test]
    fn refuses_another_chains_file_and_names_it() {
        let dir = write_sample("wrong");
        std::fs::copy(dir.join("31337.json"), dir.join("1.json")).expect("copy");
        let err = Deployment::load(&dir, 1).expect_err("wrong chain");
        let msg = err.to_string();
        assert!(msg.contains("for chain 31337, expected chain 1"), "{msg}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Deployment::load(Path::new("/nonexistent"), 5).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/5.json"), "{err}");
    }
}
