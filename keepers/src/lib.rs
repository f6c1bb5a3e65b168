//! Berth keepers: the provider keeper (leases on chain become workloads in a cluster and
//! back) and the gateway (the provider's HTTP entry). See DESIGN.md, "Keeper rules".
//!
//! This crate starts with the rule the whole intake rests on: a keeper deploys only the
//! manifest bytes whose keccak256 equals the lease's `manifestHash`.

pub mod manifest;
