//! A command run in a lease's container, the same for both engines: the engine bridges its
//! stdin, stdout and stderr, terminal size and exit status to channels the caller drives.

use tokio::sync::{mpsc, oneshot};

/// What to run where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The manifest service.
    pub service: String,
    /// Which replica (0-based, pods in name order).
    pub replica: usize,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// A terminal (stdout and stderr merged).
    pub tty: bool,
    /// The terminal's first size (cols, rows).
    pub size: Option<(u16, u16)>,
}

/// A running command. Dropping `stdin` closes its input; `exit` resolves when it ended (the
/// code when the engine knows it).
#[derive(Debug)]
pub struct ExecSession {
    /// Bytes for its stdin; an empty buffer closes it.
    pub stdin: mpsc::Sender<Vec<u8>>,
    /// What it writes: (channel, bytes), channel 1 stdout, 2 stderr.
    pub output: mpsc::Receiver<(u8, Vec<u8>)>,
    /// New terminal sizes (cols, rows).
    pub resize: mpsc::Sender<(u16, u16)>,
    /// Its exit code.
    pub exit: oneshot::Receiver<Option<i64>>,
}
