//! Berth's end-to-end tests: one binary, one module per scenario.

mod alerts;
mod analyst_queries;
mod cli;
mod cli_harness;
mod console;
mod domains;
mod gated;
mod gateway;
mod hostile;
mod indexer;
mod indexer_process;
mod isolation;
mod keeper;
mod lease_lifecycle;
mod logs;
mod metering;
mod private;
mod protocol;
mod registry;
mod runway;
mod scale;
mod secrets;
mod shell;
mod volumes;
mod wallet;
