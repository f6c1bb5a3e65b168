//! Indexer configuration: a TOML file, then `BERTH_<FIELD>` environment overrides, loaded by
//! the services' one loader ([`berth_runtime::config`]) and validated at start with errors
//! that name the bad field and where it came from.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use berth_runtime::{
    LogFormat,
    config::{ConfigError, ServiceConfig, Url, millis, optional, require_scheme},
};
use serde::Deserialize;

/// Everything the indexer service needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Postgres connection string (`BERTH_DATABASE_URL`, or `DATABASE_URL`).
    #[serde(default)]
    pub database_url: String,
    /// JSON-RPC endpoint, http or https (`BERTH_RPC_URL`).
    pub rpc_url: Url,
    /// WebSocket endpoint for newHeads subscriptions; unset or empty to poll only
    /// (`BERTH_WS_URL`).
    #[serde(default, deserialize_with = "optional")]
    pub ws_url: Option<Url>,
    /// `deployments/<chainId>.json` written by the deploy script (`BERTH_DEPLOYMENT`).
    #[serde(default)]
    pub deployment: PathBuf,
    /// First block to index; defaults to the deployment's start block (`BERTH_START_BLOCK`).
    #[serde(default)]
    pub start_block: Option<u64>,
    /// Blocks behind the head to stay (`BERTH_CONFIRMATIONS`).
    #[serde(default = "defaults::confirmations")]
    pub confirmations: u64,
    /// Poll interval at the head: milliseconds, or text like "2s" (`BERTH_POLL_INTERVAL_MS`).
    #[serde(default = "defaults::poll_interval_ms", deserialize_with = "millis")]
    pub poll_interval_ms: Duration,
    /// First `eth_getLogs` block range (`BERTH_INITIAL_RANGE`).
    #[serde(default = "defaults::initial_range")]
    pub initial_range: u64,
    /// Largest block range (`BERTH_MAX_RANGE`).
    #[serde(default = "defaults::max_range")]
    pub max_range: u64,
    /// Recent blocks kept for reorg handling (`BERTH_REORG_WINDOW`).
    #[serde(default = "defaults::reorg_window")]
    pub reorg_window: u64,
    /// Timeout of one RPC request: milliseconds, or text like "10s" (`BERTH_RPC_TIMEOUT_MS`).
    #[serde(default = "defaults::rpc_timeout_ms", deserialize_with = "millis")]
    pub rpc_timeout_ms: Duration,
    /// Address of the metrics endpoint, `host:port`; empty to disable (`BERTH_METRICS_ADDR`).
    #[serde(default = "defaults::metrics_addr", deserialize_with = "optional")]
    pub metrics_addr: Option<SocketAddr>,
    /// `text` or `json` logs (`BERTH_LOG_FORMAT`).
    #[serde(default)]
    pub log_format: LogFormat,
    /// Runway thresholds that raise a tenant alert, seconds (`BERTH_ALERT_THRESHOLDS_S`,
    /// e.g. `[86400, 7200]`); empty for no runway alerts.
    #[serde(
        default = "defaults::alert_thresholds_s",
        deserialize_with = "list_of_seconds"
    )]
    pub alert_thresholds_s: Vec<u64>,
    /// Time between alert passes and webhook rounds (`BERTH_ALERT_INTERVAL_MS`).
    #[serde(default = "defaults::alert_interval_ms", deserialize_with = "millis")]
    pub alert_interval_ms: Duration,
    /// Where alerts are POSTed as JSON; unset for none (`BERTH_ALERT_WEBHOOK_URL`).
    #[serde(default, deserialize_with = "optional")]
    pub alert_webhook_url: Option<Url>,
    /// Timeout of one webhook request (`BERTH_ALERT_WEBHOOK_TIMEOUT_MS`).
    #[serde(
        default = "defaults::alert_webhook_timeout_ms",
        deserialize_with = "millis"
    )]
    pub alert_webhook_timeout_ms: Duration,
    /// Attempts per alert before the webhook gives it up (`BERTH_ALERT_WEBHOOK_MAX_ATTEMPTS`).
    #[serde(default = "defaults::alert_webhook_max_attempts")]
    pub alert_webhook_max_attempts: u32,
}

