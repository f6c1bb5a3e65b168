//! A Postgres server of the drill's own (initdb in a temporary directory, on a free
//! loopback port), so the drill may stop and restart it under the services without
//! touching the machine's server. Run as the `postgres` user when the drill runs as root.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use eyre::{Result, WrapErr, bail, ensure};

/// The server; stopped and its directory removed when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args…`, as the `postgres` user when running as root (the server refuses root).
fn command(program: &std::path::Path, args: &[&str]) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// The newest server binaries installed (`/usr/lib/postgresql/<version>/bin`).
fn server_bin() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .wrap_err("no PostgreSQL server installed under /usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .ok_or_else(|| eyre::eyre!("no initdb under /usr/lib/postgresql/*/bin"))
}

impl PrivatePostgres {
    /// Creates a cluster and starts it.
    pub fn start() -> Result<Self> {
        let bin = server_bin()?;
        let dir = std::env::temp_dir().join(format!("berth-drill-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if running_as_root() {
            let ok = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()?
                .success();
            ensure!(ok, "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let out = command(
            &bin.join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        )
        .stdout(Stdio::null())
        .output()?;
        ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut pg = Self {
            bin,
            dir,
            port,
            child: None,
        };
        pg.up()?;
        Ok(pg)
    }

    /// Its URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it accepts connections (30 s at most).
    pub fn up(&mut self) -> Result<()> {
        let data = self.dir.join("data").display().to_string();
        let socket_dir = self.dir.display().to_string();
        let port = self.port.to_string();
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        let child = command(
            &self.bin.join("postgres"),
            &[
                "-D",
                &data,
                "-p",
                &port,
                "-k",
                &socket_dir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
        )
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .wrap_err("starting postgres")?;
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the drill's postgres did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Listening comes before accepting: give recovery a moment.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions are cut, as in a crash of the clients'
    /// view) and waits for it to exit.
    pub fn down(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // The postmaster's pid is the first line of postmaster.pid (under runuser, the
            // child is runuser itself).
            let pid_file = self.dir.join("data/postmaster.pid");
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.lines().next().map(str::to_owned))
                .unwrap_or_else(|| child.id().to_string());
            let ok = Command::new("kill")
                .args(["-INT", &pid])
                .status()?
                .success();
            ensure!(ok, "signalling postgres ({pid})");
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
