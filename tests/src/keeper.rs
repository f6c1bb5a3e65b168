//! Support for the provider keeper's tests: a podman REST service with the project's
//! containers.conf, the example image, the `berth-keeper` process, signed uploads.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, U256},
    signers::SignerSync,
    transports::http::reqwest,
};
use berth_keepers::engine::{PodmanEngine, Workload};
use berth_protocol::upload::{SIGNATURE_HEADER, signing_hash};
use eyre::{Context, Result, bail, ensure};

use crate::{Chain, Contracts, Settings, repo_root, workspace_binary, write_deployment};

/// The project's podman settings.
pub fn containers_conf() -> PathBuf {
    repo_root().join("keepers/podman/containers.conf")
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        ensure!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `podman system service` on a socket of its own (scripts/podman-service); killed on drop.
#[derive(Debug)]
pub struct PodmanService {
    child: Option<Child>,
    socket: PathBuf,
    env: Vec<(String, String)>,
}

impl PodmanService {
    /// Starts the service and waits until its socket accepts connections.
    pub async fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "berth-podman-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut s = Self {
            child: None,
            socket: dir.join("podman.sock"),
            env: Vec::new(),
        };
        s.restart().await?;
        Ok(s)
    }

    /// A service with `env` besides the project's containers.conf (e.g. a
    /// `CONTAINERS_REGISTRIES_CONF` for a test registry).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<Self> {
        let mut s = Self::start().await?;
        s.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        s.restart().await?;
        Ok(s)
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// An engine client on this socket.
    pub fn engine(&self) -> PodmanEngine {
        PodmanEngine::new(
            &self.socket,
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
    }

    /// Stops the service (containers keep running: conmon holds them).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the service again on the same socket.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        // podman's own log, next to its socket, for when it misbehaves.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.socket.with_extension("log"))?;
        let child = Command::new(repo_root().join("scripts/podman-service"))
            .arg(&self.socket)
            .env("CONTAINERS_CONF", containers_conf())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .wrap_err("starting scripts/podman-service (is podman installed?)")?;
        self.child = Some(child);
        let socket = self.socket.clone();
        wait_for("the podman socket", Duration::from_secs(30), || {
            let socket = socket.clone();
            async move {
                Ok(tokio::net::UnixStream::connect(&socket)
                    .await
                    .ok()
                    .map(|_| ()))
            }
        })
        .await
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds `localhost/berth-hello:latest` (once per test run).
pub fn hello_image() -> Result<()> {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT
        .lock()
        .map_err(|_| eyre::eyre!("image lock poisoned"))?;
    if *built {
        return Ok(());
    }
    let status = Command::new(repo_root().join("examples/hello/build-image"))
        .env("CONTAINERS_CONF", containers_conf())
        .stdout(Stdio::null())
        .status()
        .wrap_err("running examples/hello/build-image")?;
    ensure!(status.success(), "building the hello image failed");
    *built = true;
    Ok(())
}

/// The example manifest (serves "hello from berth" over HTTP on port 8080).
pub fn hello_manifest() -> Vec<u8> {
    std::fs::read(repo_root().join("examples/hello/manifest.yaml")).unwrap_or_default()
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `count` consecutive free ports below the kernel's ephemeral range (32768 and up), so the
/// keeper's public ports cannot collide with outgoing connections' local ports.
pub fn free_range(count: u16) -> Result<(u16, u16)> {
    let seed = u64::from(std::process::id()) * 7919 + crate::unique_suffix() * 104_729;
    for attempt in 0..200u64 {
        let start = 20_000 + ((seed + attempt * 613) % u64::from(12_000 - count)) as u16;
        if (start..start + count).all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return Ok((start, start + count - 1));
        }
    }
    bail!("no {count} consecutive free ports")
}

/// A running `berth-keeper`; killed on drop. Its log goes to a file.
#[derive(Debug)]
pub struct KeeperProcess {
    child: Child,
    log: PathBuf,
    /// Base URL of its gateway.
    pub gateway: String,
}

/// What a test keeper needs.
#[derive(Debug, Clone)]
pub struct KeeperSetup {
    /// `deployments/<chainId>.json`.
    pub deployment: PathBuf,
    /// RPC URL.
    pub rpc_url: String,
    /// Database URL.
    pub database_url: String,
    /// podman socket.
    pub socket: PathBuf,
    /// Public port range.
    pub ports: (u16, u16),
    /// Gateway port.
    pub gateway_port: u16,
    /// Operator key (hex).
    pub operator_key: String,
    /// Extra `BERTH_*` settings.
    pub env: Vec<(String, String)>,
}

impl KeeperSetup {
    /// A setup for provider 1 on `chain` (operator: anvil account 3).
    pub fn new(
        chain: &Chain,
        c: &Contracts,
        settings: Settings,
        database_url: String,
        podman: &PodmanService,
    ) -> Result<Self> {
        Ok(Self {
            deployment: write_deployment(chain, c, settings)?,
            rpc_url: chain.rpc_url(),
            database_url,
            socket: podman.socket().to_path_buf(),
            ports: free_range(20)?,
            gateway_port: free_port()?,
            operator_key: format!("{}", chain.signer(3)?.to_bytes()),
            env: Vec::new(),
        })
    }

    /// Where the keeper writes secret files: a directory of this setup's own on the host's
    /// tmpfs (several keepers run at once; podman must see it too, so not a private /tmp).
    pub fn secret_files_dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(format!("berth-keeper-{}", self.gateway_port))
    }

    /// The gateway's base URL.
    pub fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }
}

