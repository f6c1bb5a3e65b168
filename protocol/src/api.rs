//! The provider gateway's HTTP API: its paths and the JSON bodies it answers with. The
//! gateway serializes these structs and the CLI deserializes the same ones, so the two cannot
//! drift apart.
//!
//! Lease ids travel as decimal strings (`"12"`), as people and block explorers write them.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::{
    lease::{LeaseStatus, RejectReason},
    metering::Sample,
};

/// The paths the gateway serves, as its router declares them and as clients build them.
pub mod routes {
    use alloy_primitives::U256;

    /// `PUT`: a lease's manifest bytes, signed by its tenant (see [`crate::upload`]).
    pub const MANIFEST: &str = "/v1/leases/{id}/manifest";
    /// `GET`: the lease on chain and its workload ([`super::LeaseAnswer`]).
    pub const LEASE: &str = "/v1/leases/{id}";
    /// `GET`: the lease's usage reports ([`super::ReportsAnswer`]).
    pub const REPORTS: &str = "/v1/leases/{id}/reports";
    /// `GET`: one report with its samples ([`super::ReportAnswer`]).
    pub const REPORT: &str = "/v1/leases/{id}/reports/{sequence}";
    /// `GET`: the Merkle proof of one sample of a report ([`super::ProofAnswer`]).
    pub const PROOF: &str = "/v1/leases/{id}/reports/{sequence}/proof/{index}";
    /// `GET`: the workload's logs as Server-Sent Events ([`crate::logs`]), with a tenant's
    /// access token ([`crate::access`]).
    pub const LOGS: &str = "/v1/leases/{id}/logs";
    /// `GET`: the lease's events ([`super::EventsAnswer`]), with a tenant's access token.
    pub const EVENTS: &str = "/v1/leases/{id}/events";
    /// `GET` (WebSocket): a command in a container ([`crate::shell`]), with a tenant's
    /// access token.
    pub const SHELL: &str = "/v1/leases/{id}/shell";
    /// `GET`: Prometheus metrics.
    pub const METRICS: &str = "/metrics";
    /// `GET`: 200 while the gateway serves.
    pub const HEALTH: &str = "/healthz";

    /// The URL of [`MANIFEST`] under `base` (a trailing `/` is ignored).
    pub fn manifest(base: &str, lease: U256) -> String {
        format!("{}/v1/leases/{lease}/manifest", trim(base))
    }

    /// The URL of [`LEASE`].
    pub fn lease(base: &str, lease: U256) -> String {
        format!("{}/v1/leases/{lease}", trim(base))
    }

    /// The URL of [`REPORTS`].
    pub fn reports(base: &str, lease: U256) -> String {
        format!("{}/v1/leases/{lease}/reports", trim(base))
    }

    /// The URL of [`REPORT`].
    pub fn report(base: &str, lease: U256, sequence: u32) -> String {
        format!("{}/v1/leases/{lease}/reports/{sequence}", trim(base))
    }

    /// The URL of [`PROOF`].
    pub fn proof(base: &str, lease: U256, sequence: u32, index: usize) -> String {
        format!(
            "{}/v1/leases/{lease}/reports/{sequence}/proof/{index}",
            trim(base)
        )
    }

    /// The URL of [`LOGS`] (without a query).
    pub fn logs(base: &str, lease: U256) -> String {
        format!("{}/v1/leases/{lease}/logs", trim(base))
    }

    /// The URL of [`SHELL`] (without a query), `ws://` or `wss://` for an `http(s)://` base.
    pub fn shell(base: &str, lease: U256) -> String {
        let base = trim(base);
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_string()
        };
        format!("{base}/v1/leases/{lease}/shell")
    }

    /// The URL of [`EVENTS`] (without a query).
    pub fn events(base: &str, lease: U256) -> String {
        format!("{}/v1/leases/{lease}/events", trim(base))
    }

    fn trim(base: &str) -> &str {
        base.trim_end_matches('/')
    }
}

pub use crate::upload::SIGNATURE_HEADER;

/// Largest request body the gateway reads; larger manifests are refused unread.
pub const MAX_BODY: usize = 1 << 20;

/// Every error the gateway answers with (any 4xx or 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}

/// The answer to a manifest upload: 202 and `accepted` when stored and valid, 422 with the
/// reason when stored but invalid (the keeper rejects the lease on chain with that reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAnswer {
    /// The lease.
    #[serde(with = "decimal")]
    pub lease: U256,
    /// Whether the manifest passed the provider's checks.
    pub accepted: bool,
    /// The reason the keeper will reject the lease with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<RejectReason>,
    /// The rule the manifest broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/leases/{id}`: the lease at the latest block and what the provider runs for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAnswer {
    /// The lease.
    #[serde(with = "decimal")]
    pub lease: U256,
    /// Its status on chain.
    pub status: LeaseStatus,
    /// The endpoint confirmed on chain (empty until confirmed).
    pub endpoint: String,
    /// The manifest version on chain (0: the one it was opened with).
    pub manifest_version: u32,
    /// The tenant.
    pub tenant: Address,
    /// How the provider got the manifest (`upload` or `url`), if it has it.
    pub manifest_received: Option<String>,
    /// The workload: `null` when there is none, a note when the engine did not answer.
    pub workload: Option<WorkloadAnswer>,
}

