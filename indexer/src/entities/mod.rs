//! The analysts' entity tables (`lease_state`, `provider_state`, `provider_revenue_daily`,
//! `tenant_spend`), maintained incrementally: each batch of events is folded here into one
//! delta per lease, provider, provider-day and tenant, and [`write`] merges the deltas into
//! the tables in the batch's transaction. Batches arrive in chain order, so a delta's
//! "latest" values replace the stored ones, its sums add, its extremes compare. A rollback
//! subtracts the removed events' sums from the additive tables and re-folds the touched
//! leases and providers from the events that remain.
//!
//! The fold mirrors the reference views `berth.*_from_events` (SQL over the event log);
//! tests compare the two after every kind of history.

pub mod undo;
pub mod write;

use std::collections::BTreeMap;

use alloy::primitives::U256;
use serde_json::{Map, Value};

/// One stored event, as the fold reads it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// `registry` or `escrow`.
    pub contract: &'a str,
    /// Solidity event name.
    pub event: &'a str,
    /// The lease it concerns (`berth.events.lease_id`), as a decimal string.
    pub lease_id: Option<&'a str>,
    /// The provider it concerns (`berth.events.provider_id`), as a decimal string.
    pub provider_id: Option<&'a str>,
    /// Decoded arguments (integers as decimal strings).
    pub args: &'a Map<String, Value>,
    /// Block timestamp (seconds).
    pub block_time: u64,
}

/// What a run of events did to one lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseDelta {
    pub provider_id: Option<String>,
    pub tenant: Option<String>,
    pub openings: i64,
    pub withdrawals: i64,
    /// Status after the latest status event of the run (`None`: no status event).
    pub status_event: Option<&'static str>,
    pub close_reason: Option<&'static str>,
    pub price_version: Option<i64>,
    pub cpu_millis: Option<i64>,
    pub memory_mib: Option<i64>,
    pub storage_gib: Option<i64>,
    pub manifest_hash: Option<String>,
    pub manifest_uri: Option<String>,
    pub manifest_version: Option<i64>,
    pub max_rate: Option<U256>,
    pub deposit: Option<U256>,
    pub opened_at: Option<u64>,
    pub topped_up: U256,
    pub auto_topped_up: U256,
    pub charged: U256,
    pub refunded: U256,
    pub withdrawn: U256,
    pub claimed: U256,
    pub dispute_opened: U256,
    pub dispute_to_provider: U256,
    pub dispute_to_tenant: U256,
    pub report_count: Option<i64>,
    pub last_report_to: Option<i64>,
    pub confirmed_at: Option<u64>,
    pub endpoint: Option<String>,
    pub last_suspended_at: Option<u64>,
    pub closed_at_s: Option<i64>,
    pub reports: i64,
    pub cpu_units: U256,
    pub memory_units: U256,
    pub reported_seconds: i64,
}

/// What a run of events did to one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderDelta {
    pub registered: bool,
    pub owner: Option<String>,
    pub token: Option<String>,
    pub registered_at: Option<u64>,
    pub reg_operator: Option<String>,
    pub reg_endpoint: Option<String>,
    pub reg_attributes: Option<String>,
    pub reg_stake: Option<U256>,
    pub operator: Option<String>,
    pub endpoint: Option<String>,
    pub attributes: Option<String>,
    pub status_code: Option<i64>,
    /// The latest `CapacityUpdated`: cpu millis, memory MiB, storage GiB.
    pub capacity: Option<(i64, i64, i64)>,
    pub price_version: Option<i64>,
    pub stake_added: U256,
    pub stake_withdrawn: U256,
    /// Reserved minus released.
    pub reserved_cpu: i64,
    pub reserved_memory: i64,
    pub reservations: i64,
}

/// Charges reported for one provider on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevenueDelta {
    pub charged: U256,
    pub reports: i64,
}

/// Deltas of a run of events, keyed by lease id, provider id and (day start, provider id);
/// ids are the decimal strings the event log stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fold {
    pub leases: BTreeMap<String, LeaseDelta>,
    pub providers: BTreeMap<String, ProviderDelta>,
    pub revenue: BTreeMap<(u64, String), RevenueDelta>,
}