impl KeeperProcess {
    /// Starts `berth-keeper` and waits until its gateway answers.
    pub async fn start(setup: &KeeperSetup) -> Result<Self> {
        let log = setup
            .deployment
            .with_extension(format!("keeper-{}.log", crate::unique_suffix()));
        let out = File::create(&log)?;
        let mut cmd = Command::new(workspace_binary("berth-keepers", "berth-keeper")?);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,berth_keepers=debug")
            .env("BERTH_RPC_URL", &setup.rpc_url)
            .env("BERTH_DEPLOYMENT", &setup.deployment)
            .env("BERTH_PROVIDER_ID", "1")
            .env("BERTH_DATABASE_URL", &setup.database_url)
            .env("BERTH_OPERATOR_KEY", &setup.operator_key)
            .env("BERTH_ENGINE", "podman")
            .env("BERTH_PODMAN_SOCKET", &setup.socket)
            .env("BERTH_SECRET_FILES_DIR", setup.secret_files_dir())
            .env(
                "BERTH_PORT_RANGE",
                format!("{}-{}", setup.ports.0, setup.ports.1),
            )
            .env(
                "BERTH_GATEWAY_ADDR",
                format!("127.0.0.1:{}", setup.gateway_port),
            )
            .env("BERTH_POLL_INTERVAL_MS", "100")
            .env("BERTH_RESYNC_INTERVAL_S", "2")
            .envs(setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().wrap_err("starting berth-keeper")?;
        let mut k = Self {
            child,
            log,
            gateway: setup.gateway(),
        };
        let health = format!("{}/healthz", k.gateway);
        let start = Instant::now();
        loop {
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(k);
            }
            if let Some(status) = k.child.try_wait()? {
                bail!("berth-keeper exited with {status}:\n{}", k.log_text());
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "keeper gateway never answered:\n{}",
                k.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its metrics, as Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.gateway))
            .await?
            .text()
            .await?)
    }
}

