//! Berth indexer: follows the chain and mirrors every event of the Berth contracts into
//! Postgres (DESIGN.md, "Indexer rules").
//!
//! - [`events`] decodes every log of the watched contracts from the compiled artifacts;
//! - [`store`] writes batches idempotently with the checkpoint in one transaction, and rolls
//!   back above a common ancestor;
//! - [`entities`] keeps the analysts' tables (leases, providers, revenue, spend) current as
//!   batches arrive and are rolled back;
//! - [`sync`] walks the chain: adaptive `eth_getLogs` ranges, head following, reorg detection;
//! - [`config`], [`metrics`] and [`rpc`] serve the `berth-indexer` binary.

pub mod abi;
pub mod alerts;
pub mod config;
pub mod copy;
pub mod entities;
pub mod events;
pub mod metrics;
pub mod rpc;
pub mod store;
pub mod sync;
