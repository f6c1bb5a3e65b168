//! The manifest's `secrets` section and each service's `secret_env` and `secret_files`: names
//! in clear, values
//! sealed ([`crate::secrets`]). Parsing checks everything that can be checked without the
//! provider's key; the keeper opens the envelope and checks the rest.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Manifest, SchemaError, Service, field, is_env_name};
use crate::secrets::{MAX_ENVELOPE_CHARS, MAX_SECRETS, is_secret_name};

/// Secrets sealed to the provider (and a copy to the tenant).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// The version of the provider's key in the registry they are sealed to.
    pub key_version: u32,
    /// The secrets' names; the sealed object holds exactly these.
    pub names: Vec<String>,
    /// The provider's copy: `base64(enc ‖ ciphertext)`.
    pub sealed: String,
    /// The tenant's copy, sealed to a key of the tenant's.
    #[serde(default)]
    pub tenant_copy: Option<String>,
}

impl Secrets {
    /// The envelopes, as they appear in the manifest text.
    pub fn envelopes(&self) -> Vec<&str> {
        std::iter::once(self.sealed.as_str())
            .chain(self.tenant_copy.as_deref())
            .collect()
    }

    fn validate(&self) -> Result<(), SchemaError> {
        if self.key_version == 0 {
            return Err(field("secrets.key_version", "key versions start at 1"));
        }
        if self.names.is_empty() || self.names.len() > MAX_SECRETS {
            return Err(field("secrets.names", format!("1 to {MAX_SECRETS} names")));
        }
        let mut seen = BTreeSet::new();
        for (i, name) in self.names.iter().enumerate() {
            if !is_secret_name(name) {
                return Err(field(
                    format!("secrets.names[{i}]"),
                    "a-z, 0-9, _ or -, starting with a letter, at most 63",
                ));
            }
            if !seen.insert(name) {
                return Err(field(
                    format!("secrets.names[{i}]"),
                    format!("`{name}` is listed twice"),
                ));
            }
        }
        for (path, envelope) in [
            ("secrets.sealed", Some(&self.sealed)),
            ("secrets.tenant_copy", self.tenant_copy.as_ref()),
        ] {
            let Some(envelope) = envelope else { continue };
            let base64 = envelope
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
            if envelope.is_empty() || envelope.len() > MAX_ENVELOPE_CHARS || !base64 {
                return Err(field(
                    path,
                    format!("an envelope is base64 of 1 to {MAX_ENVELOPE_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Checks the `secrets` section and every `secret_env` against it.
    pub(super) fn validate_secrets(&self) -> Result<(), SchemaError> {
        if let Some(secrets) = &self.secrets {
            secrets.validate()?;
        }
        let names: BTreeSet<&String> = self
            .secrets
            .as_ref()
            .map(|s| s.names.iter().collect())
            .unwrap_or_default();
        for (service, s) in &self.services {
            let at = format!("services.{}", service.escape_debug());
            check_secret_env(&at, &s.secret_env, &s.env, &names)?;
            check_secret_files(&at, s, &names)?;
            if let Some(secret) = &s.pull_secret {
                if !names.contains(secret) {
                    return Err(field(
                        format!("{at}.pull_secret"),
                        format!("`{}` is not in secrets.names", secret.escape_debug()),
                    ));
                }
                if s.image.starts_with("localhost/") {
                    return Err(field(
                        format!("{at}.pull_secret"),
                        "a localhost/ image is never pulled",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_secret_env(
    at: &str,
    secret_env: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    names: &BTreeSet<&String>,
) -> Result<(), SchemaError> {
    for (var, secret) in secret_env {
        let path = format!("{at}.secret_env.{}", var.escape_debug());
        if !is_env_name(var) {
            return Err(field(path, "not a valid variable name"));
        }
        if env.contains_key(var) {
            return Err(field(path, "also set in env"));
        }
        if !names.contains(secret) {
            return Err(field(
                path,
                format!("`{}` is not in secrets.names", secret.escape_debug()),
            ));
        }
    }
    Ok(())
}

/// Most secret files of one service.
pub const MAX_SECRET_FILES: usize = 32;
/// The longest path of a secret file.
pub const MAX_SECRET_FILE_PATH: usize = 255;

/// Where a secret file may not go: the kernel's and the runtime's own trees.
const RESERVED_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

fn check_secret_files(at: &str, s: &Service, names: &BTreeSet<&String>) -> Result<(), SchemaError> {
    if s.secret_files.len() > MAX_SECRET_FILES {
        return Err(field(
            format!("{at}.secret_files"),
            format!("at most {MAX_SECRET_FILES} files"),
        ));
    }
    for (path, secret) in &s.secret_files {
        let at = format!("{at}.secret_files.{}", path.escape_debug());
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        let plain = path.starts_with('/')
            && path.len() <= MAX_SECRET_FILE_PATH
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != "..")
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
        if !plain {
            return Err(field(
                at,
                format!(
                    "an absolute file path of at most {MAX_SECRET_FILE_PATH} characters \
                     (letters, digits, `.`, `_`, `-`; no `.` or `..` parts, no trailing `/`)"
                ),
            ));
        }
        let under = |tree: &str| path == tree || path.starts_with(&format!("{tree}/"));
        if let Some(tree) = RESERVED_TREES.iter().find(|t| under(t)) {
            return Err(field(
                at,
                format!("{tree} belongs to the container runtime"),
            ));
        }
        if let Some(v) = s.volumes.iter().find(|v| {
            let mount = v.mount.trim_end_matches('/');
            path == mount || path.starts_with(&format!("{mount}/"))
        }) {
            return Err(field(
                at,
                format!(
                    "lies in volume `{}` (mounted at {}); put secret files outside volumes",
                    v.name.escape_debug(),
                    v.mount.escape_debug()
                ),
            ));
        }
        if let Some(outer) = s
            .secret_files
            .keys()
            .find(|other| path.starts_with(&format!("{other}/")))
        {
            return Err(field(
                at,
                format!("lies under the secret file {}", outer.escape_debug()),
            ));
        }
        if !names.contains(secret) {
            return Err(field(
                at,
                format!("`{}` is not in secrets.names", secret.escape_debug()),
            ));
        }
    }
    Ok(())
}