/// What [`LeaseAnswer::workload`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkloadAnswer {
    /// The engine's view of the workload.
    Seen(WorkloadState),
    /// Why it is not known (e.g. `engine unreachable`).
    Unknown(String),
}

/// A workload as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadState {
    /// Every service runs.
    pub running: bool,
    /// The image each service runs, pinned to the digest the provider pulled
    /// (`repository@sha256:…`; images built on the provider's host are not listed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    /// Running state by manifest service.
    pub services: BTreeMap<String, bool>,
    /// The manifest version all its objects run (`null` while they disagree).
    pub manifest_version: Option<u32>,
}

/// One usage report as the keeper built and sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// Its sequence number on chain.
    pub sequence: u32,
    /// Period start, chain seconds (exclusive).
    pub from: u64,
    /// Period end, chain seconds (inclusive).
    pub to: u64,
    /// CPU millicore-seconds.
    pub cpu_units: u64,
    /// Memory MiB-seconds.
    pub memory_units: u64,
    /// Storage GiB-seconds.
    pub storage_units: u64,
    /// Whether a value was cut to its cap.
    pub clamped: bool,
    /// Merkle root over the period's samples.
    pub samples_root: B256,
    /// Samples under the root.
    pub sample_count: usize,
    /// The transaction that carried it, once sent.
    pub tx: Option<B256>,
}

/// `GET /v1/leases/{id}/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportsAnswer {
    /// The lease.
    #[serde(with = "decimal")]
    pub lease: U256,
    /// Its reports, oldest first.
    pub reports: Vec<ReportSummary>,
}

/// `GET /v1/leases/{id}/reports/{sequence}`: a report with everything needed to recompute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAnswer {
    /// The lease.
    #[serde(with = "decimal")]
    pub lease: U256,
    /// The report.
    #[serde(flatten)]
    pub report: ReportSummary,
    /// The samples under its root, in leaf order.
    pub samples: Vec<Sample>,
    /// Per container, the last sample before the period (where the first CPU delta starts).
    pub baseline: Vec<Sample>,
    /// The longest gap between samples still billed for memory.
    pub max_gap_ms: u64,
}

/// `GET /v1/leases/{id}/reports/{sequence}/proof/{index}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofAnswer {
    /// The sample.
    pub sample: Sample,
    /// Its leaf.
    pub leaf: B256,
    /// Sibling hashes from the leaf up.
    pub proof: Vec<B256>,
    /// The report's root.
    pub samples_root: B256,
}

/// A `U256` as a decimal string.
pub mod decimal {
    use alloy_primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes as `"12"`.
    pub fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads `"12"` (or `"0xc"`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_their_wire_shape() {
        let a = UploadAnswer {
            lease: U256::from(12),
            accepted: true,
            reject_reason: None,
            error: None,
        };
        let json = serde_json::to_value(&a).expect("serializes");
        assert_eq!(json, serde_json::json!({"lease": "12", "accepted": true}));
        let lease: LeaseAnswer = serde_json::from_value(serde_json::json!({
            "lease": "3", "status": "active", "endpoint": "http://h:1", "manifest_version": 1,
            "tenant": Address::ZERO, "manifest_received": "upload",
            "workload": {"running": true, "services": {"web": true}, "manifest_version": 1},
        }))
        .expect("parses");
        assert!(matches!(lease.workload, Some(WorkloadAnswer::Seen(ref w)) if w.running));
        let down: Option<WorkloadAnswer> =
            serde_json::from_value(serde_json::json!("engine unreachable")).expect("parses");
        assert_eq!(
            down,
            Some(WorkloadAnswer::Unknown("engine unreachable".into()))
        );
    }

    #[test]
    fn routes_match_the_router_patterns() {
        let l = U256::from(7);
        assert_eq!(routes::lease("http://g/", l), "http://g/v1/leases/7");
        assert_eq!(
            routes::proof("http://g", l, 2, 5),
            routes::PROOF
                .replace("{id}", "7")
                .replace("{sequence}", "2")
                .replace("{index}", "5")
                .replace("/v1", "http://g/v1")
        );
    }
}

/// One event of a lease's feed (`GET /v1/leases/{id}/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseEvent {
    /// Position in the feed (ask for events after it to continue).
    pub seq: i64,
    /// Unix seconds.
    pub at: u64,
    /// `deployed`, `image_pulled`, `confirmed`, `updated`, `restarted`, `crash_loop`,
    /// `suspended`, `resumed`, `rejected`, `terminated`.
    pub kind: String,
    /// What else is known: `service`, `exit_code`, `image`, `version`, `reason`, `endpoint`.
    pub detail: serde_json::Value,
}

/// `GET /v1/leases/{id}/events?after=<seq>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsAnswer {
    /// The lease.
    #[serde(with = "decimal")]
    pub lease: U256,
    /// Events after the one asked for, oldest first.
    pub events: Vec<LeaseEvent>,
}
