//! What a Berth tenant and a Berth provider must compute identically, in one place: the
//! manifest format and its rules, the digest a tenant signs to upload a manifest, the units
//! and Merkle root of a usage report, the price formulas the contracts also compute, the
//! lease states the contracts number, the gateway's API (paths and JSON bodies) and the
//! hostnames its apps are served under, and the Sign-In with Ethereum messages of private apps.
//!
//! Pure code: no async runtime, no network, no files. The provider's keeper and the `berth`
//! CLI both depend on it; the CLI does not depend on the keeper.

pub mod access;
pub mod api;
pub mod lease;
pub mod logs;
pub mod manifest;
pub mod metering;
pub mod pricing;
pub mod routing;
pub mod secrets;
pub mod shell;
pub mod siwe;
pub mod upload;

/// Solidity's `PRICE_SCALE`: prices are in billionths of a token base unit per unit-second.
pub const PRICE_SCALE: u64 = 1_000_000_000;
