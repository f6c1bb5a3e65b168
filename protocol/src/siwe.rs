//! Sign-In with Ethereum (EIP-4361) messages, as the gateway checks them for private apps and
//! a client writes them: parsing (strict, bounded), the text form, and the checks a server
//! must make (domain, chain, nonce, time window). Signatures are EIP-191 `personal_sign`
//! over the text; an EOA's is recovered here, a contract wallet's is asked of the chain
//! (ERC-1271) by whoever has one.
//!
//! ```text
//! web-1-1a2b3c4d.apps.example.com wants you to sign in with your Ethereum account:
//! 0x70997970C51812dc3A010C7d01b50e0d17dc79C8
//!
//! Sign in to a Berth app.
//!
//! URI: https://web-1-1a2b3c4d.apps.example.com/
//! Version: 1
//! Chain ID: 31337
//! Nonce: 3f9a0c4e1b7d2a6c
//! Issued At: 2026-12-06T19:00:00Z
//! Expiration Time: 2026-12-06T20:00:00Z
//! ```

use alloy_primitives::{Address, B256, Signature, eip191_hash_message};

/// Largest message accepted.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Most resources listed.
const MAX_RESOURCES: usize = 16;
const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    /// The authority asking (`host[:port]`).
    pub domain: String,
    /// The signer.
    pub address: Address,
    /// Text for the person signing.
    pub statement: Option<String>,
    /// The resource the session is for.
    pub uri: String,
    /// Always `1`.
    pub version: String,
    /// The chain (EIP-155) the address is on.
    pub chain_id: u64,
    /// The server's single-use nonce (at least 8 alphanumerics).
    pub nonce: String,
    /// When it was written (unix seconds).
    pub issued_at: u64,
    /// When it stops being valid (unix seconds).
    pub expiration_time: Option<u64>,
    /// When it starts being valid (unix seconds).
    pub not_before: Option<u64>,
    /// The client's request id.
    pub request_id: Option<String>,
    /// Resources the session covers.
    pub resources: Vec<String>,
}

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiweError {
    /// Not a message of the EIP-4361 shape; says which part.
    #[error("not a Sign-In with Ethereum message: {0}")]
    Format(String),
    /// Written for another site.
    #[error("the message is for `{0}`, not this site")]
    Domain(String),
    /// Written for another chain.
    #[error("the message is for chain {got}, this app's lease is on chain {want}")]
    Chain {
        /// In the message.
        got: u64,
        /// Expected.
        want: u64,
    },
    /// Expired or not yet valid.
    #[error("the message is {0}")]
    Time(&'static str),
    /// The signature is not 65 bytes or not the signer's.
    #[error("the signature is not {0}'s")]
    Signature(Address),
}

fn format(what: impl Into<String>) -> SiweError {
    SiweError::Format(what.into())
}

impl SiweMessage {
    /// Parses the text of a message.
    pub fn parse(text: &str) -> Result<Self, SiweError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(format(format!("longer than {MAX_MESSAGE_BYTES} bytes")));
        }
        let mut lines = text.split('\n').peekable();
        let first = lines.next().unwrap_or_default();
        let domain = first
            .strip_suffix(PREAMBLE)
            .ok_or_else(|| format("the first line is not `<domain> wants you to sign in …`"))?;
        let domain = domain.strip_prefix("https://").unwrap_or(domain).to_owned();
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return Err(format("no domain"));
        }
        let address = lines
            .next()
            .and_then(|a| a.parse::<Address>().ok().filter(|_| a.starts_with("0x")))
            .ok_or_else(|| format("the second line is not an address"))?;
        if lines.next() != Some("") {
            return Err(format("no blank line after the address"));
        }
        let mut statement = None;
        if lines
            .peek()
            .is_some_and(|l| !l.is_empty() && !l.starts_with("URI: "))
        {
            statement = lines.next().map(str::to_owned);
        }
        while lines.peek() == Some(&"") {
            lines.next();
        }
        let mut field = |name: &str, required: bool| -> Result<Option<String>, SiweError> {
            match lines.peek().and_then(|l| l.strip_prefix(name)) {
                Some(v) => {
                    let v = v.to_owned();
                    lines.next();
                    Ok(Some(v))
                }
                None if required => Err(format(format!("no `{}` line", name.trim_end()))),
                None => Ok(None),
            }
        };
        let uri = field("URI: ", true)?.unwrap_or_default();
        let version = field("Version: ", true)?.unwrap_or_default();
        if version != "1" {
            return Err(format("`Version` is not 1"));
        }
        let chain_id = field("Chain ID: ", true)?
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format("`Chain ID` is not a number"))?;
        let nonce = field("Nonce: ", true)?.unwrap_or_default();
        if nonce.len() < 8 || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(format("`Nonce` is not 8-64 letters and digits"));
        }
        let time = |name: &str, v: Option<String>| -> Result<Option<u64>, SiweError> {
            v.map(|t| {
                rfc3339(&t).ok_or_else(|| format(format!("`{name}` is not an RFC 3339 time")))
            })
            .transpose()
        };
        let issued_at = time("Issued At", field("Issued At: ", true)?)?.unwrap_or_default();
        let expiration_time = time("Expiration Time", field("Expiration Time: ", false)?)?;
        let not_before = time("Not Before", field("Not Before: ", false)?)?;
        let request_id = field("Request ID: ", false)?;
        let mut resources = Vec::new();
        if field("Resources:", false)?.is_some() {
            while let Some(r) = lines.peek().and_then(|l| l.strip_prefix("- ")) {
                resources.push(r.to_owned());
                lines.next();
                if resources.len() > MAX_RESOURCES {
                    return Err(format(format!("more than {MAX_RESOURCES} resources")));
                }
            }
        }
        if lines.any(|l| !l.is_empty()) {
            return Err(format("unexpected lines after the fields"));
        }
        Ok(Self {
            domain,
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        })
    }

    /// The message's text, as signed.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{}{PREAMBLE}\n{}\n\n",
            self.domain,
            self.address.to_checksum(None)
        );
        if let Some(s) = &self.statement {
            t.push_str(s);
            t.push('\n');
        }
        t.push('\n');
        t.push_str(&format!(
            "URI: {}\nVersion: {}\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.uri,
            self.version,
            self.chain_id,
            self.nonce,
            to_rfc3339(self.issued_at)
        ));
        if let Some(e) = self.expiration_time {
            t.push_str(&format!("\nExpiration Time: {}", to_rfc3339(e)));
        }
        if let Some(n) = self.not_before {
            t.push_str(&format!("\nNot Before: {}", to_rfc3339(n)));
        }
        if let Some(r) = &self.request_id {
            t.push_str(&format!("\nRequest ID: {r}"));
        }
        if !self.resources.is_empty() {
            t.push_str("\nResources:");
            for r in &self.resources {
                t.push_str(&format!("\n- {r}"));
            }
        }
        t
    }

    /// Checks that the message was written for `host` (its domain's host part, any case)
    /// on `chain_id`, and that `now` (unix seconds) is within its validity. A message
    /// issued more than a minute in the future is refused (clocks may differ by that much).
    pub fn check(&self, host: &str, chain_id: u64, now: u64) -> Result<(), SiweError> {
        if crate::routing::normalize_host(&self.domain).as_deref() != Some(host) {
            return Err(SiweError::Domain(self.domain.clone()));
        }
        if self.chain_id != chain_id {
            return Err(SiweError::Chain {
                got: self.chain_id,
                want: chain_id,
            });
        }
        if self.issued_at > now + 60 {
            return Err(SiweError::Time("issued in the future"));
        }
        if self.expiration_time.is_some_and(|e| e <= now) {
            return Err(SiweError::Time("expired"));
        }
        if self.not_before.is_some_and(|n| n > now) {
            return Err(SiweError::Time("not valid yet"));
        }
        Ok(())
    }
}

