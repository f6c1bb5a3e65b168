//! `berth-gateway`: the provider's HTTPS front door (systemd unit in
//! `gateway/berth-gateway.service`).

use std::sync::Arc;

use berth_gateway::{
    admin,
    config::Config,
    metrics::Metrics,
    proxy::{Proxy, ProxySettings},
    routes::Routes,
    server::{self, Limits},
    tls::Certificates,
};
use berth_runtime::http::{ServeLimits, serve_metrics};
use eyre::{Result, WrapErr};
use tokio::sync::watch;

/// Requests allocate and free many small buffers across connections; mimalloc's per-thread
/// heaps do that with less contention than glibc's (measured by `scripts/bench-gateway`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cfg: Config = berth_runtime::start!(
        "Serves every lease's web services over HTTPS by hostname, with routes from the keeper."
    )?;
    let certificates = Certificates::load(cfg.cert_files()).wrap_err("loading certificates")?;
    let acme = cfg.acme_settings();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server_config(acme.is_some())));
    let metrics = Arc::new(Metrics::new());
    let routes = Arc::new(Routes::new(cfg.routes_file.clone(), Arc::clone(&metrics)));
    let acme = acme
        .map(|settings| {
            berth_gateway::acme::Manager::new(
                settings,
                Arc::clone(&certificates),
                Arc::clone(&routes),
                Arc::clone(&metrics),
            )
        })
        .transpose()
        .wrap_err("opening acme_store")?;
    let settings = ProxySettings {
        api_host: cfg.api_host.clone(),
        api_upstream: cfg.api_upstream,
        connect_timeout: cfg.connect_timeout_ms,
        response_timeout: cfg.response_timeout_s,
        waker: berth_gateway::wake::Waker {
            keeper_socket: cfg.keeper_socket.clone(),
            budget: cfg.wake_timeout_s,
        },
        signin: Arc::new(berth_gateway::signin::SignIn::new(
            cfg.session_key_file.as_deref(),
            cfg.session_ttl_s,
            cfg.keeper_socket.clone(),
        )?),
    };
    let (stop, stopped) = watch::channel(false);

    let workers = cfg.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let listeners = server::listeners(cfg.listen_addr, workers)
        .wrap_err_with(|| format!("binding listen_addr {}", cfg.listen_addr))?;
    let admin_listener = admin::bind(&cfg.admin_socket)
        .wrap_err_with(|| format!("binding admin_socket {}", cfg.admin_socket.display()))?;
    if let Some(addr) = cfg.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .wrap_err_with(|| format!("binding metrics_addr {addr}"))?;
        let metrics = Arc::clone(&metrics);
        let limits = ServeLimits {
            max_connections: 16,
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(10),
        };
        tokio::spawn(serve_metrics(
            listener,
            move || metrics.render(),
            limits,
            stopped.clone(),
        ));
    }
    tokio::spawn(admin::serve(
        admin_listener,
        Arc::clone(&routes),
        stopped.clone(),
    ));
    tokio::spawn(Arc::clone(&certificates).watch(cfg.cert_reload_s, stopped.clone()));
    if let Some(acme) = acme {
        tokio::spawn(acme.run(stopped.clone()));
    }
    tokio::spawn(async move {
        berth_runtime::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    tracing::info!(
        addr = %cfg.listen_addr,
        workers,
        apps_domain = %cfg.apps_domain,
        admin = %cfg.admin_socket.display(),
        "serving HTTPS"
    );
    let limits = Limits {
        // Split over the workers, as the connections are.
        max_connections: cfg.max_connections.div_ceil(workers),
        handshake_timeout: cfg.handshake_timeout_ms,
        header_timeout: cfg.header_timeout_ms,
        max_header_bytes: cfg.max_header_bytes,
        drain_timeout: cfg.drain_timeout_s,
    };
    // One single-threaded runtime per core, each with its own listener and its own pool of
    // connections to the apps (as nginx runs one process per core).
    let mut threads = Vec::with_capacity(workers);
    for (i, listener) in listeners.into_iter().enumerate() {
        let proxy = Proxy::new(Arc::clone(&routes), Arc::clone(&metrics), settings.clone());
        let (acceptor, metrics, stopped) =
            (acceptor.clone(), Arc::clone(&metrics), stopped.clone());
        let thread = std::thread::Builder::new()
            .name(format!("gateway-{i}"))
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    server::serve(
                        listener,
                        acceptor,
                        Arc::new(proxy),
                        metrics,
                        limits,
                        stopped,
                    )
                    .await;
                    Ok(())
                })
            })
            .wrap_err("starting a worker thread")?;
        threads.push(thread);
    }
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "a worker stopped"),
                Err(_) => tracing::error!("a worker panicked"),
            }
        }
    })
    .await?;
    let _ = std::fs::remove_file(&cfg.admin_socket);
    Ok(())
}
