//! Sign-In with Ethereum sessions as sealed cookies, one format for the gateway that issues
//! them and the keeper that honours the API host's: `host`, `scope` (an app's lease id, or
//! `api:<chain id>` for the provider's API), the signed-in address and an expiry, sealed with
//! ChaCha20-Poly1305 under the provider's session key. Whoever holds no key can neither read
//! nor forge one.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, hex};
use ring::{
    aead::{self, Aad, LessSafeKey, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};

/// Additional data of every sealed cookie.
const AAD: &[u8] = b"berth-session-v1";
/// The longest cookie value opened (hex): a session is ~200 bytes.
const MAX_SEALED: usize = 1024;

pub use berth_protocol::routing::signin::COOKIE;

/// The scope of a session on the provider's API host for `chain_id`.
pub fn api_scope(chain_id: u64) -> String {
    format!("api:{chain_id}")
}

/// Why the session key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// The key file cannot be read.
    #[error("reading session_key_file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It does not hold a key.
    #[error("session_key_file {0} does not hold 32 bytes as 64 hex digits")]
    Malformed(PathBuf),
    /// No randomness.
    #[error("no randomness for the session key")]
    Random,
}

/// A session: who signed in, where, for what, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The hostname it was issued on.
    pub host: String,
    /// What it opens: an app's lease id, or [`api_scope`].
    pub scope: String,
    /// The signed-in address.
    pub address: Address,
    /// Unix seconds it ends at.
    pub expires: u64,
}

/// The key sessions are sealed with.
pub struct SessionKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key in `path` (64 hex digits; sessions survive restarts and every service with the
    /// file opens them), or a random one (sessions end with the process).
    pub fn load(path: Option<&Path>) -> Result<Self, SessionKeyError> {
        let rng = SystemRandom::new();
        let mut key = [0u8; 32];
        match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SessionKeyError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
                let bytes = bytes.ok_or_else(|| SessionKeyError::Malformed(path.to_owned()))?;
                key.copy_from_slice(&bytes);
            }
            None => rng.fill(&mut key).map_err(|_| SessionKeyError::Random)?,
        }
        let key =
            UnboundKey::new(&aead::CHACHA20_POLY1305, &key).map_err(|_| SessionKeyError::Random)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// The cookie value of `session` (None: no randomness for its nonce).
    pub fn seal(&self, session: &Session) -> Option<String> {
        let mut nonce = [0u8; 12];
        self.rng.fill(&mut nonce).ok()?;
        let Session {
            host,
            scope,
            address,
            expires,
        } = session;
        let mut data = format!("{host}\n{scope}\n{address:#x}\n{expires}").into_bytes();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(hex::encode(out))
    }

    /// The session sealed in `value`, if this key sealed it (expiry not checked).
    pub fn open(&self, value: &str) -> Option<Session> {
        if value.len() > MAX_SEALED {
            return None;
        }
        let mut raw = hex::decode(value).ok()?;
        if raw.len() < 12 + aead::CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&raw[..12]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut raw[12..],
            )
            .ok()?;
        let text = std::str::from_utf8(plain).ok()?;
        let mut parts = text.split('\n');
        let (host, scope, address, expires) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Session {
            host: host.to_owned(),
            scope: scope.to_owned(),
            address: address.parse().ok()?,
            expires: expires.parse().ok()?,
        })
    }
}

/// The value of cookie `name` in `headers`' `Cookie` lines.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            host: "api.example.org".into(),
            scope: api_scope(31337),
            address: Address::repeat_byte(7),
            expires: 1_900_000_000,
        }
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_key_and_untouched() {
        let key = SessionKey::load(None).expect("key");
        let sealed = key.seal(&session()).expect("sealed");
        assert_eq!(key.open(&sealed), Some(session()));
        assert_ne!(
            key.seal(&session()),
            Some(sealed.clone()),
            "a fresh nonce each time"
        );
        let other = SessionKey::load(None).expect("key");
        assert_eq!(other.open(&sealed), None, "another key");
        let mut flipped = sealed.clone().into_bytes();
        flipped[40] = if flipped[40] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("hex");
        assert_eq!(key.open(&flipped), None, "a changed byte");
        assert_eq!(key.open("zz"), None);
        assert_eq!(key.open(&"00".repeat(600)), None, "too long");
    }

    #[test]
    fn a_key_file_is_64_hex_digits_and_shared_keys_open_each_others_sessions() {
        let dir = std::env::temp_dir().join(format!("berth-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).expect("write");
        let (a, b) = (
            SessionKey::load(Some(&path)).expect("a"),
            SessionKey::load(Some(&path)).expect("b"),
        );
        let sealed = a.seal(&session()).expect("sealed");
        assert_eq!(b.open(&sealed), Some(session()));
        std::fs::write(&path, "abcd").expect("write");
        let e = SessionKey::load(Some(&path))
            .expect_err("short")
            .to_string();
        assert!(e.contains("64 hex digits") && e.contains("key"), "{e}");
        let missing = SessionKey::load(Some(&dir.join("absent")))
            .expect_err("missing")
            .to_string();
        assert!(missing.contains("session_key_file"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; __Host-berth-session=xyz".parse().expect("v"),
        );
        h.append(http::header::COOKIE, "b=2".parse().expect("v"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
