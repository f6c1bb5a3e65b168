//! What every Berth service binary (`berth-indexer`, `berth-keeper`) shares: one config
//! loader, logging set up the same way, and the same answer to SIGTERM and Ctrl-C.

pub mod config;
pub mod http;
pub mod session;
mod store;

pub use store::StoreError;

use std::path::PathBuf;

use config::{ConfigError, ServiceConfig};

/// The command line every service takes.
#[derive(Debug, clap::Parser)]
struct ServiceArgs {
    /// TOML configuration file; every field can be overridden by `BERTH_<FIELD>`.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// [`start`] with the calling binary's name and version: `berth_runtime::start!("about")`.
#[macro_export]
macro_rules! start {
    ($about:expr) => {
        $crate::start(env!("CARGO_BIN_NAME"), env!("CARGO_PKG_VERSION"), $about)
    };
}

/// How every service starts: its command line read (`--config FILE`, `--help`,
/// `--version`), its configuration loaded (the file, then `BERTH_*` variables) and checked,
/// logging installed.
pub fn start<C: ServiceConfig>(
    name: &'static str,
    version: &'static str,
    about: &'static str,
) -> Result<C, ConfigError> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServiceArgs::command()
        .name(name)
        .version(version)
        .about(about)
        .get_matches();
    let args = ServiceArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let cfg = C::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    init_tracing(cfg.log_format());
    Ok(cfg)
}

/// How a service writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default `info`), in `format`.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on the first SIGTERM or SIGINT (never, if the handlers cannot be installed).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
