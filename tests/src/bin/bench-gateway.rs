//! `scripts/bench-gateway [SECONDS [ROUNDS]]` (or `cargo run --release -p berth-e2e --bin
//! bench-gateway [-- SECONDS [ROUNDS]]` once `wrk` and `nginx` are installed)
//!
//! The gateway's cost over direct access, side by side with nginx as the same TLS reverse
//! proxy, in one run on this machine: `wrk` (2 threads, 32 keep-alive connections, SECONDS
//! each, default 10) against a small app (a 100-byte answer, one thread of its own) directly
//! over HTTP, through `berth-gateway` over HTTPS, and through nginx over HTTPS with the same
//! certificate and an upstream keep-alive pool. The three take turns for ROUNDS rounds
//! (default 3), so drift on the machine hits them alike; prints each round's requests/s and
//! the medians of requests/s and p50/p99 latency.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use berth_e2e::{
    gateway::{GatewayProcess, TestCa, scratch_dir},
    keeper::free_port,
};
use berth_protocol::routing::{Route, RouteTable};
use eyre::{Result, WrapErr, bail, ensure};

const HOST: &str = "bench.apps.test";
const BODY: &[u8; 100] = &[b'x'; 100];

#[tokio::main]
async fn main() -> Result<()> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .wrap_err_with(|| format!("SECONDS must be a whole number, not `{a}`"))?,
        None => 10,
    };
    ensure!(seconds > 0, "SECONDS must be at least 1");
    let rounds: usize = match std::env::args().nth(2) {
        Some(a) => a
            .parse()
            .wrap_err_with(|| format!("ROUNDS must be a whole number, not `{a}`"))?,
        None => 3,
    };
    ensure!(rounds > 0, "ROUNDS must be at least 1");
    for tool in ["wrk", "nginx"] {
        ensure!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()?
                .success(),
            "{tool} is not installed: run scripts/bench-gateway, which installs it"
        );
    }
    let dir = scratch_dir("bench-gateway")?;
    let ca = TestCa::new(&dir)?;
    let pair = ca.issue("apps", &["*.apps.test"])?;
    let app = start_app()?;
    let gateway = GatewayProcess::start(
        &dir,
        "apps.test",
        std::slice::from_ref(&pair),
        &[("RUST_LOG", "warn")],
    )
    .await?;
    gateway
        .push(&RouteTable {
            routes: vec![Route {
                host: HOST.into(),
                lease: 1u8.try_into()?,
                service: "web".into(),
                upstream: app.to_string(),
                asleep: None,
                access: None,
            }],
        })
        .await?;
    let (cert, key) = pair.split_once(':').unwrap_or_default();
    let mut nginx = Nginx::start(&dir, Path::new(cert), Path::new(key), app)?;

    println!(
        "wrk -t2 -c32 -d{seconds}s, 100-byte answers, keep-alive; {rounds} rounds taking turns"
    );
    let paths = [
        ("direct (HTTP, no proxy)", format!("http://{app}/")),
        (
            "berth-gateway (HTTPS)",
            format!("https://{}/", gateway.addr),
        ),
        (
            "nginx 1.22 (HTTPS, same cert)",
            format!("https://127.0.0.1:{}/", nginx.port),
        ),
    ];
    let mut results: Vec<Vec<WrkResult>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for (i, (name, url)) in paths.iter().enumerate() {
            let r = wrk(url, seconds)?;
            line.push_str(&format!(
                " {} {:.0}/s;",
                name.split(' ').next().unwrap_or(name),
                r.rps
            ));
            results[i].push(r);
        }
        println!("{line}");
    }
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "path (medians)", "requests/s", "p50 ms", "p99 ms"
    );
    let medians: Vec<WrkResult> = results.iter().map(|r| median(r)).collect();
    for ((name, _), m) in paths.iter().zip(&medians) {
        println!(
            "{name:<34} {:>12.0} {:>10.3} {:>10.3}",
            m.rps, m.p50_ms, m.p99_ms
        );
    }
    let (direct, through_gateway, through_nginx) = (&medians[0], &medians[1], &medians[2]);
    println!(
        "gateway vs nginx: {:.2}x throughput; p99 added over direct: gateway {:.3} ms, nginx {:.3} ms",
        through_gateway.rps / through_nginx.rps,
        through_gateway.p99_ms - direct.p99_ms,
        through_nginx.p99_ms - direct.p99_ms,
    );
    nginx.stop();
    drop(gateway);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// The app: answers every request with 100 bytes, on a runtime thread of its own.
fn start_app() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(hyper::body::Bytes::from_static(BODY)),
                    ))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
    });
    Ok(addr)
}

struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, cert: &Path, key: &Path, app: SocketAddr) -> Result<Self> {
        let port = free_port()?;
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))?;
        let conf = format!(
            "worker_processes 2;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
             upstream app {{ server {app}; keepalive 64; }}\n\
             server {{\n    listen 127.0.0.1:{port} ssl http2;\n    server_name {HOST};\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    keepalive_requests 1000000;\n\
             location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
             proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto https; }}\n  }}\n}}\n",
            prefix = prefix.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let path = prefix.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("nginx")
            .args([
                "-p",
                &prefix.display().to_string(),
                "-c",
                &path.display().to_string(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .wrap_err("starting nginx")?;
        let mut nginx = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx.stop();
        bail!(
            "nginx did not listen: {}",
            std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default()
        )
    }

    /// SIGTERM to the master, which stops its workers (SIGKILL would orphan them, still
    /// holding the port); SIGKILL only if it has not exited within 5 s.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(url: &str, seconds: u64) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Host: {HOST}"),
            url,
        ])
        .output()
        .wrap_err("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk {url} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!text.contains("Non-2xx"), "wrk {url} got errors:\n{text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let rps = field("Requests/sec:").and_then(|v| v.parse().ok());
    let (Some(rps), Some(p50), Some(p99)) = (
        rps,
        field("50%").and_then(|v| millis(&v)),
        field("99%").and_then(|v| millis(&v)),
    ) else {
        bail!("cannot read wrk's output for {url}:\n{text}")
    };
    Ok(WrkResult {
        rps,
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// The median of each figure over the rounds.
fn median(rounds: &[WrkResult]) -> WrkResult {
    let pick = |f: fn(&WrkResult) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    WrkResult {
        rps: pick(|r| r.rps),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
    }
}

/// wrk's latency (`812.00us`, `1.23ms`, `2.01s`) in milliseconds.
fn millis(v: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}
