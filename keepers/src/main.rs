//! `berth-keeper`: the provider keeper service (systemd unit in `keepers/berth-keeper.service`).

use std::sync::Arc;

use alloy::{network::EthereumWallet, providers::Provider, signers::local::PrivateKeySigner};
use berth_bindings::{Deployment, ProviderRegistry};
use berth_keepers::{
    chain::{ChainReader, http_provider},
    config::{Config, EngineKind},
    engine::{Engine, KubeEngine, PodNetwork, PodmanEngine},
    gateway::{Gateway, ServeLimits, router, serve},
    metering::sampler::Sampler,
    metrics::Metrics,
    reconcile::{GatewaySettings, Reconciler, Settings},
    signer::Signer,
    store::Store,
};
use eyre::{Context, Result, ensure};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<()> {
    let cfg: Config = berth_runtime::start!(
        "Turns funded leases of one provider into running workloads and back."
    )?;

    let provider = http_provider(cfg.rpc_url.as_str(), cfg.rpc_timeout_ms)?;
    let chain_id = provider
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("reaching rpc_url {}", cfg.rpc_url))?;
    let deployment =
        Deployment::load_file(&cfg.deployment, Some(chain_id)).wrap_err("reading deployment")?;
    let signer_key = operator_key(&cfg)?;
    let operator = signer_key.address();

    let registry = ProviderRegistry::new(deployment.provider_registry, &provider);
    let agents = registry
        .agentsOf(alloy::primitives::U256::from(cfg.provider_id))
        .call()
        .await
        .wrap_err("reading the provider from the registry (provider_id)")?;
    ensure!(
        agents.operator == operator || agents.owner == operator,
        "the key's address {operator} is neither the operator nor the owner of provider {}",
        cfg.provider_id
    );

    let store = Store::connect(&cfg.database_url, chain_id, deployment.lease_escrow)
        .await
        .wrap_err("opening the keeper's database (database_url)")?;
    let engine = match cfg.engine {
        EngineKind::Podman => {
            let engine = PodmanEngine::new(
                &cfg.podman_socket,
                cfg.engine_timeout_ms,
                cfg.pull_timeout_s,
            );
            if cfg.encryption_keys.is_some() {
                berth_keepers::engine::podman::prepare_secret_files(&cfg.secret_files_dir)
                    .wrap_err("secret_files_dir")?;
            }
            let engine = engine.with_secret_files(&cfg.secret_files_dir);
            let engine = if cfg.apps_domain.is_empty() {
                engine
            } else {
                engine.with_http_host_ip(cfg.route_upstream_host)
            };
            Engine::Podman(match cfg.podman_network.as_str() {
                "" => engine,
                name => engine.with_network(PodNetwork {
                    name: name.to_string(),
                    subnet: cfg.podman_subnet.to_string(),
                }),
            })
        }
        EngineKind::Kubernetes => {
            let engine = KubeEngine::from_env().await?;
            Engine::Kubernetes(match cfg.kube_gateway_peers() {
                Some(peers) if !cfg.apps_domain.is_empty() => engine.with_gateway(peers),
                _ => engine,
            })
        }
    };
    let metrics = Metrics::default();
    let chain = ChainReader::new(provider.clone(), &deployment, cfg.provider_id);
    let signer = Signer::spawn(
        provider.clone(),
        EthereumWallet::from(signer_key),
        chain_id,
        store.clone(),
    );
    let settings = Settings {
        provider_id: cfg.provider_id,
        confirmations: cfg.confirmations,
        poll_interval: cfg.poll_interval_ms,
        resync_interval: cfg.resync_interval_s,
        manifest_timeout: cfg.manifest_timeout_s,
        ready_timeout: cfg.ready_timeout_s,
        min_runway: cfg.min_runway_s,
        public_host: cfg.public_host.clone(),
        policy: cfg.policy(),
        max_cpu_millis: (cfg.max_cpu_millis > 0).then_some(cfg.max_cpu_millis),
        max_memory_mib: (cfg.max_memory_mib > 0).then_some(cfg.max_memory_mib),
        download_timeout: cfg.download_timeout_s,
        report_interval: cfg.report_interval_s,
        report_batch: usize::try_from(cfg.report_batch).unwrap_or(50),
        claim_interval: cfg.claim_interval_s,
        // Three missed rounds in a row are a gap, not usage.
        max_sample_gap_ms: max_sample_gap_ms(&cfg),
        gateway: (!cfg.apps_domain.is_empty()).then(|| GatewaySettings {
            apps_domain: cfg.apps_domain.clone(),
            https_port: cfg.apps_https_port,
            admin_socket: cfg.gateway_admin_socket.clone(),
            upstream: match cfg.engine {
                EngineKind::Podman => {
                    berth_keepers::routes::Upstream::Published(cfg.route_upstream_host.to_string())
                }
                EngineKind::Kubernetes => berth_keepers::routes::Upstream::KubeService {
                    cluster_domain: cfg.kube_cluster_domain.clone(),
                },
            },
            dns_server: cfg.dns_server,
            domain_recheck: cfg.domain_recheck_s,
        }),
        secret_keys: encryption_keys(&cfg, &chain).await?,
    };
    let reconciler = Reconciler::new(
        chain.clone(),
        engine.clone(),
        store.clone(),
        signer,
        settings,
        metrics.clone(),
        chain_id,
    )
    .await?;

    let (sampler_engine, sampler_store, sampler_metrics) =
        (engine.clone(), store.clone(), metrics.clone());
    let (feed_engine, feed_store) = (engine.clone(), store.clone());
    let control_state = berth_keepers::control::Control {
        engine: engine.clone(),
        store: store.clone(),
        chain_id,
        escrow: deployment.lease_escrow,
        locks: reconciler.app_locks(),
        metrics: metrics.clone(),
        reconcile: reconciler.waker(),
        chain: chain.clone(),
    };
    let gateway = Gateway {
        chain,
        store,
        engine,
        chain_id,
        provider_id: cfg.provider_id,
        metrics,
        wake: reconciler.waker(),
        policy: cfg.policy(),
        max_sample_gap_ms: max_sample_gap_ms(&cfg),
        log_streams: berth_keepers::logs::LogStreams::new(
            // Each stream holds a connection: at most half of them.
            (cfg.logs_max_streams as usize)
                .min(usize::try_from(cfg.gateway_max_connections / 2).unwrap_or(usize::MAX))
                .max(1),
            cfg.logs_ping_s,
            cfg.logs_max_stream_s,
        ),
        shells: berth_keepers::shell::Sessions::new(cfg.shell_idle_s),
        cors: Arc::new(cfg.cors_origins()),
        sessions: match &cfg.session_key_file {
            Some(path) => Some(Arc::new(
                berth_runtime::session::SessionKey::load(Some(path))
                    .wrap_err("session_key_file")?,
            )),
            None => None,
        },
    };
    let listener = tokio::net::TcpListener::bind(cfg.gateway_addr)
        .await
        .wrap_err_with(|| format!("binding gateway_addr {}", cfg.gateway_addr))?;
    let (stop, stopped) = watch::channel(false);
    let gateway_stop = stopped.clone();
    let limits = ServeLimits {
        max_connections: usize::try_from(cfg.gateway_max_connections).unwrap_or(usize::MAX),
        header_timeout: cfg.gateway_header_timeout_ms,
        request_timeout: cfg.gateway_request_timeout_ms,
    };
    let server = tokio::spawn(serve(listener, router(gateway), limits, gateway_stop));
    if !cfg.apps_domain.is_empty() {
        let control = berth_keepers::control::bind(&cfg.control_socket)
            .wrap_err_with(|| format!("binding control_socket {}", cfg.control_socket.display()))?;
        tokio::spawn(berth_keepers::control::serve(
            control,
            Arc::new(control_state),
            stopped.clone(),
        ));
    }
    tracing::info!(
        chain_id,
        escrow = %deployment.lease_escrow,
        provider_id = cfg.provider_id,
        %operator,
        engine = ?cfg.engine,
        gateway = %cfg.gateway_addr,
        "keeper running"
    );
    let sampler = Sampler {
        engine: sampler_engine,
        store: sampler_store,
        chain_id,
        escrow: deployment.lease_escrow,
        interval: cfg.sample_interval_ms,
        gateway: (!cfg.apps_domain.is_empty()).then(|| cfg.gateway_admin_socket.clone()),
        metrics: sampler_metrics,
    };
    tokio::spawn(berth_keepers::metering::sampler::run(
        sampler,
        stopped.clone(),
    ));
    tokio::spawn(berth_keepers::feed::run(
        feed_engine,
        feed_store,
        chain_id,
        deployment.lease_escrow,
        std::time::Duration::from_secs(5),
        stopped.clone(),
    ));
    let stop = Arc::new(stop);
    tokio::spawn(async move {
        berth_runtime::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    reconciler.run(stopped).await;
    server.await.wrap_err("gateway task")?;
    Ok(())
}

/// The operator key: an encrypted keystore (with its password file) or a hex key.
fn operator_key(cfg: &Config) -> Result<PrivateKeySigner> {
    if let Some(path) = &cfg.keystore {
        let pw_file = cfg
            .keystore_password_file
            .as_ref()
            .ok_or_else(|| eyre::eyre!("keystore_password_file is required with keystore"))?;
        let password = std::fs::read_to_string(pw_file)
            .wrap_err_with(|| format!("reading keystore_password_file {}", pw_file.display()))?;
        return PrivateKeySigner::decrypt_keystore(path, password.trim_end_matches(['\n', '\r']))
            .wrap_err_with(|| format!("decrypting keystore {}", path.display()));
    }
    cfg.operator_key
        .trim()
        .parse()
        .map_err(|_| eyre::eyre!("operator_key is not a 32-byte hex private key"))
}

/// A gap between two samples longer than three sampling intervals is a hole in metering.
fn max_sample_gap_ms(cfg: &Config) -> u64 {
    u64::try_from((cfg.sample_interval_ms * 3).as_millis()).unwrap_or(u64::MAX)
}

/// The provider's encryption keys, checked against the registry: the key of the registry's
/// current version must be held (else new leases with secrets could never open).
async fn encryption_keys(
    cfg: &berth_keepers::config::Config,
    chain: &berth_keepers::chain::ChainReader,
) -> Result<berth_keepers::secrets::ProviderKeys> {
    let Some(setting) = &cfg.encryption_keys else {
        return Ok(berth_keepers::secrets::ProviderKeys::default());
    };
    let keys =
        berth_keepers::secrets::ProviderKeys::load(setting).wrap_err("reading encryption_keys")?;
    let (public, version) = chain
        .encryption_key()
        .await
        .wrap_err("reading the provider's encryption key from the registry")?;
    match keys.public(version) {
        Some(held) if held == public.0 => {
            tracing::info!(version, held = ?keys.versions(), "encryption keys loaded");
        }
        _ if version == 0 => {
            tracing::warn!(
                "no encryption key registered: register one (berth provider encryption-key register) before tenants can send secrets"
            );
        }
        Some(_) => eyre::bail!(
            "encryption_keys: version {version} does not match the registry's public key"
        ),
        None => eyre::bail!(
            "encryption_keys: the registry's key is version {version}, which the file does not hold (holds {:?})",
            keys.versions()
        ),
    }
    Ok(keys)
}
