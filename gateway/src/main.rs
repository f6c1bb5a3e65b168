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

#[tokio::main]
async fn main() -> Result<()> {
    let cfg: Config = berth_runtime::start!(
        "Serves every lease's web services over HTTPS by hostname, with routes from the keeper."
    )?;
    let certificates = Certificates::load(cfg.cert_files()).wrap_err("loading certificates")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server_config()));
    let metrics = Arc::new(Metrics::new());
    let routes = Arc::new(Routes::new(cfg.routes_file.clone(), Arc::clone(&metrics)));
    let proxy = Arc::new(Proxy::new(
        Arc::clone(&routes),
        Arc::clone(&metrics),
        ProxySettings {
            api_host: cfg.api_host.clone(),
            api_upstream: cfg.api_upstream,
            connect_timeout: cfg.connect_timeout_ms,
            response_timeout: cfg.response_timeout_s,
        },
    ));
    let (stop, stopped) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(cfg.listen_addr)
        .await
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
    tokio::spawn(async move {
        berth_runtime::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    tracing::info!(
        addr = %cfg.listen_addr,
        apps_domain = %cfg.apps_domain,
        admin = %cfg.admin_socket.display(),
        "serving HTTPS"
    );
    let limits = Limits {
        max_connections: cfg.max_connections,
        handshake_timeout: cfg.handshake_timeout_ms,
        header_timeout: cfg.header_timeout_ms,
        max_header_bytes: cfg.max_header_bytes,
        drain_timeout: cfg.drain_timeout_s,
    };
    server::serve(listener, acceptor, proxy, metrics, limits, stopped).await;
    let _ = std::fs::remove_file(&cfg.admin_socket);
    Ok(())
}
