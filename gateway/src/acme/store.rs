//! Certificates obtained by ACME on disk: `<domain>.crt` (the chain, leaf first) and
//! `<domain>.key` (mode 0600) in the store directory, written to a temporary name and renamed
//! so a crash never leaves half a pair; the account's credentials in `account.json`. Read at
//! start so a restarted gateway serves at once and orders nothing it already holds.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::AcmeError;

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// Renewal is due once two thirds of the lifetime have passed (30 days before the end of
    /// a 90-day certificate, as Let's Encrypt advises), or when the clock is outside it.
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        let Ok(lifetime) = self.not_after.duration_since(self.not_before) else {
            return true;
        };
        now < self.not_before || now >= self.not_after - lifetime / 3
    }
}

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct Held {
    pub key: Arc<CertifiedKey>,
    pub validity: Validity,
}

/// Parses a PEM chain and key into a servable certificate and its validity.
pub fn parse(chain_pem: &str, key_pem: &str) -> Result<Held, AcmeError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::Certificate(format!("not a PEM chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| AcmeError::Certificate("no certificate in the chain".into()))?;
    let validity = validity(leaf)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| AcmeError::Certificate(format!("not a PEM key: {e}")))?;
    let key = crate::tls::certified_key(chain, key)
        .map_err(|e| AcmeError::Certificate(format!("the key does not serve the chain: {e}")))?;
    Ok(Held {
        key: Arc::new(key),
        validity,
    })
}

fn validity(leaf: &CertificateDer<'_>) -> Result<Validity, AcmeError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| AcmeError::Certificate(format!("not an X.509 certificate: {e}")))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        u64::try_from(secs)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| AcmeError::Certificate(format!("validity before 1970: {secs}")))
    };
    Ok(Validity {
        not_before: at(cert.validity().not_before)?,
        not_after: at(cert.validity().not_after)?,
    })
}

/// The store directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates the directory (mode 0700) if it is missing.
    pub fn open(dir: &Path) -> Result<Self, AcmeError> {
        std::fs::create_dir_all(dir).map_err(|e| AcmeError::io(dir, e))?;
        set_mode(dir, 0o700)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn pair(&self, domain: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{domain}.crt")),
            self.dir.join(format!("{domain}.key")),
        )
    }

    /// Writes `domain`'s chain and key; the key first, so a chain on disk always has its key.
    pub fn save(&self, domain: &str, chain_pem: &str, key_pem: &str) -> Result<(), AcmeError> {
        let (crt, key) = self.pair(domain);
        write_atomic(&key, key_pem.as_bytes(), 0o600)?;
        write_atomic(&crt, chain_pem.as_bytes(), 0o644)
    }

    /// Every stored certificate that parses, by domain; the rest are logged and skipped.
    pub fn load_all(&self) -> Result<Vec<(String, Held)>, AcmeError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| AcmeError::io(&self.dir, e))?;
        let mut held = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(domain) = name.to_str().and_then(|n| n.strip_suffix(".crt")) else {
                continue;
            };
            let (crt, key) = self.pair(domain);
            let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| AcmeError::io(p, e));
            match read(&crt).and_then(|c| Ok((c, read(&key)?))) {
                Ok((chain, key)) => match parse(&chain, &key) {
                    Ok(h) => held.push((domain.to_owned(), h)),
                    Err(e) => tracing::warn!(%domain, error = %e, "stored certificate skipped"),
                },
                Err(e) => tracing::warn!(%domain, error = %e, "stored certificate skipped"),
            }
        }
        Ok(held)
    }

    /// The ACME account's credentials (JSON), if saved.
    pub fn account(&self) -> Result<Option<String>, AcmeError> {
        let path = self.dir.join("account.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AcmeError::io(&path, e)),
        }
    }

    /// Saves the account's credentials (mode 0600: they hold its private key).
    pub fn save_account(&self, json: &str) -> Result<(), AcmeError> {
        write_atomic(&self.dir.join("account.json"), json.as_bytes(), 0o600)
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AcmeError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| AcmeError::io(&tmp, e))?;
    set_mode(&tmp, mode)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| AcmeError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AcmeError::io(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), AcmeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| AcmeError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400)
    }

    #[test]
    fn renewal_is_due_in_the_last_third() {
        let v = Validity {
            not_before: at(100),
            not_after: at(190),
        };
        assert!(!v.renewal_due(at(100)));
        assert!(!v.renewal_due(at(159)));
        assert!(v.renewal_due(at(160)));
        assert!(v.renewal_due(at(200)), "expired");
        assert!(
            v.renewal_due(at(99)),
            "not yet valid: the clock or the certificate is off"
        );
        let backwards = Validity {
            not_before: at(190),
            not_after: at(100),
        };
        assert!(backwards.renewal_due(at(150)));
    }

    #[test]
    fn a_saved_pair_loads_back_and_garbage_is_skipped() {
        let dir = std::env::temp_dir().join(format!("berth-acme-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).expect("store");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["shop.example.org".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        store
            .save("shop.example.org", &cert.pem(), &key.serialize_pem())
            .expect("save");
        std::fs::write(dir.join("junk.example.org.crt"), "not pem").expect("write");
        let loaded = store.load_all().expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, "shop.example.org");
        assert!(!loaded[0].1.validity.renewal_due(SystemTime::now()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("shop.example.org.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(parse(&cert.pem(), "not a key").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
