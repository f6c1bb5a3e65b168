//! The provider's encryption keys and the opening of a lease's secrets
//! ([`berth_protocol::secrets`]). Keys come from a file readable by the keeper alone, or a
//! systemd credential, one line per version: `<version> <64 hex digits>`. A rotation adds a
//! line; old lines stay until the leases sealed to them have ended.
//!
//! Secret values live in memory only: they go from the envelope to the engine's secret
//! object (a podman secret, a Kubernetes Secret) and nowhere else. Errors and logs name
//! secrets, never values.

use std::{collections::BTreeMap, path::Path};

use alloy::primitives::{Address, B256, U256, keccak256};
use berth_bindings::RejectReason;
use berth_protocol::{
    manifest::Manifest,
    secrets::{self, Binding, KEY_BYTES, Recipient, SecretValues},
};

use crate::{intake::Rejection, render::RegistryLogin};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is readable by others than its owner (chmod 600)")]
    Exposed { path: String },
    #[error("{path} line {line}: expected `<version> <64 hex digits>`")]
    Line { path: String, line: usize },
    #[error("{path}: version {version} is listed twice")]
    Duplicate { path: String, version: u32 },
    #[error(
        "$CREDENTIALS_DIRECTORY is not set (is the keeper started by systemd with LoadCredential?)"
    )]
    NoCredentials,
}

/// The provider's X25519 private keys by version. `Debug` shows versions only.
#[derive(Clone, Default)]
pub struct ProviderKeys(BTreeMap<u32, [u8; KEY_BYTES]>);

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProviderKeys")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProviderKeys {
    /// Reads `setting`: a file path, or `credential:<name>` for systemd's credential
    /// directory.
    pub fn load(setting: &str) -> Result<Self, KeyFileError> {
        let path = match setting.strip_prefix("credential:") {
            Some(name) => std::path::PathBuf::from(
                std::env::var_os("CREDENTIALS_DIRECTORY").ok_or(KeyFileError::NoCredentials)?,
            )
            .join(name),
            None => setting.into(),
        };
        let shown = path.display().to_string();
        let read = |e| KeyFileError::Read {
            path: shown.clone(),
            source: e,
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed { path: shown });
        }
        Self::parse(&std::fs::read_to_string(&path).map_err(read)?, &path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, KeyFileError> {
        let shown = || path.display().to_string();
        let mut keys = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || KeyFileError::Line {
                path: shown(),
                line: i + 1,
            };
            let (version, hex) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            let version: u32 = version.parse().map_err(|_| bad())?;
            let bytes = alloy::hex::decode(hex.trim()).map_err(|_| bad())?;
            let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| bad())?;
            if version == 0 || keys.insert(version, key).is_some() {
                return Err(KeyFileError::Duplicate {
                    path: shown(),
                    version,
                });
            }
        }
        Ok(Self(keys))
    }

    /// The public key of `version`, if held.
    pub fn public(&self, version: u32) -> Option<[u8; KEY_BYTES]> {
        self.0
            .get(&version)
            .and_then(|k| secrets::public_key(k).ok())
    }

    /// The versions held.
    pub fn versions(&self) -> Vec<u32> {
        self.0.keys().copied().collect()
    }
}

/// What opening a lease's secrets needs to know about the lease and the provider.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSecrets<'a> {
    pub chain_id: u64,
    pub escrow: Address,
    pub provider_id: U256,
    pub lease: U256,
    pub tenant: Address,
    /// The manifest's text, as committed on chain.
    pub text: &'a str,
    /// The lease that first carried this envelope (None: never seen).
    pub owner: Option<U256>,
    /// The provider's key version in the registry now.
    pub current_version: u32,
}

/// The digest a manifest's provider envelope is remembered by.
pub fn envelope_digest(manifest: &Manifest) -> Option<B256> {
    manifest
        .secrets
        .as_ref()
        .map(|s| keccak256(s.sealed.as_bytes()))
}

fn refuse(rule: impl Into<String>) -> Rejection {
    Rejection::new(RejectReason::SecretsUnreadable, rule)
}

