//! The gateway as a real process for tests: a throwaway CA and certificates (rcgen), the
//! `berth-gateway` binary with its admin socket in a temp dir, and a TLS client that dials
//! the gateway's address for any hostname (its own resolver: nothing touches the machine's).

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Arc,
    time::{Duration, Instant},
};

use berth_protocol::routing::{RouteTable, admin};
use eyre::{Result, WrapErr, bail, ensure, eyre};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::{keeper::free_port, unique_suffix, workspace_binary};

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    dir: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA whose files go to `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Berth test CA");
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        std::fs::write(dir.join("ca.pem"), &pem)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
            dir: dir.to_owned(),
        })
    }

    /// Issues a certificate for `names` (wildcards allowed); returns `cert.pem:key.pem`.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Result<String> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{stem} {}", unique_suffix()));
        let cert = params.signed_by(&key, &self.issuer)?;
        let (cert_path, key_path) = (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
        );
        // Written as a new file then renamed: the gateway never reads half a file.
        let tmp = self.dir.join(format!("{stem}.tmp"));
        std::fs::write(&tmp, key.serialize_pem())?;
        std::fs::rename(&tmp, &key_path)?;
        std::fs::write(&tmp, cert.pem())?;
        std::fs::rename(&tmp, &cert_path)?;
        Ok(format!("{}:{}", cert_path.display(), key_path.display()))
    }

    /// A TLS client configuration trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// A running `berth-gateway`; killed on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    log: PathBuf,
    /// Its HTTPS address.
    pub addr: SocketAddr,
    /// Its admin socket.
    pub admin: PathBuf,
}

impl GatewayProcess {
    /// Starts the gateway for `apps_domain` with `certificates` (`cert:key` pairs), files in
    /// `dir`, extra `BERTH_*` settings in `env`; waits until it accepts connections.
    pub async fn start(
        dir: &Path,
        apps_domain: &str,
        certificates: &[String],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = dir.join(format!("gateway-{port}.sock"));
        let log = dir.join(format!("gateway-{port}.log"));
        let out = File::create(&log)?;
        let child = Command::new(workspace_binary("berth-gateway", "berth-gateway")?)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,berth_gateway=debug")
            .env("BERTH_LISTEN_ADDR", addr.to_string())
            .env("BERTH_APPS_DOMAIN", apps_domain)
            .env("BERTH_CERTIFICATES", certificates.join(","))
            .env("BERTH_ADMIN_SOCKET", &admin)
            .env("BERTH_METRICS_ADDR", "")
            .envs(env.iter().copied())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .wrap_err("starting berth-gateway")?;
        let mut gateway = Self {
            child,
            log,
            addr,
            admin,
        };
        let start = Instant::now();
        while !(gateway.admin.exists() && TcpStream::connect(addr).await.is_ok()) {
            if let Some(status) = gateway.child.try_wait()? {
                bail!(
                    "berth-gateway exited with {status}:\n{}",
                    gateway.log_text()
                );
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "gateway never listened:\n{}",
                gateway.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(gateway)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it SIGTERM and waits up to `within` for it to exit.
    pub async fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(sent.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                start.elapsed() < within,
                "berth-gateway still running {within:?} after SIGTERM:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Replaces its route table, as the keeper does.
    pub async fn push(&self, table: &RouteTable) -> Result<()> {
        let (status, body) = self
            .admin_request(
                hyper::Method::PUT,
                admin::ROUTES,
                serde_json::to_vec(table)?,
            )
            .await?;
        ensure!(
            status.is_success(),
            "route table refused ({status}): {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }

    /// Its route table.
    pub async fn routes(&self) -> Result<RouteTable> {
        let (status, body) = self
            .admin_request(hyper::Method::GET, admin::ROUTES, Vec::new())
            .await?;
        ensure!(status.is_success(), "GET routes: {status}");
        Ok(serde_json::from_slice(&body)?)
    }

    /// Any request on its admin socket: (status, body).
    pub async fn admin_request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(hyper::StatusCode, Bytes)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://gateway{path}"))
            .header(hyper::header::HOST, "gateway")
            .body(Full::new(Bytes::from(body)))?;
        Ok(berth_runtime::http::unix_call(&self.admin, req, Duration::from_secs(10)).await?)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The protocol the connection spoke.
    pub version: hyper::Version,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens TLS to `addr` for `host` (SNI and certificate check) with `config`.
pub async fn tls(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    Ok(TlsConnector::from(config).connect(name, tcp).await?)
}

/// `GET https://{host}{path}` through the gateway at `addr`, over HTTP/2 when `config`
/// offers it and the gateway picks it, else HTTP/1.1.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Answer> {
    let stream = tls(addr, host, config).await?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = hyper::Request::builder()
        .uri(format!("https://{host}{path}"))
        .header(hyper::header::HOST, host)
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-berth-address", "0xforged")
        .body(Full::new(Bytes::new()))?;
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().remove(hyper::header::HOST);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = path.parse()?;
        sender
            .send_request(hyper::Request::from_parts(parts, body))
            .await?
    };
    read_answer(resp).await
}

/// One HTTP/1.1 request through the gateway at `addr` for `host`, with `headers` and `body`.
pub async fn send(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    method: hyper::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Answer> {
    let stream = tls(addr, host, config).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    read_answer(resp).await
}

/// Reads `resp` whole (its body within 30 s).
async fn read_answer(resp: hyper::Response<hyper::body::Incoming>) -> Result<Answer> {
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .map_err(|_| eyre!("body did not end in 30 s"))??
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
        version,
    })
}

/// Writes `raw` over TLS for `host` and reads until the gateway closes or `wait` passes.
pub async fn raw(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    raw: &[u8],
    wait: Duration,
) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tls(addr, host, config).await?;
    // The gateway may answer and close before all is written (a head too large).
    let _ = stream.write_all(raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A scratch directory for one test.
pub fn scratch_dir(purpose: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-{purpose}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
