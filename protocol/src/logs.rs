//! The logs stream of `GET /v1/leases/{id}/logs` (Server-Sent Events): what a line is, the
//! cursor that lets a client reconnect without a line twice, and how the stream ends.
//!
//! - `event: line`, `id: <cursor>`, `data: <LogLine as JSON>`; one per line the workload
//!   printed, oldest first.
//! - a comment (`: ping`) every few seconds, so that no proxy takes a quiet stream for a dead
//!   one.
//! - `event: end`, `data: <LogEnd as JSON>`: the stream is over and says why.
//!
//! Query: `service` (default: the lease's only service), `replica` (0-based, default 0),
//! `tail` (lines before following; default all), `follow` (`true` to keep the stream open),
//! `after` (a cursor: only lines after it; the `Last-Event-ID` header works as well).

use serde::{Deserialize, Serialize};

/// The longest line sent; longer ones are cut there and marked `truncated`.
pub const MAX_LINE: usize = 16 * 1024;

/// One line the workload printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `stdout` or `stderr` (podman); `stdout` where the engine does not tell them apart.
    pub stream: String,
    /// When the engine received it (RFC 3339, as precise as the engine says).
    pub time: String,
    /// The text, without its newline; invalid UTF-8 replaced.
    pub line: String,
    /// The line was longer than [`MAX_LINE`] bytes and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Why a logs stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEnd {
    /// `lease_ended` (closed, rejected, exhausted: reconnecting is pointless),
    /// `suspended`, `workload_stopped` (the container exited or was replaced; reconnect to
    /// follow the next one), `done` (not following, everything sent) or `limit` (the
    /// stream reached the provider's longest; reconnect with the last cursor).
    pub reason: String,
    /// The same for a person.
    pub message: String,
}

/// Where a client is in a replica's log: the second of the last line it got and how many
/// lines of that second it got. Engines give times to the second at worst (podman's API), so
/// a second plus a count is exact where a timestamp alone would repeat or lose lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// Unix seconds of the last line received.
    pub second: i64,
    /// Lines of that second received.
    pub count: u32,
}

impl Cursor {
    /// `<second>-<count>`.
    pub fn encode(&self) -> String {
        format!("{}-{}", self.second, self.count)
    }

    /// Parses `<second>-<count>`.
    pub fn decode(text: &str) -> Option<Self> {
        let (s, n) = text.trim().split_once('-')?;
        Some(Self {
            second: s.parse().ok()?,
            count: n.parse().ok()?,
        })
    }

    /// Moves past a line of `second`; false when the line is at or before the cursor (already
    /// sent). Lines must come in the engine's order.
    pub fn advance(&mut self, second: i64) -> bool {
        if second > self.second {
            *self = Self { second, count: 1 };
            true
        } else {
            false
        }
    }
}

/// Walks lines past a cursor: lines of earlier seconds and the first `count` lines of the
/// cursor's second were sent before.
#[derive(Debug, Clone)]
pub struct Resume {
    at: Cursor,
    skip: u32,
}

impl Resume {
    /// Resumes after `after` (from the start with `None`).
    pub fn new(after: Option<Cursor>) -> Self {
        let at = after.unwrap_or(Cursor {
            second: i64::MIN,
            count: 0,
        });
        Self { at, skip: at.count }
    }

    /// Whether a line of `second` is new; if so, the cursor to send with it.
    pub fn next(&mut self, second: i64) -> Option<Cursor> {
        if second < self.at.second {
            return None;
        }
        if second == self.at.second {
            if self.skip > 0 {
                self.skip -= 1;
                return None;
            }
            self.at.count += 1;
            return Some(self.at);
        }
        self.at.advance(second);
        self.skip = 0;
        Some(self.at)
    }
}

/// Unix seconds of an RFC 3339 time (`2026-12-07T00:54:20.45Z`, `…+01:00`); None if it is not
/// one.
pub fn unix_seconds(time: &str) -> Option<i64> {
    crate::siwe::rfc3339(time).and_then(|s| i64::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-12-07T00:54:20Z"), Some(1_796_604_860));
        assert_eq!(
            unix_seconds("2026-12-07T00:54:20.456663340Z"),
            Some(1_796_604_860)
        );
        assert_eq!(
            unix_seconds("2026-12-07T01:54:20+01:00"),
            Some(1_796_604_860)
        );
        assert_eq!(unix_seconds("2000-02-29T12:00:00Z"), Some(951_825_600));
        for bad in [
            "",
            "yesterday",
            "2026-13-07T00:54:20Z",
            "2026-12-07T00:54:20",
            "2026-12-07T00:54:20Q",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn resuming_after_a_cursor_repeats_and_loses_nothing() {
        // Lines by second, in the engine's order; a client got the first four and reconnects.
        let seconds = [10, 10, 11, 11, 11, 12, 12, 13];
        let mut fresh = Resume::new(None);
        let cursors: Vec<Cursor> = seconds.iter().filter_map(|s| fresh.next(*s)).collect();
        assert_eq!(cursors.len(), seconds.len());
        let last = cursors[3];
        assert_eq!(
            last,
            Cursor {
                second: 11,
                count: 2
            }
        );
        assert_eq!(Cursor::decode(&last.encode()), Some(last));
        // The engine resends from the cursor's second (or earlier): only the rest is new.
        let mut resumed = Resume::new(Some(last));
        let again: Vec<Cursor> = seconds.iter().filter_map(|s| resumed.next(*s)).collect();
        assert_eq!(again, cursors[4..]);
        assert_eq!(Cursor::decode("12"), None);
        assert_eq!(Cursor::decode("a-1"), None);
    }
}
