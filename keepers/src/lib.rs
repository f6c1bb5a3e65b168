//! Berth keepers: the provider keeper (leases on chain become workloads in a cluster and
//! back) and its gateway (the provider's HTTP entry for tenants). See DESIGN.md, "Keeper
//! rules".

pub mod access;
pub mod caps;
pub mod chain;
pub mod config;
pub mod control;
pub mod cors;
pub mod domains;
pub mod engine;
pub mod events;
pub mod feed;
pub mod gateway;
pub mod intake;
pub mod logs;
pub mod metering;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod routes;
pub mod secrets;
pub mod shell;
pub mod signer;
pub mod store;