impl Drop for KeeperProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Signs `manifest` for `lease` as `tenant` and PUTs it to the gateway; returns the HTTP
/// status and the JSON answer.
pub async fn upload(
    gateway: &str,
    chain: &Chain,
    escrow: Address,
    tenant: usize,
    lease: U256,
    manifest: &[u8],
) -> Result<(u16, serde_json::Value)> {
    let digest = signing_hash(chain.chain_id(), escrow, lease, manifest);
    let sig = chain.signer(tenant)?.sign_hash_sync(&digest)?;
    let resp = reqwest::Client::new()
        .put(format!("{gateway}/v1/leases/{lease}/manifest"))
        .header(
            SIGNATURE_HEADER,
            format!("0x{}", alloy::hex::encode(sig.as_bytes())),
        )
        .body(manifest.to_vec())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

/// The workload podman runs for `lease` of `escrow` on `chain_id`, if any.
pub async fn workload(
    podman: &PodmanService,
    chain_id: u64,
    escrow: Address,
    lease: U256,
) -> Result<Option<Workload>> {
    let mut all = podman.engine().list(chain_id, escrow).await?;
    Ok(all.remove(&lease))
}

/// Ids of the pods podman has with every label in `labels`.
fn pod_ids(labels: &[String]) -> Result<Vec<String>> {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf())
        .args(["pod", "ps", "--quiet"]);
    for l in labels {
        cmd.args(["--filter", &format!("label={l}")]);
    }
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "podman pod ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Pods podman runs for `lease` (to prove there is exactly one workload, not one per try).
pub async fn pod_count(chain_id: u64, escrow: Address, lease: U256) -> Result<usize> {
    let labels = [
        format!("berth.dev/chain-id={chain_id}"),
        format!("berth.dev/escrow={escrow:#x}"),
        format!("berth.dev/lease-id={lease}"),
    ];
    Ok(tokio::task::spawn_blocking(move || pod_ids(&labels))
        .await??
        .len())
}

/// Removes every pod labelled with `chain_id` (a test's leftovers, whatever state it ended in).
pub fn remove_pods_of_chain(chain_id: u64) {
    let Ok(ids) = pod_ids(&[format!("berth.dev/chain-id={chain_id}")]) else {
        return;
    };
    if !ids.is_empty() {
        let _ = Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(["pod", "rm", "--force", "--time", "0"])
            .args(&ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// GETs `url` and returns the body, or None when nothing answers.
pub async fn fetch(url: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    client.get(url).send().await.ok()?.text().await.ok()
}

/// The lease's `LeaseConfirmed` events.
pub async fn confirmations_of(chain: &Chain, escrow: Address, lease: U256) -> Result<usize> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    let logs = chain
        .wallet(0)?
        .get_logs(
            &Filter::new()
                .address(escrow)
                .event_signature(berth_bindings::LeaseEscrow::LeaseConfirmed::SIGNATURE_HASH)
                .topic1(alloy::primitives::B256::from(lease))
                .from_block(0),
        )
        .await?;
    Ok(logs.len())
}

/// The endpoint the lease was confirmed with (its `LeaseConfirmed` event), empty before.
pub async fn endpoint_of(chain: &Chain, escrow: Address, lease: U256) -> Result<String> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    use berth_bindings::LeaseEscrow::LeaseConfirmed;
    let logs = chain
        .wallet(0)?
        .get_logs(
            &Filter::new()
                .address(escrow)
                .event_signature(LeaseConfirmed::SIGNATURE_HASH)
                .topic1(alloy::primitives::B256::from(lease))
                .from_block(0),
        )
        .await?;
    Ok(logs
        .first()
        .and_then(|l| LeaseConfirmed::decode_log(&l.inner).ok())
        .map(|e| e.data.endpoint.clone())
        .unwrap_or_default())
}

/// The lease's `LeaseOpened` event.
pub async fn lease_opened(
    chain: &Chain,
    escrow: Address,
    lease: U256,
) -> Result<berth_bindings::LeaseEscrow::LeaseOpened> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    use berth_bindings::LeaseEscrow::LeaseOpened;
    let logs = chain
        .wallet(0)?
        .get_logs(
            &Filter::new()
                .address(escrow)
                .event_signature(LeaseOpened::SIGNATURE_HASH)
                .topic1(alloy::primitives::B256::from(lease))
                .from_block(0),
        )
        .await?;
    let log = logs
        .first()
        .ok_or_else(|| eyre::eyre!("lease {lease} has no LeaseOpened event"))?;
    Ok(LeaseOpened::decode_log(&log.inner)?.data)
}

/// When the lease was confirmed: the timestamp of its `LeaseConfirmed` block (0 before).
pub async fn confirmed_at(chain: &Chain, escrow: Address, lease: U256) -> Result<u64> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    let wallet = chain.wallet(0)?;
    let logs = wallet
        .get_logs(
            &Filter::new()
                .address(escrow)
                .event_signature(berth_bindings::LeaseEscrow::LeaseConfirmed::SIGNATURE_HASH)
                .topic1(alloy::primitives::B256::from(lease))
                .from_block(0),
        )
        .await?;
    let Some(block) = logs.first().and_then(|l| l.block_number) else {
        return Ok(0);
    };
    let b = wallet
        .get_block_by_number(block.into())
        .await?
        .ok_or_else(|| eyre::eyre!("block {block} not found"))?;
    Ok(b.header.timestamp)
}
