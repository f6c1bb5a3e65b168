//! `GET /v1/leases/{id}/shell` (a WebSocket): a command in one of the lease's containers,
//! for its tenant (an access token for `shell`, [`crate::access`], in `Authorization` or
//! `?access=`), when the manifest enables it for the service (`shell: true`).
//!
//! Query: `service` (default: the lease's only service), `replica` (0-based), `tty`
//! (`true`: a terminal, stdout and stderr merged), `cols` and `rows` (the terminal's size),
//! `cmd` (the command as a JSON array of strings, percent-encoded; default `["/bin/sh"]`).
//!
//! Every WebSocket message is binary: its first byte is the channel, the rest the payload.
//!
//! | channel | direction | payload |
//! |---|---|---|
//! | 0 `STDIN` | client → keeper | bytes for the command's stdin (an empty payload closes it) |
//! | 1 `STDOUT` | keeper → client | bytes the command wrote (with a TTY: everything) |
//! | 2 `STDERR` | keeper → client | bytes written to stderr (without a TTY) |
//! | 3 `RESIZE` | client → keeper | [`Resize`] as JSON |
//! | 4 `EXIT` | keeper → client | [`Exit`] as JSON; the keeper closes the socket after it |
//!
//! The keeper records each session's start and end (who, lease, service, exit code) in its
//! log and the lease's events, never what passes through it.

use serde::{Deserialize, Serialize};

/// Channel of the command's stdin.
pub const STDIN: u8 = 0;
/// Channel of its stdout.
pub const STDOUT: u8 = 1;
/// Channel of its stderr.
pub const STDERR: u8 = 2;
/// Channel of terminal resizes.
pub const RESIZE: u8 = 3;
/// Channel of the exit status.
pub const EXIT: u8 = 4;

/// The largest message either side sends.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The longest command (its JSON).
pub const MAX_CMD: usize = 4096;

/// A terminal's new size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Its exit code (None: unknown, e.g. the container went away).
    pub code: Option<i64>,
    /// Why the session ended, for a person.
    pub message: String,
}

/// A message on `channel`.
pub fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload.len() + 1);
    m.push(channel);
    m.extend_from_slice(payload);
    m
}
