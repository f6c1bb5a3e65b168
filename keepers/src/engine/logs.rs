//! Reading a workload's logs, the same way for both engines: a query names one replica of one
//! service; the engine streams its lines with their times; bounded at every step (a line is
//! cut at [`MAX_LINE`] bytes, a podman frame over [`MAX_FRAME`] ends the stream).

use std::pin::Pin;

use berth_protocol::logs::{Cursor, MAX_LINE, unix_seconds};
use futures::Stream;

use super::EngineError;

/// The largest podman log frame read; one line is at most a few KiB in podman's log files.
pub const MAX_FRAME: usize = 1 << 20;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The manifest service.
    pub service: String,
    /// Which replica (0-based, in the order of the pods' names).
    pub replica: usize,
    /// Only the last `tail` lines before following.
    pub tail: Option<u32>,
    /// Keep the stream open for new lines.
    pub follow: bool,
    /// Lines from this cursor's second on (the caller skips what it sent before).
    pub after: Option<Cursor>,
}

/// One line as the engine gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// RFC 3339.
    pub time: String,
    /// Unix seconds of `time`.
    pub second: i64,
    /// The text without its newline.
    pub text: String,
    /// Cut at [`MAX_LINE`].
    pub truncated: bool,
}

/// Lines, oldest first, until the engine ends the stream (or an error).
pub type LogStream = Pin<Box<dyn Stream<Item = Result<RawLine, EngineError>> + Send>>;

/// Splits `<RFC 3339 time> <text>` (what both engines send with timestamps on) into a line.
pub fn parse_line(stream: &'static str, bytes: &[u8]) -> Option<RawLine> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let space = bytes.iter().position(|b| *b == b' ').unwrap_or(bytes.len());
    let time = std::str::from_utf8(&bytes[..space]).ok()?;
    let second = unix_seconds(time)?;
    let rest = bytes.get(space + 1..).unwrap_or_default();
    let truncated = rest.len() > MAX_LINE;
    let mut cut = rest.len().min(MAX_LINE);
    // Cut on a character boundary where the text is UTF-8.
    while cut > 0 && cut < rest.len() && (rest[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    Some(RawLine {
        stream,
        time: time.to_string(),
        second,
        text: String::from_utf8_lossy(&rest[..cut]).into_owned(),
        truncated,
    })
}

/// Splits a byte stream into lines, keeping at most [`MAX_LINE`] + 64 bytes of a line (the
/// rest of a longer line is dropped and the line marked truncated).
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    overflow: bool,
}

impl LineSplitter {
    const KEEP: usize = MAX_LINE + 64;

    /// Feeds `chunk`; returns the lines it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            self.push(&rest[..nl]);
            out.push((
                std::mem::take(&mut self.buf),
                std::mem::take(&mut self.overflow),
            ));
            rest = &rest[nl + 1..];
        }
        self.push(rest);
        out
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = Self::KEEP.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Decodes podman's multiplexed log stream: frames of `[stream, 0, 0, 0, length (u32 BE)]`
/// then `length` bytes, one log entry each.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Feeds `chunk`; returns the entries it completed as (stream, bytes).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<(&'static str, Vec<u8>)>, EngineError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 8 {
                return Ok(out);
            }
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if len > MAX_FRAME {
                return Err(EngineError::Unavailable(format!(
                    "a podman log frame of {len} bytes (at most {MAX_FRAME})"
                )));
            }
            if self.buf.len() < 8 + len {
                return Ok(out);
            }
            let stream = if self.buf[0] == 2 { "stderr" } else { "stdout" };
            let payload = self.buf[8..8 + len].to_vec();
            self.buf.drain(..8 + len);
            out.push((stream, payload));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, text: &str) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(text.len() as u32).to_be_bytes());
        f.extend_from_slice(text.as_bytes());
        f
    }

    #[test]
    fn podman_frames_split_anywhere_decode_to_lines() {
        let mut bytes = frame(1, "2026-12-07T00:54:20Z line 1\n");
        bytes.extend(frame(2, "2026-12-07T00:54:21Z err 1\n"));
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(5) {
            for (stream, payload) in d.feed(chunk).expect("decodes") {
                got.push(parse_line(stream, &payload).expect("a line"));
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].stream, got[0].text.as_str(), got[0].second),
            ("stdout", "line 1", 1_796_604_860)
        );
        assert_eq!((got[1].stream, got[1].text.as_str()), ("stderr", "err 1"));
    }

    #[test]
    fn an_oversized_frame_ends_the_stream_and_a_long_line_is_cut() {
        let mut d = FrameDecoder::default();
        let e = d
            .feed(&[1, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff])
            .expect_err("too large");
        assert!(e.to_string().contains("at most"), "{e}");

        let long = format!("2026-12-07T00:54:20Z {}é\n", "x".repeat(MAX_LINE - 1));
        let line = parse_line("stdout", long.as_bytes()).expect("a line");
        assert!(line.truncated);
        assert_eq!(
            line.text.len(),
            MAX_LINE - 1,
            "cut before the split character"
        );
        assert!(parse_line("stdout", b"not a time\n").is_none());
    }

    #[test]
    fn the_splitter_keeps_a_bounded_part_of_an_endless_line() {
        let mut s = LineSplitter::default();
        assert!(s.feed(b"2026-12-07T00:54:20Z a").is_empty());
        for _ in 0..100 {
            assert!(s.feed(&[b'y'; 4096]).is_empty());
        }
        let lines = s.feed(b"\n2026-12-07T00:54:21Z b\n");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].1 && lines[0].0.len() == LineSplitter::KEEP);
        assert_eq!(lines[1], (b"2026-12-07T00:54:21Z b".to_vec(), false));
    }
}
