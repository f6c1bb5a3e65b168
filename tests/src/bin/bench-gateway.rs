//! `scripts/bench-gateway [SECONDS [ROUNDS [PLACEMENT]]]` (or `cargo run --release -p
//! berth-e2e --bin bench-gateway [-- SECONDS [ROUNDS [PLACEMENT]]]` once `wrk` and `nginx`
//! are installed)
//!
//! The gateway's cost over direct access, side by side with nginx as the same TLS reverse
//! proxy, in one run on this machine: `wrk` (2 threads, 32 keep-alive connections, SECONDS
//! each, default 10) against a small app (a 100-byte answer, one thread of its own) directly
//! over HTTP, through `berth-gateway` over HTTPS, and through nginx over HTTPS with the same
//! certificate and an upstream keep-alive pool. The three take turns for ROUNDS rounds
//! (default 3), so drift on the machine hits them alike; prints each round's requests/s and
//! the medians of requests/s and p50/p99 latency.
//!
//! PLACEMENT (default `both`): `shared` runs everything on every CPU with a proxy worker per
//! CPU, as a provider's machine would; `split` gives each proxy one worker pinned alone to the
//! last CPU and keeps wrk and the app on the others (`taskset`), which measures what one CPU
//! of proxy serves with far less scheduling noise.

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

/// Where wrk, the app and the proxy run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Everything on every CPU, as on a provider's machine; each proxy runs a worker per CPU.
    Shared,
    /// The proxy alone on the last CPU with one worker, wrk and the app on the others: what
    /// one CPU of proxy does, without the scheduler shuffling five busy threads over two.
    Split,
}

