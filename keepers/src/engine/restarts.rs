//! Containers the engine restarted after they exited (restart policy `Always`): podman's
//! `died` and `restart` events, Kubernetes' restart counts. The caller keeps a
//! [`RestartWatch`] between calls, so each restart is reported once.

use std::collections::HashMap;

use alloy::primitives::U256;

/// One restart of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Lease.
    pub lease: U256,
    /// Manifest service.
    pub service: String,
    /// Container (podman id, or `<pod>/<container>` on Kubernetes).
    pub container: String,
    /// How the run before exited, when the engine says.
    pub exit_code: Option<i64>,
    /// When (unix nanoseconds on podman; the restart count on Kubernetes).
    pub mark: i128,
}

/// What was reported already.
#[derive(Debug, Clone, Default)]
pub struct RestartWatch {
    /// podman: nanoseconds of the newest event read.
    pub(super) since_nanos: i128,
    /// podman: each container's last exit code, from its `died` event.
    pub(super) exit_codes: HashMap<String, i64>,
    /// Kubernetes: each container's restart count when last seen.
    pub(super) counts: HashMap<String, i32>,
}

impl RestartWatch {
    /// Starts `lookback_s` seconds before now: restarts from before are ignored.
    pub fn new(lookback_s: i64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            since_nanos: now - i128::from(lookback_s) * 1_000_000_000,
            ..Self::default()
        }
    }
}
