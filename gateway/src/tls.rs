//! TLS: certificate chains and keys from PEM files, chosen per connection by SNI (the first
//! certificate whose names cover the requested host), re-read when a file changes without
//! dropping a connection. A bad file on reload keeps the certificates already served.

use std::{
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

/// The certificates the gateway serves, swappable while connections are served.
#[derive(Debug)]
pub struct Certificates {
    files: Vec<CertFiles>,
    loaded: ArcSwap<Vec<Loaded>>,
    stamps: Mutex<Vec<Stamp>>,
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
        }))
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

    /// The TLS server configuration: HTTP/2 and HTTP/1.1 by ALPN, certificates by SNI.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::clone(self))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.0.loaded.load();
        // Without SNI (a client dialing an address), the first certificate.
        let Some(sni) = hello.server_name() else {
            return loaded.first().map(|l| Arc::clone(&l.key));
        };
        let name = ServerName::try_from(sni).ok()?;
        loaded
            .iter()
            .find(|l| l.covers(&name))
            .map(|l| Arc::clone(&l.key))
    }
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

fn load_all(files: &[CertFiles]) -> Result<Vec<Loaded>, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
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
            let key =
                CertifiedKey::from_der(chain, key, &provider).map_err(|source| TlsError::Key {
                    cert: f.cert.clone(),
                    key: f.key.clone(),
                    source,
                })?;
            Ok(Loaded { key: Arc::new(key) })
        })
        .collect()
}
