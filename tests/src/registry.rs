//! Debian's `docker-registry` (the CNCF distribution registry) on loopback with htpasswd
//! (bcrypt) auth, and a podman `registries.conf` naming it as a plain-HTTP registry for the
//! test's own podman service. Killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use eyre::{Context, Result, ensure};

use crate::keeper::{containers_conf, free_port};

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// A registries.conf marking it insecure (HTTP), for `CONTAINERS_REGISTRIES_CONF`.
    pub registries_conf: PathBuf,
    log: PathBuf,
}

impl Registry {
    /// Starts a registry in `dir` that admits `user` with `password`.
    pub async fn start(dir: &Path, user: &str, password: &str) -> Result<Self> {
        std::fs::create_dir_all(dir.join("storage"))?;
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .wrap_err("htpasswd (apt-get install apache2-utils)")?;
        ensure!(htpasswd.status.success(), "htpasswd failed");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout)?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            dir.join("storage").display(),
            dir.join("htpasswd").display()
        );
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)?;
        let registries_conf = dir.join("registries.conf");
        std::fs::write(
            &registries_conf,
            format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"),
        )?;
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .wrap_err("starting docker-registry (apt-get install docker-registry)")?;
        let mut registry = Self {
            child,
            host,
            registries_conf,
            log,
        };
        crate::wait_listening(&mut registry.child, port, "docker-registry", &registry.log).await?;
        Ok(registry)
    }

    /// Pushes the local image `image` to `<host>/<name>` with `user:password`.
    pub fn push(&self, image: &str, name: &str, creds: &str) -> Result<String> {
        let target = format!("{}/{name}", self.host);
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args([
                "push",
                "--quiet",
                "--tls-verify=false",
                "--creds",
                creds,
                image,
                &target,
            ])
            .output()
            .wrap_err("podman push")?;
        ensure!(
            out.status.success(),
            "podman push {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(target)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
