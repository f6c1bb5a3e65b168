//! Typed values for config fields. In TOML they are numbers or text; in the environment
//! they are always text. Durations keep the unit their field's name says (`poll_interval_ms =
//! 500`) and also take text with units (`"2s"`, `"1m 30s"`, `"250ms"`); URLs are parsed and
//! their scheme checked; an optional value may be written as empty text to turn it off.

use std::{fmt, marker::PhantomData, str::FromStr, time::Duration};

use serde::{
    Deserializer,
    de::{self, Visitor},
};
pub use url::Url;

use super::ConfigError;

/// A duration whose bare numbers are milliseconds: `#[serde(deserialize_with = "millis")]`.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor {
        unit: Duration::from_millis(1),
        name: "milliseconds",
    })
}

/// A duration whose bare numbers are seconds: `#[serde(deserialize_with = "seconds")]`.
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor {
        unit: Duration::from_secs(1),
        name: "seconds",
    })
}

struct DurationVisitor {
    unit: Duration,
    name: &'static str,
}

impl DurationVisitor {
    fn count<E: de::Error>(&self, n: u64) -> Result<Duration, E> {
        u32::try_from(n)
            .ok()
            .and_then(|n| self.unit.checked_mul(n))
            .ok_or_else(|| E::custom(format!("{n} {} is too long", self.name)))
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a whole number of {} or a duration like \"2s\" or \"1m 30s\"",
            self.name
        )
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        self.count(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        let n = u64::try_from(n).map_err(|_| E::custom("a duration cannot be negative"))?;
        self.count(n)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return self.count(n);
        }
        humantime::parse_duration(s).map_err(|e| {
            E::custom(format!(
                "`{s}` is not a duration ({e}); write a whole number of {} or e.g. \"2s\", \"1m 30s\"",
                self.name
            ))
        })
    }
}

/// `T` parsed from text, where empty text (or an absent field) means `None`:
/// `#[serde(default, deserialize_with = "optional")]`.
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct Optional<T>(PhantomData<T>);
    impl<T: FromStr> Visitor<'_> for Optional<T>
    where
        T::Err: fmt::Display,
    {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("text, or empty text to leave it unset")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<T>, E> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|e| E::custom(format!("`{s}`: {e}")))
        }
    }
    d.deserialize_str(Optional(PhantomData))
}

/// Fails unless `url`'s scheme is one of `schemes`, naming `field`.
pub fn require_scheme(field: &'static str, url: &Url, schemes: &[&str]) -> Result<(), ConfigError> {
    if schemes.contains(&url.scheme()) {
        return Ok(());
    }
    let wanted: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    Err(ConfigError::invalid(
        field,
        format!("`{url}` must be a {} URL", wanted.join(" or ")),
    ))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "millis")]
        poll_ms: Duration,
        #[serde(deserialize_with = "seconds")]
        timeout_s: Duration,
        #[serde(default, deserialize_with = "optional")]
        addr: Option<std::net::SocketAddr>,
    }

    fn probe(text: &str) -> Result<Probe, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_take_the_fields_unit_or_text_with_units() {
        let p = probe("poll_ms = 500\ntimeout_s = 30").expect("numbers");
        assert_eq!(p.poll_ms, Duration::from_millis(500));
        assert_eq!(p.timeout_s, Duration::from_secs(30));
        assert_eq!(p.addr, None);
        let p = probe("poll_ms = \"250\"\ntimeout_s = \"1m 30s\"\naddr = \"127.0.0.1:9\"")
            .expect("text");
        assert_eq!(p.poll_ms, Duration::from_millis(250));
        assert_eq!(p.timeout_s, Duration::from_secs(90));
        assert_eq!(p.addr, Some(([127, 0, 0, 1], 9).into()));
        let p = probe("poll_ms = \"2s\"\ntimeout_s = \"500ms\"\naddr = \"\"").expect("units");
        assert_eq!(p.poll_ms, Duration::from_secs(2));
        assert_eq!(p.timeout_s, Duration::from_millis(500));
        assert_eq!(p.addr, None);
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let e = probe("poll_ms = \"soon\"\ntimeout_s = 1").expect_err("not a duration");
        assert!(
            e.contains("`soon` is not a duration") && e.contains("milliseconds"),
            "{e}"
        );
        let e = probe("poll_ms = -1\ntimeout_s = 1").expect_err("negative");
        assert!(e.contains("cannot be negative"), "{e}");
        let e = probe("poll_ms = 1\ntimeout_s = 99999999999").expect_err("too long");
        assert!(e.contains("too long"), "{e}");
        let e = probe("poll_ms = 1\ntimeout_s = 1\naddr = \"nowhere\"").expect_err("bad addr");
        assert!(e.contains("`nowhere`"), "{e}");
    }

    #[test]
    fn schemes_are_checked_by_name() {
        let url: Url = "ftp://x".parse().expect("url");
        let e = require_scheme("rpc_url", &url, &["http", "https"]).expect_err("ftp");
        assert!(e.to_string().contains("http:// or https://"), "{e}");
        let url: Url = "https://x".parse().expect("url");
        require_scheme("rpc_url", &url, &["http", "https"]).expect("https");
    }
}
