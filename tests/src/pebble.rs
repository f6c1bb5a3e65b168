//! Debian's `pebble`, Let's Encrypt's ACME test server, on loopback: its HTTPS under a test
//! CA's certificate for `localhost`, its DNS lookups sent to the test's DNS server, its
//! TLS-ALPN-01 validations sent to the gateway's port. Killed on drop.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
};

use eyre::{Context, Result, ensure};
use rustls::pki_types::{CertificateDer, pem::PemObject};

use crate::{
    gateway::{TestCa, get},
    keeper::free_port,
};

/// A running pebble.
#[derive(Debug)]
pub struct Pebble {
    child: Child,
    management: SocketAddr,
    log: std::path::PathBuf,
}

impl Pebble {
    /// Starts pebble on `port` with files in `dir`: HTTPS under `ca`, names resolved by
    /// `dns`, tls-alpn-01 checked on port `tls_port`. Waits until it answers.
    pub async fn start_on(
        dir: &Path,
        ca: &TestCa,
        port: u16,
        dns: SocketAddr,
        tls_port: u16,
    ) -> Result<Self> {
        let pair = ca.issue("pebble", &["localhost"])?;
        let (cert, key) = pair.split_once(':').unwrap_or_default();
        let management = free_port()?;
        let http_port = free_port()?;
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let log = dir.join("pebble.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            // Validate at once, and never reject a good nonce (the client's retry is not what
            // is tested here).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .wrap_err("starting pebble (apt-get install pebble)")?;
        let mut pebble = Self {
            child,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            log,
        };
        crate::wait_listening(&mut pebble.child, port, "pebble", &pebble.log).await?;
        Ok(pebble)
    }

    /// A client configuration trusting only pebble's issuing root (made anew at each start),
    /// read from its management port.
    pub async fn client_config(&self, ca: &TestCa) -> Result<Arc<rustls::ClientConfig>> {
        let answer = get(
            self.management,
            "localhost",
            "/roots/0",
            ca.client_config(&[b"http/1.1"])?,
        )
        .await?;
        ensure!(answer.status == 200, "pebble's root: {}", answer.status);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(answer.text().as_bytes()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