/// The EIP-191 hash a wallet signs for `text` (`personal_sign`), which a contract wallet is
/// asked about (ERC-1271).
pub fn message_hash(text: &str) -> B256 {
    eip191_hash_message(text.as_bytes())
}

/// Whether `signature` over `text` recovers to `address` (an EOA's signature).
pub fn signed_by(text: &str, signature: &[u8], address: Address) -> bool {
    Signature::try_from(signature)
        .ok()
        .and_then(|s| s.recover_address_from_prehash(&message_hash(text)).ok())
        == Some(address)
}

/// Unix seconds of an RFC 3339 time (`2026-12-06T19:00:00Z`, fractions and offsets allowed).
pub fn rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            let (h, m) = o.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

/// `2026-12-06T19:00:00Z` for unix seconds `t`.
pub fn to_rfc3339(t: u64) -> String {
    let days = i64::try_from(t / 86_400).unwrap_or(i64::MAX);
    let rem = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

    fn text(statement: bool, extra: &str) -> String {
        let statement = if statement {
            "Sign in to a Berth app.\n"
        } else {
            ""
        };
        format!(
            "web-1-ab.apps.test:8444 wants you to sign in with your Ethereum account:\n{ADDRESS}\n\n{statement}\nURI: https://web-1-ab.apps.test:8444/\nVersion: 1\nChain ID: 31337\nNonce: abcdef0123456789\nIssued At: 2026-12-06T19:00:00Z{extra}"
        )
    }

    #[test]
    fn messages_parse_and_print_back_the_same() {
        for statement in [true, false] {
            let t = text(
                statement,
                "\nExpiration Time: 2026-12-06T20:00:00.123+01:00\nRequest ID: r1\nResources:\n- https://a\n- ipfs://b",
            );
            let m = SiweMessage::parse(&t).expect("parses");
            assert_eq!(m.domain, "web-1-ab.apps.test:8444");
            assert_eq!(m.address, ADDRESS.parse::<Address>().expect("address"));
            assert_eq!(m.statement.is_some(), statement);
            assert_eq!(m.chain_id, 31337);
            assert_eq!(m.issued_at, 1_796_583_600);
            assert_eq!(m.expiration_time, Some(1_796_583_600));
            assert_eq!(m.resources.len(), 2);
            let again = SiweMessage::parse(&m.to_text()).expect("its own text parses");
            assert_eq!(again, m);
        }
        // Lower-case addresses (what wallets return) are accepted.
        let lower = text(true, "").replace(ADDRESS, &ADDRESS.to_lowercase());
        assert!(SiweMessage::parse(&lower).is_ok());
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        for (bad, says) in [
            (
                text(true, "").replacen("wants you", "would like you", 1),
                "first line",
            ),
            (text(true, "").replace(ADDRESS, "0x1234"), "not an address"),
            (
                text(true, "").replace("Version: 1", "Version: 2"),
                "`Version`",
            ),
            (
                text(true, "").replace("Chain ID: 31337", "Chain ID: x"),
                "`Chain ID`",
            ),
            (
                text(true, "").replace("abcdef0123456789", "short"),
                "`Nonce`",
            ),
            (
                text(true, "").replace("2026-12-06T19:00:00Z", "yesterday"),
                "`Issued At`",
            ),
            (text(true, "").replace("URI: ", "Url: "), "`URI:`"),
            (text(true, "\nSomething: else"), "unexpected lines"),
            ("x".repeat(MAX_MESSAGE_BYTES + 1), "longer than"),
        ] {
            let e = SiweMessage::parse(&bad).expect_err(says).to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn checks_bind_host_chain_and_time() {
        let m = SiweMessage::parse(&text(
            true,
            "\nExpiration Time: 2026-12-06T20:00:00Z\nNot Before: 2026-12-06T19:00:00Z",
        ))
        .expect("parses");
        let at = 1_796_583_600 + 10;
        assert_eq!(m.check("web-1-ab.apps.test", 31337, at), Ok(()));
        assert!(matches!(
            m.check("web-2-ab.apps.test", 31337, at),
            Err(SiweError::Domain(_))
        ));
        assert!(matches!(
            m.check("web-1-ab.apps.test", 1, at),
            Err(SiweError::Chain { .. })
        ));
        assert_eq!(
            m.check("web-1-ab.apps.test", 31337, at + 3600),
            Err(SiweError::Time("expired"))
        );
        assert_eq!(
            m.check("web-1-ab.apps.test", 31337, at - 3600),
            Err(SiweError::Time("issued in the future"))
        );
        assert_eq!(
            m.check("web-1-ab.apps.test", 31337, at - 30),
            Err(SiweError::Time("not valid yet"))
        );
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2000-02-29T12:34:56Z"), Some(951_827_696));
        assert_eq!(rfc3339("2000-02-29T13:34:56+01:00"), Some(951_827_696));
        for t in [0, 951_827_696, 1_796_583_600, 4_102_444_800] {
            assert_eq!(rfc3339(&to_rfc3339(t)), Some(t));
        }
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-12-06 19:00:00Z",
            "2026-12-06T19:00:00",
            "2026-12-06T19:00:00.Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_personal_sign_signature_is_its_signers_and_nobody_elses() {
        use alloy_signer::SignerSync;
        let wallet = alloy_signer_local::PrivateKeySigner::random();
        let mut m = SiweMessage::parse(&text(true, "")).expect("parses");
        m.address = wallet.address();
        let t = m.to_text();
        let sig = wallet
            .sign_message_sync(t.as_bytes())
            .expect("signs")
            .as_bytes();
        assert!(signed_by(&t, &sig, wallet.address()));
        assert!(
            !signed_by(&t, &sig, Address::repeat_byte(1)),
            "another address"
        );
        assert!(
            !signed_by(&format!("{t}\n"), &sig, wallet.address()),
            "another text"
        );
        assert!(
            !signed_by(&t, &sig[..64], wallet.address()),
            "a truncated signature"
        );
    }
}