/// Opens `manifest`'s secrets for a lease (pure: the caller looks up the owner and the
/// registry's version). A new envelope must be sealed to the registry's current key; one
/// this lease already carried opens with any key still held.
pub fn open(
    keys: &ProviderKeys,
    manifest: &Manifest,
    lease: &LeaseSecrets<'_>,
) -> Result<Option<SecretValues>, Rejection> {
    let Some(sealed) = &manifest.secrets else {
        return Ok(None);
    };
    match lease.owner {
        Some(owner) if owner != lease.lease => {
            return Err(refuse(format!(
                "the secrets envelope was first carried by lease {owner}: replayed"
            )));
        }
        None if sealed.key_version != lease.current_version => {
            return Err(refuse(format!(
                "sealed to key version {}; the provider's key in the registry is version {}",
                sealed.key_version, lease.current_version
            )));
        }
        _ => {}
    }
    let Some(key) = keys.0.get(&sealed.key_version) else {
        return Err(refuse(format!(
            "sealed to key version {}, which this provider does not hold (holds {:?})",
            sealed.key_version,
            keys.versions()
        )));
    };
    let binding = Binding {
        chain_id: lease.chain_id,
        escrow: lease.escrow,
        provider_id: lease.provider_id,
        tenant: lease.tenant,
        key_version: sealed.key_version,
    };
    let aad = secrets::associated_data(lease.text, &sealed.envelopes());
    let values = secrets::open(key, &binding, Recipient::Provider, aad, &sealed.sealed)
        .map_err(|e| refuse(e.to_string()))?;
    let named: std::collections::BTreeSet<&String> = sealed.names.iter().collect();
    let held: std::collections::BTreeSet<&String> = values.0.keys().collect();
    if named != held {
        return Err(refuse(format!(
            "the sealed secrets are {held:?}, the manifest names {named:?}"
        )));
    }
    if let Some((name, _)) = values.0.iter().find(|(_, v)| v.contains('\0')) {
        return Err(refuse(format!("secret `{name}` contains a NUL byte")));
    }
    for (service, s) in &manifest.services {
        let Some(name) = &s.pull_secret else { continue };
        if values
            .0
            .get(name)
            .and_then(|v| RegistryLogin::parse(v))
            .is_none()
        {
            return Err(refuse(format!(
                "secret `{name}` (services.{service}.pull_secret) is not username:password"
            )));
        }
    }
    Ok(Some(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn keys() -> ProviderKeys {
        let (secret, _) = secrets::key_pair(&KEY);
        let (old, _) = secrets::key_pair(&[6; 32]);
        ProviderKeys(BTreeMap::from([(1, old), (2, secret)]))
    }

    /// A manifest with `names` sealed to version `version` of [`keys`] for `tenant`.
    fn sealed(version: u32, tenant: Address, values: &[(&str, &str)]) -> String {
        let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
        let head = format!(
            "version: 1\nsecrets:\n  key_version: {version}\n  names: [{}]\n  sealed: ",
            names.join(", ")
        );
        let tail = "\nservices:\n  web:\n    image: x\n    secret_env: {TOKEN: token}\n    resources: {cpu: 100m, memory: 16Mi}\n";
        let aad = secrets::associated_data(&format!("{head}{tail}"), &[]);
        let public = keys().public(version).expect("held");
        let binding = Binding {
            chain_id: 31337,
            escrow: Address::repeat_byte(0xe5),
            provider_id: U256::from(1),
            tenant,
            key_version: version,
        };
        let values = SecretValues(
            values
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let envelope =
            secrets::seal(&public, &binding, Recipient::Provider, aad, &values).expect("seals");
        format!("{head}{envelope}{tail}")
    }

    fn lease(text: &str, owner: Option<u64>) -> LeaseSecrets<'_> {
        LeaseSecrets {
            chain_id: 31337,
            escrow: Address::repeat_byte(0xe5),
            provider_id: U256::from(1),
            lease: U256::from(10),
            tenant: Address::repeat_byte(0x7e),
            text,
            owner: owner.map(U256::from),
            current_version: 2,
        }
    }

    #[test]
    fn the_tenants_envelope_opens_and_every_other_is_refused_with_a_reason() {
        let tenant = Address::repeat_byte(0x7e);
        let text = sealed(2, tenant, &[("token", "s3cret")]);
        let m = Manifest::parse(text.as_bytes()).expect("parses");
        let values = open(&keys(), &m, &lease(&text, None))
            .expect("opens")
            .expect("some");
        assert_eq!(values.0["token"], "s3cret");
        // The same lease after a restart, and after a rotation to version 3.
        let later = LeaseSecrets {
            current_version: 3,
            ..lease(&text, Some(10))
        };
        assert!(open(&keys(), &m, &later).is_ok());

        let refused = |m: &Manifest, l: LeaseSecrets<'_>| {
            let r = open(&keys(), m, &l).expect_err("refused");
            assert_eq!(r.reason, RejectReason::SecretsUnreadable);
            assert!(!r.rule.contains("s3cret"));
            r.rule
        };
        assert!(refused(&m, lease(&text, Some(9))).contains("lease 9: replayed"));
        let other = LeaseSecrets {
            tenant: Address::repeat_byte(1),
            ..lease(&text, None)
        };
        assert!(refused(&m, other).contains("does not open"));
        let old_text = sealed(1, tenant, &[("token", "s3cret")]);
        let old = Manifest::parse(old_text.as_bytes()).expect("parses");
        assert!(refused(&old, lease(&old_text, None)).contains("key version 1"));
        // Edited around the envelope: the associated data no longer matches.
        let edited = text.replace("cpu: 100m", "cpu: 200m");
        let m2 = Manifest::parse(edited.as_bytes()).expect("parses");
        assert!(refused(&m2, lease(&edited, None)).contains("does not open"));
        // Names in clear that differ from the sealed ones.
        let renamed = text.replace("names: [token]", "names: [token, extra]");
        let m3 = Manifest::parse(renamed.as_bytes()).expect("parses");
        let keys_without = |l| open(&ProviderKeys::default(), &m3, &l);
        assert!(keys_without(lease(&renamed, None)).is_err());
        let nul = sealed(2, tenant, &[("token", "a\0b")]);
        let m4 = Manifest::parse(nul.as_bytes()).expect("parses");
        assert!(refused(&m4, lease(&nul, None)).contains("NUL"));
    }

    #[test]
    fn the_key_file_is_private_and_strict() {
        let dir = std::env::temp_dir().join(format!("berth-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("keys");
        let hex = alloy::hex::encode([7u8; 32]);
        std::fs::write(&path, format!("# rotated 2026-12\n1 {hex}\n2 {hex}\n")).expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let setting = path.display().to_string();
        assert!(matches!(
            ProviderKeys::load(&setting),
            Err(KeyFileError::Exposed { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let keys = ProviderKeys::load(&setting).expect("loads");
        assert_eq!(keys.versions(), [1, 2]);
        assert!(!format!("{keys:?}").contains(&hex[..8]));
        for bad in [
            "1 zz",
            "x 00",
            &format!("0 {hex}"),
            &format!("1 {hex}\n1 {hex}"),
        ] {
            assert!(ProviderKeys::parse(bad, &path).is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