/// A list of seconds: a TOML array, or text like `86400, 7200` or `[60, 20]` (the environment).
fn list_of_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        List(Vec<u64>),
        Text(String),
    }
    match Given::deserialize(d)? {
        Given::List(v) => Ok(v),
        Given::Text(t) => t
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u64>().map_err(|_| {
                    serde::de::Error::custom(format!("`{p}` is not a number of seconds"))
                })
            })
            .collect(),
    }
}

mod defaults {
    use std::{net::SocketAddr, time::Duration};

    pub fn alert_thresholds_s() -> Vec<u64> {
        vec![24 * 3600, 2 * 3600]
    }
    pub fn alert_interval_ms() -> Duration {
        Duration::from_secs(30)
    }
    pub fn alert_webhook_timeout_ms() -> Duration {
        Duration::from_secs(5)
    }
    pub fn alert_webhook_max_attempts() -> u32 {
        50
    }

    pub fn confirmations() -> u64 {
        0
    }
    pub fn poll_interval_ms() -> Duration {
        Duration::from_millis(1000)
    }
    pub fn rpc_timeout_ms() -> Duration {
        Duration::from_millis(10_000)
    }
    pub fn initial_range() -> u64 {
        1000
    }
    pub fn max_range() -> u64 {
        50_000
    }
    pub fn reorg_window() -> u64 {
        256
    }
    pub fn metrics_addr() -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
    }
}

impl ServiceConfig for Config {
    const FALLBACKS: &'static [(&'static str, &'static str)] = &[("database_url", "DATABASE_URL")];

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| Err(ConfigError::invalid(field, reason));
        if !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
        {
            return bad("database_url", "must be a postgres:// URL");
        }
        require_scheme("rpc_url", &self.rpc_url, &["http", "https"])?;
        if let Some(ws) = &self.ws_url {
            require_scheme("ws_url", ws, &["ws", "wss"])?;
        }
        if self.deployment.as_os_str().is_empty() {
            return bad("deployment", "is required (deployments/<chainId>.json)");
        }
        if self.poll_interval_ms.is_zero() {
            return bad("poll_interval_ms", "must be above zero");
        }
        if self.rpc_timeout_ms.is_zero() {
            return bad("rpc_timeout_ms", "must be above zero");
        }
        if self.initial_range == 0 || self.max_range == 0 || self.initial_range > self.max_range {
            return bad("initial_range", "must be between 1 and max_range");
        }
        if self.reorg_window < 2 {
            return bad("reorg_window", "must be at least 2");
        }
        if self.alert_interval_ms.is_zero() {
            return bad("alert_interval_ms", "must be above zero");
        }
        if self.alert_thresholds_s.len() > 8 {
            return bad("alert_thresholds_s", "at most 8 thresholds");
        }
        if let Some(url) = &self.alert_webhook_url {
            require_scheme("alert_webhook_url", url, &["http", "https"])?;
        }
        if self.alert_webhook_timeout_ms.is_zero() {
            return bad("alert_webhook_timeout_ms", "must be above zero");
        }
        if self.alert_webhook_max_attempts == 0 {
            return bad("alert_webhook_max_attempts", "must be above zero");
        }
        Ok(())
    }

    fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