/// Reasons of `LeaseRejected`, by value (`RejectReason` in the contracts).
const REJECT_REASONS: [&str; 10] = [
    "unspecified",
    "capacity_unavailable",
    "insufficient_runway",
    "manifest_unavailable",
    "manifest_hash_mismatch",
    "manifest_invalid",
    "resources_exceed_reservation",
    "policy_violation",
    "secrets_unreadable",
    "image_unavailable",
];

/// A field as Postgres's `args->>'key'` shows it: a string as itself, anything else (a
/// `{"hex", "text"}` object for a string that was not UTF-8) as jsonb prints it.
fn text(args: &Map<String, Value>, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(jsonb_text(other)),
    }
}

/// jsonb's text form: `", "` and `": "` separators, object keys by length, then bytes.
fn jsonb_text(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}: {}", Value::String(k.clone()), jsonb_text(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(jsonb_text).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn uint(args: &Map<String, Value>, key: &str) -> Option<U256> {
    args.get(key)?.as_str()?.parse().ok()
}

fn int(args: &Map<String, Value>, key: &str) -> Option<i64> {
    args.get(key)?.as_str()?.parse().ok()
}

fn add(sum: &mut U256, args: &Map<String, Value>, key: &str) {
    *sum = sum.saturating_add(uint(args, key).unwrap_or_default());
}

fn greatest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn least<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The first day (00:00 UTC, as Unix seconds) of a block time.
pub fn day_of(block_time: u64) -> u64 {
    block_time - block_time % 86_400
}

impl Fold {
    /// Folds one event in; events must come in chain order.
    pub fn apply(&mut self, e: EventRef<'_>) {
        match e.contract {
            "escrow" => self.apply_escrow(e),
            "registry" => self.apply_registry(e),
            _ => {}
        }
    }

    fn apply_escrow(&mut self, e: EventRef<'_>) {
        let a = e.args;
        let Some(lease_id) = e.lease_id else {
            return;
        };
        if e.event == "UsageReported"
            && let Some(provider) = e.provider_id
        {
            let day = self
                .revenue
                .entry((day_of(e.block_time), provider.to_owned()))
                .or_default();
            add(&mut day.charged, a, "charge");
            day.reports += 1;
        }
        let l = self.leases.entry(lease_id.to_owned()).or_default();
        match e.event {
            "LeaseOpened" => {
                l.openings += 1;
                l.provider_id = greatest(l.provider_id.take(), e.provider_id.map(str::to_owned));
                l.tenant = greatest(l.tenant.take(), text(a, "tenant"));
                l.status_event = Some("pending");
                l.price_version = greatest(l.price_version, int(a, "priceVersion"));
                l.cpu_millis = greatest(l.cpu_millis, int(a, "cpuMillis"));
                l.memory_mib = greatest(l.memory_mib, int(a, "memoryMiB"));
                l.storage_gib = greatest(l.storage_gib, int(a, "storageGiB"));
                l.manifest_hash = text(a, "manifestHash");
                l.manifest_uri = text(a, "manifestUri");
                l.max_rate = greatest(l.max_rate, uint(a, "maxRate"));
                l.deposit = greatest(l.deposit, uint(a, "deposit"));
                l.opened_at = least(l.opened_at, Some(e.block_time));
            }
            "LeaseConfirmed" => {
                l.status_event = Some("active");
                l.confirmed_at = least(l.confirmed_at, Some(e.block_time));
                l.endpoint = greatest(l.endpoint.take(), text(a, "endpoint"));
            }
            "LeaseResumed" => l.status_event = Some("active"),
            "LeaseSuspended" => {
                l.status_event = Some("suspended");
                l.last_suspended_at = greatest(l.last_suspended_at, Some(e.block_time));
            }
            "LeaseRejected" => {
                l.status_event = Some("rejected");
                if let Some(reason) = int(a, "reason")
                    .and_then(|r| usize::try_from(r).ok())
                    .and_then(|r| REJECT_REASONS.get(r))
                {
                    l.close_reason = Some(reason);
                }
            }
            "LeaseClosed" => {
                let reason = int(a, "reason");
                // Other reasons are never emitted by the escrow: status left as it was.
                match reason {
                    Some(1 | 2) => l.status_event = Some("closing"),
                    Some(3) => l.status_event = Some("rejected"),
                    Some(4) => l.status_event = Some("cancelled"),
                    _ => {}
                }
                match reason {
                    Some(1) => l.close_reason = Some("tenant_closed"),
                    Some(2) => l.close_reason = Some("exhausted"),
                    Some(4) => l.close_reason = Some("cancelled"),
                    _ => {}
                }
                l.closed_at_s = greatest(l.closed_at_s, int(a, "closedAt"));
            }
            "ManifestUpdated" => {
                l.manifest_hash = text(a, "manifestHash");
                l.manifest_uri = text(a, "manifestUri");
                l.manifest_version = greatest(l.manifest_version, int(a, "version"));
            }
            "LeaseToppedUp" => add(&mut l.topped_up, a, "amount"),
            "AutoTopUpExecuted" => add(&mut l.auto_topped_up, a, "amount"),
            "UsageReported" => {
                add(&mut l.charged, a, "charge");
                l.reports += 1;
                add(&mut l.cpu_units, a, "cpuUnits");
                add(&mut l.memory_units, a, "memoryUnits");
                l.reported_seconds +=
                    int(a, "to").unwrap_or_default() - int(a, "from").unwrap_or_default();
                l.report_count = greatest(l.report_count, int(a, "sequence"));
                l.last_report_to = greatest(l.last_report_to, int(a, "to"));
            }
            "Refunded" => add(&mut l.refunded, a, "amount"),
            "LeaseWithdrawn" => {
                l.withdrawals += 1;
                add(&mut l.withdrawn, a, "amount");
            }
            "ChargesClaimed" => add(&mut l.claimed, a, "amount"),
            "ChargesDisputed" => add(&mut l.dispute_opened, a, "amount"),
            "DisputeResolved" => {
                add(&mut l.dispute_to_provider, a, "toProvider");
                add(&mut l.dispute_to_tenant, a, "toTenant");
            }
            _ => {}
        }
    }

