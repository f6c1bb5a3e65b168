//! Rows in PostgreSQL's `COPY ... FROM STDIN` text format: the fastest way to load a batch.

use std::fmt::Write as _;

/// A buffer of rows in COPY text format (tab-separated, `\N` for NULL, backslash escapes).
#[derive(Debug)]
pub struct CopyBuf {
    buf: String,
    fresh_row: bool,
}

impl Default for CopyBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            buf: String::new(),
            fresh_row: true,
        }
    }

    fn sep(&mut self) {
        if !self.fresh_row {
            self.buf.push('\t');
        }
        self.fresh_row = false;
    }

    /// An integer column.
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }

    /// A BYTEA column (hex format).
    pub fn bytea(&mut self, v: &[u8]) -> &mut Self {
        self.sep();
        self.buf.push_str("\\\\x");
        self.buf.push_str(&alloy::hex::encode(v));
        self
    }

    /// A text (or JSON, or NUMERIC) column, escaped.
    pub fn text(&mut self, v: &str) -> &mut Self {
        self.sep();
        for c in v.chars() {
            match c {
                '\\' => self.buf.push_str("\\\\"),
                '\t' => self.buf.push_str("\\t"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                // TEXT cannot hold a NUL, and one would fail the whole batch: it is written as
                // the four characters `\x00` (callers keep exact bytes elsewhere).
                '\0' => self.buf.push_str("\\\\x00"),
                c => self.buf.push(c),
            }
        }
        self
    }

    /// A JSON column, serialized straight into the buffer (escaped like text).
    pub fn json(
        &mut self,
        v: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<&mut Self, serde_json::Error> {
        let json = serde_json::to_string(v)?;
        // serde_json escapes control characters (tab, newline, NUL) inside strings, so the
        // only character COPY's text format still needs escaped is the backslash.
        self.sep();
        self.buf.push_str(&json.replace('\\', "\\\\"));
        Ok(self)
    }

    /// A nullable text column.
    pub fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => {
                self.sep();
                self.buf.push_str("\\N");
                self
            }
        }
    }

    /// A TIMESTAMPTZ column from Unix seconds (UTC).
    pub fn unix_time(&mut self, secs: u64) -> &mut Self {
        self.sep();
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let _ = write!(
            self.buf,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        self
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.buf.push('\n');
        self.fresh_row = true;
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_bytes()
    }

    /// Whether no row was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rows_with_escapes_nulls_and_times() {
        let mut b = CopyBuf::new();
        b.int(-5)
            .bytea(&[0xab, 0x01])
            .text("a\tb\\c\nd")
            .opt_text(None)
            .unix_time(1_700_000_000);
        b.end_row();
        b.int(1);
        b.end_row();
        let s = std::str::from_utf8(b.as_bytes()).expect("utf8");
        assert_eq!(
            s,
            "-5\t\\\\xab01\ta\\tb\\\\c\\nd\t\\N\t2023-11-14 22:13:20+00\n1\n"
        );
    }

    #[test]
    fn json_columns_keep_escapes_that_copy_would_otherwise_eat() {
        let mut args = serde_json::Map::new();
        args.insert("endpoint".into(), serde_json::json!("a\tb\\c\"d\n"));
        let mut b = CopyBuf::new();
        b.int(1).json(&args).expect("serializes");
        b.end_row();
        let s = std::str::from_utf8(b.as_bytes()).expect("utf8");
        // serde_json wrote `{"endpoint":"a\tb\\c\"d\n"}`; every backslash is doubled
        // for COPY, which reads it back as exactly that JSON text.
        assert_eq!(s, "1\t{\"endpoint\":\"a\\\\tb\\\\\\\\c\\\\\"d\\\\n\"}\n");
    }

    #[test]
    fn civil_dates_across_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
