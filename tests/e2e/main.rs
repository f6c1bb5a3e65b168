//! Berth's end-to-end tests: one binary, one module per scenario.

mod indexer;
mod lease_lifecycle;