    fn apply_registry(&mut self, e: EventRef<'_>) {
        let a = e.args;
        let Some(provider_id) = e.provider_id else {
            return;
        };
        let p = self.providers.entry(provider_id.to_owned()).or_default();
        match e.event {
            "ProviderRegistered" => {
                p.registered = true;
                p.owner = text(a, "owner");
                p.token = text(a, "token");
                p.registered_at = Some(e.block_time);
                p.reg_operator = text(a, "operator");
                p.reg_endpoint = text(a, "endpoint");
                p.reg_attributes = text(a, "attributes");
                p.reg_stake = uint(a, "stake");
            }
            "OperatorUpdated" => p.operator = text(a, "operator"),
            "EndpointUpdated" => p.endpoint = text(a, "endpoint"),
            "AttributesUpdated" => p.attributes = text(a, "attributes"),
            "ProviderStatusChanged" => p.status_code = int(a, "status"),
            "CapacityUpdated" => {
                p.capacity = Some((
                    int(a, "cpuMillis").unwrap_or_default(),
                    int(a, "memoryMiB").unwrap_or_default(),
                    int(a, "storageGiB").unwrap_or_default(),
                ));
            }
            "PricesUpdated" => p.price_version = int(a, "version"),
            "StakeAdded" => add(&mut p.stake_added, a, "amount"),
            "StakeWithdrawn" => add(&mut p.stake_withdrawn, a, "amount"),
            "CapacityReserved" => {
                p.reserved_cpu += int(a, "cpuMillis").unwrap_or_default();
                p.reserved_memory += int(a, "memoryMiB").unwrap_or_default();
                p.reservations += 1;
            }
            "CapacityReleased" => {
                p.reserved_cpu -= int(a, "cpuMillis").unwrap_or_default();
                p.reserved_memory -= int(a, "memoryMiB").unwrap_or_default();
                p.reservations -= 1;
            }
            _ => {}
        }
    }

    /// Whether nothing was folded in.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.providers.is_empty() && self.revenue.is_empty()
    }
}

#[cfg(test)]
mod tests;