impl Config {
    /// The timeout of one RPC request.
    pub fn rpc_timeout(&self) -> Duration {
        self.rpc_timeout_ms
    }

    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval_ms
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://localhost/berth"),
        ("BERTH_RPC_URL", "http://127.0.0.1:8545"),
        ("BERTH_DEPLOYMENT", "deployments/31337.json"),
    ];

    #[test]
    fn env_alone_is_enough_and_defaults_apply() {
        let cfg = Config::load(None, env(BASE)).expect("valid");
        assert_eq!(cfg.reorg_window, 256);
        assert_eq!(cfg.confirmations, 0);
        assert_eq!(cfg.ws_url, None);
        assert_eq!(cfg.metrics_addr, Some(([127, 0, 0, 1], 9464).into()));
        assert_eq!(cfg.poll_interval(), Duration::from_secs(1));
        assert_eq!(cfg.alert_thresholds_s, [86_400, 7200]);
        assert_eq!(cfg.alert_webhook_url, None);
    }

    #[test]
    fn alert_settings_from_the_environment() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("BERTH_ALERT_THRESHOLDS_S", "[60, 20]"),
            ("BERTH_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("BERTH_ALERT_INTERVAL_MS", "1s"),
        ]);
        let cfg = Config::load(None, env(&pairs)).expect("valid");
        assert_eq!(cfg.alert_thresholds_s, [60, 20]);
        assert_eq!(cfg.alert_interval_ms, Duration::from_secs(1));
        let mut pairs = BASE.to_vec();
        pairs.push(("BERTH_ALERT_WEBHOOK_URL", "ftp://x/"));
        let err = Config::load(None, env(&pairs))
            .expect_err("scheme")
            .to_string();
        assert!(err.contains("alert_webhook_url"), "{err}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("indexer.example.toml");
        let cfg = Config::load(Some(&path), env(&[])).expect("indexer.example.toml loads");
        assert!(cfg.ws_url.is_some());
        assert!(cfg.metrics_addr.is_some());
    }

    #[test]
    fn typed_values_from_text() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("BERTH_WS_URL", "ws://127.0.0.1:8546"),
            ("BERTH_METRICS_ADDR", ""),
            ("BERTH_POLL_INTERVAL_MS", "250ms"),
            ("BERTH_RPC_TIMEOUT_MS", "3000"),
        ]);
        let cfg = Config::load(None, env(&pairs)).expect("valid");
        assert_eq!(
            cfg.ws_url.as_ref().map(Url::as_str),
            Some("ws://127.0.0.1:8546/")
        );
        assert_eq!(cfg.metrics_addr, None, "empty turns the endpoint off");
        assert_eq!(cfg.poll_interval(), Duration::from_millis(250));
        assert_eq!(cfg.rpc_timeout(), Duration::from_secs(3));
        for (var, value, says) in [
            ("BERTH_WS_URL", "http://127.0.0.1:8545", "ws:// or wss://"),
            ("BERTH_METRICS_ADDR", "localhost", "`localhost`"),
            (
                "BERTH_POLL_INTERVAL_MS",
                "often",
                "`often` is not a duration",
            ),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((var, value));
            let err = Config::load(None, env(&pairs)).expect_err(var).to_string();
            assert!(err.contains(says), "{var}: {err}");
        }
    }

    #[test]
    fn env_overrides_the_file() {
        let path = std::env::temp_dir().join(format!("berth-indexer-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "confirmations = 3\nmax_range = 10\ninitial_range = 5\n",
        )
        .expect("write");
        let mut pairs = BASE.to_vec();
        pairs.push(("BERTH_CONFIRMATIONS", "7"));
        let cfg = Config::load(Some(&path), env(&pairs)).expect("valid");
        assert_eq!(cfg.confirmations, 7, "env wins");
        assert_eq!(cfg.max_range, 10, "file applies");
    }

    #[test]
    fn errors_name_the_field() {
        let mut pairs = BASE.to_vec();
        pairs.push(("BERTH_CONFIRMATIONS", "many"));
        let err = Config::load(None, env(&pairs)).expect_err("bad number");
        assert!(
            err.to_string().contains("BERTH_CONFIRMATIONS") && err.to_string().contains("many"),
            "{err}"
        );
        let err = Config::load(None, env(&BASE[1..])).expect_err("no database");
        assert!(err.to_string().contains("`database_url`"), "{err}");
        let path =
            std::env::temp_dir().join(format!("berth-indexer-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "confirmatons = 3\n").expect("write");
        let err = Config::load(Some(&path), env(BASE)).expect_err("typo");
        assert!(err.to_string().contains("confirmatons"), "{err}");
    }
}