impl Placement {
    fn describe(self, cpus: usize) -> String {
        match self {
            Self::Shared => format!("shared: wrk, app and proxy on all {cpus} CPUs"),
            Self::Split => format!(
                "split: proxy alone on CPU {} (one worker), wrk and app on CPU 0-{}",
                cpus - 1,
                cpus - 2
            ),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let arg = |n: usize, name: &str, default: u64| -> Result<u64> {
        let v = match std::env::args().nth(n) {
            Some(a) => a
                .parse()
                .wrap_err_with(|| format!("{name} must be a whole number, not `{a}`"))?,
            None => default,
        };
        ensure!(v > 0, "{name} must be at least 1");
        Ok(v)
    };
    let seconds = arg(1, "SECONDS", 10)?;
    let rounds = usize::try_from(arg(2, "ROUNDS", 3)?)?;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let placements = match std::env::args().nth(3).as_deref() {
        None | Some("both") if cpus > 1 => vec![Placement::Shared, Placement::Split],
        None | Some("both" | "shared") => vec![Placement::Shared],
        Some("split") if cpus > 1 => vec![Placement::Split],
        Some("split") => bail!("the split placement needs at least 2 CPUs; this machine has 1"),
        Some(other) => bail!("PLACEMENT must be shared, split or both, not `{other}`"),
    };
    for tool in ["wrk", "nginx", "taskset"] {
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
    println!(
        "wrk -t2 -c32 -d{seconds}s, 100-byte answers, keep-alive; {rounds} rounds taking turns"
    );
    for placement in placements {
        println!("== {}", placement.describe(cpus));
        measure(placement, cpus, &dir, &pair, app, seconds, rounds).await?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// One placement: its own gateway and nginx, the three paths taking turns.
async fn measure(
    placement: Placement,
    cpus: usize,
    dir: &Path,
    pair: &str,
    app: SocketAddr,
    seconds: u64,
    rounds: usize,
) -> Result<()> {
    let (workers, proxy_cpu) = match placement {
        Placement::Shared => (cpus, None),
        Placement::Split => {
            // This process (the app's thread, and wrk, which inherits it) off the last CPU.
            pin(std::process::id(), &format!("0-{}", cpus - 2))?;
            (1, Some(cpus - 1))
        }
    };
    let workers_env = workers.to_string();
    let gateway = GatewayProcess::start(
        dir,
        "apps.test",
        &[pair.to_owned()],
        &[("RUST_LOG", "warn"), ("BERTH_WORKERS", &workers_env)],
    )
    .await?;
    if let Some(cpu) = proxy_cpu {
        pin(gateway.pid(), &cpu.to_string())?;
    }
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
    let mut nginx = Nginx::start(
        dir,
        Path::new(cert),
        Path::new(key),
        app,
        workers,
        proxy_cpu,
    )?;
    let paths = [
        ("direct (HTTP, no proxy)", format!("http://{app}/"), None),
        (
            "berth-gateway (HTTPS)",
            format!("https://{}/", gateway.addr),
            Some(gateway.pid()),
        ),
        (
            "nginx 1.22 (HTTPS, same cert)",
            format!("https://127.0.0.1:{}/", nginx.port),
            Some(nginx.child.id()),
        ),
    ];
    let mut results: Vec<Vec<WrkResult>> = paths.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for (i, (name, url, proxy)) in paths.iter().enumerate() {
            let r = wrk(url, seconds, *proxy)?;
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
        "{:<34} {:>12} {:>10} {:>10} {:>16}",
        "path (medians)", "requests/s", "p50 ms", "p99 ms", "proxy CPU us/req"
    );
    let medians: Vec<WrkResult> = results.iter().map(|r| median(r)).collect();
    for ((name, _, _), m) in paths.iter().zip(&medians) {
        let cpu = if m.cpu_us.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.1}", m.cpu_us)
        };
        println!(
            "{name:<34} {:>12.0} {:>10.3} {:>10.3} {cpu:>16}",
            m.rps, m.p50_ms, m.p99_ms
        );
    }
    let (direct, through_gateway, through_nginx) = (&medians[0], &medians[1], &medians[2]);
    let won = results[1]
        .iter()
        .zip(&results[2])
        .filter(|(g, n)| g.rps > n.rps)
        .count();
    println!(
        "gateway vs nginx: {:.2}x throughput (gateway ahead in {won} of {rounds} rounds), {:.2}x CPU per request; p99 added over direct: gateway {:.3} ms, nginx {:.3} ms",
        through_gateway.rps / through_nginx.rps,
        through_gateway.cpu_us / through_nginx.cpu_us,
        through_gateway.p99_ms - direct.p99_ms,
        through_nginx.p99_ms - direct.p99_ms,
    );
    nginx.stop();
    drop(gateway);
    Ok(())
}

/// Pins every thread of process `pid` to `cpus` (a `taskset` list such as `0-2` or `3`);
/// threads and processes it starts later inherit that.
fn pin(pid: u32, cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .wrap_err("running taskset")?;
    ensure!(
        status.success(),
        "taskset could not pin process {pid} to CPU {cpus}"
    );
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
    /// nginx with `workers` worker processes, all on `cpu` if given.
    fn start(
        dir: &Path,
        cert: &Path,
        key: &Path,
        app: SocketAddr,
        workers: usize,
        cpu: Option<usize>,
    ) -> Result<Self> {
        let port = free_port()?;
        let prefix = dir.join(format!("nginx-{port}"));
        std::fs::create_dir_all(prefix.join("logs"))?;
        let conf = format!(
            "worker_processes {workers};\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n\
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
        // Started through taskset so the workers it forks inherit the CPU.
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "nginx"]);
                c
            }
            None => Command::new("nginx"),
        };
        let child = command
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
    /// The proxy's CPU time (user and system, all its threads and worker processes) per
    /// request, microseconds; NaN for direct access.
    cpu_us: f64,
}

/// wrk against `url` for `seconds`, charging the CPU time of process `proxy` (and its
/// children) to the requests served.
fn wrk(url: &str, seconds: u64, proxy: Option<u32>) -> Result<WrkResult> {
    let cpu_before = proxy.map(cpu_time).transpose()?;
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
    let cpu = match (proxy, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    let rps = field("Requests/sec:").and_then(|v| v.parse().ok());
    // "  474016 requests in 10.00s, 71.78MB read"
    let requests = text.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(' ')?;
        rest.starts_with("requests in")
            .then(|| n.parse::<f64>().ok())?
    });
    let (Some(rps), Some(requests), Some(p50), Some(p99)) = (
        rps,
        requests,
        field("50%").and_then(|v| millis(&v)),
        field("99%").and_then(|v| millis(&v)),
    ) else {
        bail!("cannot read wrk's output for {url}:\n{text}")
    };
    Ok(WrkResult {
        rps,
        p50_ms: p50,
        p99_ms: p99,
        cpu_us: cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / requests.max(1.0)),
    })
}

/// CPU time (user and system) used so far by process `pid` and its child processes (nginx's
/// workers), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let ticks_per_second: f64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .wrap_err("running getconf")?
            .stdout,
    )?
    .trim()
    .parse()
    .wrap_err("getconf CLK_TCK")?;
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{id}/stat")) else {
            continue; // gone meanwhile
        };
        // After the command's closing parenthesis: state, ppid, ..., utime and stime are
        // the 12th and 13th (proc(5): fields 14 and 15 of the line).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        if id == pid || number(1) == Some(u64::from(pid)) {
            ticks += number(11).unwrap_or(0) + number(12).unwrap_or(0);
        }
    }
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second))
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
        cpu_us: pick(|r| r.cpu_us),
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
