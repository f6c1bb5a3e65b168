//! TLS: certificate chains and keys from PEM files, chosen per connection by SNI (the first
//! certificate whose names cover the requested host), re-read when a file changes without
//! dropping a connection. A bad file on reload keeps the certificates already served.
//! Certificates obtained by ACME ([`crate::acme`]) are served by exact name after the files,
//! and a TLS-ALPN-01 validation (a client offering only `acme-tls/1`) gets the challenge
//! certificate of its name, or no handshake.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use crate::config::CertFiles;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: not a readable PEM file")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: no certificate in the file")]
    Empty { path: PathBuf },
    #[error("the key {key} cannot serve the certificate {cert}")]
    Key {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot read {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One loaded certificate.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
}

impl Loaded {
    fn covers(&self, name: &ServerName<'_>) -> bool {
        self.key.cert.first().is_some_and(|leaf| {
            webpki::EndEntityCert::try_from(leaf)
                .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
        })
    }
}

/// The ALPN protocol of the ACME TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates by exact hostname.
type ByName = HashMap<String, Arc<CertifiedKey>>;

/// The certificates the gateway serves, swappable while connections are served.
#[derive(Debug)]
pub struct Certificates {
    files: Vec<CertFiles>,
    loaded: ArcSwap<Vec<Loaded>>,
    stamps: Mutex<Vec<Stamp>>,
    issued: ArcSwap<ByName>,
    challenges: ArcSwap<ByName>,
}

type Stamp = (Option<SystemTime>, u64);

impl Certificates {
    /// Loads every pair; any error stops the start.
    pub fn load(files: Vec<CertFiles>) -> Result<Arc<Self>, TlsError> {
        let stamps = stamps(&files)?;
        let loaded = load_all(&files)?;
        Ok(Arc::new(Self {
            files,
            loaded: ArcSwap::from_pointee(loaded),
            stamps: Mutex::new(stamps),
            issued: ArcSwap::default(),
            challenges: ArcSwap::default(),
        }))
    }

    /// Whether a certificate from the files covers `host`.
    pub fn files_cover(&self, host: &str) -> bool {
        ServerName::try_from(host)
            .is_ok_and(|name| self.loaded.load().iter().any(|l| l.covers(&name)))
    }

    /// Serves `key` for `host` (a certificate obtained by ACME), replacing any before it.
    pub fn install_issued(&self, host: &str, key: &Arc<CertifiedKey>) {
        self.issued.rcu(|map| {
            let mut map = ByName::clone(map);
            map.insert(host.to_owned(), Arc::clone(key));
            map
        });
    }

    /// Answers TLS-ALPN-01 validations of `host` with `key` (`None`: no longer).
    pub fn set_challenge(&self, host: &str, key: Option<&Arc<CertifiedKey>>) {
        self.challenges.rcu(|map| {
            let mut map = ByName::clone(map);
            match key {
                Some(key) => map.insert(host.to_owned(), Arc::clone(key)),
                None => map.remove(host),
            };
            map
        });
    }

    /// Re-reads the files if any changed. `Ok(true)` when new certificates are served; on an
    /// error the old ones stay.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.files)?;
        let mut seen = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return Ok(false);
        }
        let loaded = load_all(&self.files)?;
        self.loaded.store(Arc::new(loaded));
        *seen = now;
        Ok(true)
    }

    /// Checks the files every `every` until `shutdown`, logging what changed or failed.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!("certificates reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "certificates not reloaded; the previous ones stay")
                }
            }
        }
    }

    /// The TLS server configuration: HTTP/2 and HTTP/1.1 by ALPN, certificates by SNI, and
    /// `acme-tls/1` when `acme` (the server closes those connections after the handshake).
    pub fn server_config(self: &Arc<Self>, acme: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if acme {
            // Last: rustls picks in the server's order, so only a client offering nothing
            // else gets it.
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        config
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = &self.0;
        let loaded = certs.loaded.load();
        // Without SNI (a client dialing an address), the first certificate.
        let Some(sni) = hello.server_name() else {
            return loaded.first().map(|l| Arc::clone(&l.key));
        };
        let sni = sni.to_ascii_lowercase();
        if is_acme_validation(hello.alpn()) {
            return certs.challenges.load().get(&sni).cloned();
        }
        let name = ServerName::try_from(sni.as_str()).ok()?;
        loaded
            .iter()
            .find(|l| l.covers(&name))
            .map(|l| Arc::clone(&l.key))
            .or_else(|| certs.issued.load().get(&sni).cloned())
    }
}

/// A TLS-ALPN-01 validation offers `acme-tls/1` and nothing else (RFC 8737 §3).
fn is_acme_validation<'a>(alpn: Option<impl Iterator<Item = &'a [u8]>>) -> bool {
    let mut offered = alpn.into_iter().flatten();
    offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
}

fn stamps(files: &[CertFiles]) -> Result<Vec<Stamp>, TlsError> {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| (m.modified().ok(), m.len()))
            .map_err(|source| TlsError::Stat {
                path: path.to_owned(),
                source,
            })
    };
    files
        .iter()
        .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
        .collect()
}

fn pem_error(path: &Path, source: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

/// A served certificate from its chain (leaf first) and the leaf's key.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
}

fn load_all(files: &[CertFiles]) -> Result<Vec<Loaded>, TlsError> {
    files
        .iter()
        .map(|f| {
            let chain = CertificateDer::pem_file_iter(&f.cert)
                .map_err(|source| pem_error(&f.cert, source))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| pem_error(&f.cert, source))?;
            if chain.is_empty() {
                return Err(TlsError::Empty {
                    path: f.cert.clone(),
                });
            }
            let key =
                PrivateKeyDer::from_pem_file(&f.key).map_err(|source| pem_error(&f.key, source))?;
            let key = certified_key(chain, key).map_err(|source| TlsError::Key {
                cert: f.cert.clone(),
                key: f.key.clone(),
                source,
            })?;
            Ok(Loaded { key: Arc::new(key) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hello_offering_acme_tls_alone_is_a_validation() {
        let offered = |protos: &[&'static [u8]]| is_acme_validation(Some(protos.iter().copied()));
        for (protos, validation) in [
            (&[ACME_TLS_ALPN][..], true),
            (&[b"h2".as_slice(), ACME_TLS_ALPN][..], false),
            (&[ACME_TLS_ALPN, b"http/1.1".as_slice()][..], false),
            (&[b"h2".as_slice(), b"http/1.1".as_slice()][..], false),
            (&[][..], false),
        ] {
            assert_eq!(offered(protos), validation, "{protos:?}");
        }
        assert!(
            !is_acme_validation(None::<std::iter::Empty<&[u8]>>),
            "no ALPN at all"
        );
    }
}
