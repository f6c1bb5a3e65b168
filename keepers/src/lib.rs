//! Berth keepers: the provider keeper (leases on chain become workloads in a cluster and
//! back) and its gateway (the provider's HTTP entry for tenants). See DESIGN.md, "Keeper
//! rules".

pub mod engine;
pub mod manifest;
pub mod render;
