//! What a command prints on stdout: JSON with `--json`, else text for people. Progress and
//! errors go to stderr, so stdout can be piped.

use serde_json::Value;

/// Prints a command's result. A reader that went away (`berth status --json | head`) is
/// not an error: the output is simply not wanted any more.
pub fn emit(json: bool, value: &Value, text: impl FnOnce() -> String) {
    let out = if json {
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    } else {
        text().trim_end().to_owned()
    };
    if !out.is_empty() {
        write_stdout(&mut std::io::stdout().lock(), &out);
    }
}

/// Writes `text` and a newline; a closed pipe ends the process quietly with status 0, as
/// standard Unix tools do, instead of a panic.
fn write_stdout(w: &mut impl std::io::Write, text: &str) {
    if let Err(e) = writeln!(w, "{text}").and_then(|()| w.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the result: {e}");
        std::process::exit(1);
    }
}

/// Left-aligned columns: a header and rows, each cell padded to its column's width.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// A unix time as `YYYY-MM-DD HH:MM:SS UTC` (no time zone data needed).
pub fn utc(unix: u64) -> String {
    let t = berth_protocol::siwe::to_rfc3339(unix);
    format!("{} UTC", t.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod utc_tests {
    use super::utc;

    #[test]
    fn unix_times_read_as_utc_dates() {
        for (unix, text) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (1_798_831_204, "2027-01-01 19:20:04 UTC"),
            (4_102_444_799, "2099-12-31 23:59:59 UTC"),
        ] {
            assert_eq!(utc(unix), text, "{unix}");
        }
    }
}
