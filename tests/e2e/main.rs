//! Berth's end-to-end tests: one binary, one module per scenario.

mod lease_lifecycle;
