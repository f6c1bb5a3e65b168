//! Berth indexer: follows the chain and mirrors every event of the Berth contracts into
//! Postgres (DESIGN.md, "Indexer rules").
//!
//! This crate starts with the piece every other part of the indexer rests on: turning a raw
//! log of a watched contract into a typed event, with an unknown or undecodable log reported
//! as such instead of crashing the indexer.

pub mod events;
