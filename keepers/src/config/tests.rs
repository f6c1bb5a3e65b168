//! The keeper's configuration: files, environment overrides and errors that name the field.

use std::collections::HashMap;

use super::*;

const MINIMAL: &str = "rpc_url = \"http://127.0.0.1:8545\"\ndeployment = \"deployments/31337.json\"\nprovider_id = 1\ndatabase_url = \"postgres://x\"\noperator_key = \"0x01\"\n";

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    // A name of its own per call: tests run in parallel, and two loading texts of the same
    // length once shared a file, one removing it while the other read it.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "berth-keeper-cfg-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&dir, text).expect("write");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let out = Config::load(Some(&dir), |k| env.get(k).cloned());
    let _ = std::fs::remove_file(&dir);
    out
}

#[test]
fn defaults_and_env_overrides() {
    let cfg = load(
        MINIMAL,
        &[
            ("BERTH_CONFIRMATIONS", "2"),
            ("BERTH_PUBLIC_HOST", "10.0.0.1"),
            ("BERTH_ALLOWED_CAPABILITIES", "CHOWN, KILL"),
        ],
    )
    .expect("valid");
    assert_eq!(cfg.engine, EngineKind::Podman);
    assert_eq!(cfg.confirmations, 2);
    assert_eq!(cfg.public_host, "10.0.0.1");
    assert_eq!(cfg.allowed_capabilities, vec!["CHOWN", "KILL"]);
    assert_eq!(cfg.ports(), 30000..=30999);
    assert_eq!(cfg.poll_interval_ms, Duration::from_millis(500));
    assert_eq!(cfg.podman_subnet.to_string(), "10.90.0.0/16");
    let cfg = load(
        MINIMAL,
        &[
            ("BERTH_POLL_INTERVAL_MS", "250"),
            ("BERTH_REPORT_INTERVAL_S", "2m"),
            ("BERTH_PODMAN_SUBNET", "10.1.0.0/20"),
        ],
    )
    .expect("valid");
    assert_eq!(cfg.poll_interval_ms, Duration::from_millis(250));
    assert_eq!(cfg.report_interval_s, Duration::from_secs(120));
    assert_eq!(cfg.podman_subnet.prefix, 20);
}

#[test]
fn the_example_file_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keeper.example.toml");
    let env = |k: &str| (k == "BERTH_OPERATOR_KEY").then(|| "0x01".to_string());
    let cfg = Config::load(Some(&path), env).expect("keeper.example.toml loads");
    assert_eq!(cfg.confirmations, 3);
    assert_eq!(cfg.ports(), 30000..=30999);
}

#[test]
fn errors_name_the_field() {
    let e = load(MINIMAL, &[("BERTH_PORT_RANGE", "9-1")])
        .expect_err("bad range")
        .to_string();
    assert!(e.contains("BERTH_PORT_RANGE") && e.contains("`9-1`"), "{e}");
    let e = load(MINIMAL, &[("BERTH_ENGINE", "docker")])
        .expect_err("bad engine")
        .to_string();
    assert!(e.contains("BERTH_ENGINE") && e.contains("docker"), "{e}");
    let e = load(
        MINIMAL,
        &[("BERTH_API_CORS_ORIGINS", "console.example.org")],
    )
    .expect_err("not an origin")
    .to_string();
    assert!(
        e.contains("api_cors_origins") && e.contains("`console.example.org` is not an origin"),
        "{e}"
    );
    let e = load(MINIMAL, &[("BERTH_POLL_INTERVAL_MS", "soon")])
        .expect_err("bad number")
        .to_string();
    assert!(e.contains("BERTH_POLL_INTERVAL_MS"), "{e}");
    let e = load(&format!("{MINIMAL}colour = 1\n"), &[])
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("colour"), "{e}");
    let e = load(MINIMAL, &[("BERTH_PODMAN_SUBNET", "10.90.0.0")])
        .expect_err("no prefix length")
        .to_string();
    assert!(
        e.contains("BERTH_PODMAN_SUBNET") && e.contains("`10.90.0.0` is not an IPv4 subnet"),
        "{e}"
    );
    let e = load(MINIMAL, &[("BERTH_SHELL_IDLE_S", "0")])
        .expect_err("zero idle")
        .to_string();
    assert!(
        e.contains("`shell_idle_s` (BERTH_SHELL_IDLE_S): must be above zero"),
        "{e}"
    );
    let e = load(MINIMAL, &[("BERTH_POLL_INTERVAL_MS", "0s")])
        .expect_err("zero")
        .to_string();
    assert!(
        e.contains("`poll_interval_ms` (BERTH_POLL_INTERVAL_MS): must be above zero"),
        "{e}"
    );
    let e = load(MINIMAL, &[("BERTH_RPC_URL", "ws://127.0.0.1:8546")])
        .expect_err("not http")
        .to_string();
    assert!(
        e.contains("`rpc_url`") && e.contains("http:// or https://"),
        "{e}"
    );
    let e = load(MINIMAL, &[("BERTH_RPC_URL", "not a url")])
        .expect_err("not a URL")
        .to_string();
    assert!(e.contains("BERTH_RPC_URL"), "{e}");
    let e = load(MINIMAL, &[("BERTH_APPS_DOMAIN", "Apps.Example")])
        .expect_err("not a lower-case hostname")
        .to_string();
    assert!(e.contains("`apps_domain` (BERTH_APPS_DOMAIN)"), "{e}");
    let e = load(MINIMAL, &[("BERTH_ROUTE_UPSTREAM_HOST", "gateway.local")])
        .expect_err("not an IP address")
        .to_string();
    assert!(
        e.contains("BERTH_ROUTE_UPSTREAM_HOST") && e.contains("IP address"),
        "{e}"
    );
    let kube = [
        ("BERTH_ENGINE", "kubernetes"),
        ("BERTH_APPS_DOMAIN", "apps.example.com"),
    ];
    let e = load(MINIMAL, &kube)
        .expect_err("no gateway peers")
        .to_string();
    assert!(e.contains("`kube_gateway_namespace`"), "{e}");
    let e = load(MINIMAL, &[("BERTH_KUBE_GATEWAY_CIDRS", "10.0.0.5/33")])
        .expect_err("bad prefix")
        .to_string();
    assert!(
        e.contains("`kube_gateway_cidrs`") && e.contains("10.0.0.5/33"),
        "{e}"
    );
    let mut with_peers = kube.to_vec();
    with_peers.push(("BERTH_KUBE_GATEWAY_CIDRS", "10.0.0.5/32,fd00::/64"));
    let peers = load(MINIMAL, &with_peers)
        .expect("valid")
        .kube_gateway_peers()
        .expect("peers");
    assert_eq!(peers.cidrs, ["10.0.0.5/32", "fd00::/64"]);
    let e = load(MINIMAL, &[("BERTH_LOG_FORMAT", "yaml")])
        .expect_err("bad log format")
        .to_string();
    assert!(e.contains("BERTH_LOG_FORMAT") && e.contains("yaml"), "{e}");
    let e = load(&format!("{MINIMAL}keystore = \"k.json\"\n"), &[])
        .expect_err("two keys")
        .to_string();
    assert!(e.contains("`operator_key`"), "{e}");
}
