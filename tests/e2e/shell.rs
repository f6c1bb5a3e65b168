//! `berth shell` against the keeper process and podman: commands run with their output and
//! exit codes, an interactive session in a real terminal (tmux) gets a TTY that follows
//! resizes, a service without `shell: true` and another wallet are refused, and a new session
//! works after the keeper was SIGKILLed and restarted.

use std::{process::Command, time::Duration};

use alloy::primitives::U256;
use berth_bindings::{LeaseStatus, ProviderRegistry};
use berth_e2e::{keeper::*, mined, unique_suffix, workspace_binary};
use eyre::{Result, ensure};
use sqlx::PgPool;

use crate::{
    cli_harness::Cli,
    keeper::{TENANT, World, world},
};

const MANIFEST: &str = "version: 1\nservices:\n  app:\n    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"while true; do sleep 1; done\"]\n    resources: {cpu: 100m, memory: 32Mi}\n    shell: true\n  quiet:\n    image: localhost/berth-hello:latest\n    command: [/bin/busybox, sh, -c, \"while true; do sleep 1; done\"]\n    resources: {cpu: 100m, memory: 32Mi}\n";

/// A tmux session running a command; killed when dropped.
struct Tmux(String);

impl Tmux {
    fn start(command: &str) -> Result<Self> {
        let name = format!("berth-shell-{}", unique_suffix());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "80",
                "-y",
                "24",
                command,
            ])
            .status()?;
        ensure!(status.success(), "tmux new-session");
        Ok(Self(name))
    }

    fn keys(&self, keys: &str) -> Result<()> {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys, "Enter"])
            .status()?;
        ensure!(status.success(), "tmux send-keys");
        Ok(())
    }

    fn screen(&self) -> String {
        Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    async fn shows(&self, text: &str) -> Result<()> {
        wait_for(
            &format!("`{text}` on the terminal"),
            Duration::from_secs(20),
            || async { Ok(self.screen().contains(text).then_some(())) },
        )
        .await
        .map_err(|e| eyre::eyre!("{e}; the screen:\n{}", self.screen()))
    }
}

impl Tmux {
    /// The number the terminal printed as `<marker>-<n>-`.
    async fn width(&self, marker: &str) -> Result<usize> {
        let tag = format!("{marker}-");
        wait_for(
            &format!("`{marker}` on the terminal"),
            Duration::from_secs(20),
            || async {
                let screen = self.screen();
                Ok(screen
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix(&tag)?.strip_suffix('-')?.parse().ok())
                    .next())
            },
        )
        .await
        .map_err(|e| eyre::eyre!("{e}; the screen:\n{}", self.screen()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn cli(w: &World) -> Cli {
    Cli {
        rpc_url: w.chain.rpc_url(),
        deployment: w.setup.deployment.clone(),
    }
}

#[sqlx::test(migrations = false)]
async fn shell_sessions_run_commands_in_a_terminal_and_survive_a_keeper_restart(
    pool: PgPool,
) -> Result<()> {
    let w = world(&pool.connect_options(), &[]).await?;
    let mut keeper = KeeperProcess::start(&w.setup).await?;
    let (lease, status) = w
        .lease_with(MANIFEST.as_bytes(), MANIFEST.as_bytes())
        .await?;
    ensure!(status == 202, "upload: {status}");
    w.wait_status(lease, LeaseStatus::Active, &keeper).await?;
    mined(
        ProviderRegistry::new(w.c.registry, w.chain.wallet(2)?)
            .updateEndpoint(U256::from(1), w.setup.gateway()),
        "updateEndpoint",
    )
    .await?;
    let cli = cli(&w);
    let id = lease.to_string();

    // Commands, their output and exit codes.
    let run = cli.run(
        &w.chain,
        Some(TENANT),
        &["shell", &id, "app", "--no-tty", "--", "echo", "hello"],
    )?;
    ensure!(run.code == 0 && run.stdout == "hello\n", "{run:?}");
    let run = cli.run(
        &w.chain,
        Some(TENANT),
        &["shell", &id, "app", "--", "ls", "/"],
    )?;
    ensure!(
        run.code == 0 && run.stdout.lines().any(|l| l == "bin"),
        "{run:?}"
    );
    let run = cli.run(
        &w.chain,
        Some(TENANT),
        &[
            "shell",
            &id,
            "app",
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 7",
        ],
    )?;
    ensure!(run.code == 7 && run.stderr.contains("oops"), "{run:?}");

    // Refused: a service without `shell: true`, another wallet.
    let run = cli.run(
        &w.chain,
        Some(TENANT),
        &["shell", &id, "quiet", "--", "echo", "x"],
    )?;
    ensure!(
        run.code != 0 && run.stderr.contains("does not enable a shell"),
        "{run:?}"
    );
    let run = cli.run(&w.chain, Some(5), &["shell", &id, "app", "--", "echo", "x"])?;
    ensure!(
        run.code != 0 && run.stderr.contains("not by the lease's tenant"),
        "{run:?}"
    );

    // Interactive, in a real terminal: a TTY of the terminal's size that follows a resize.
    let berth = workspace_binary("berth-cli", "berth")?;
    let key = format!("{}", w.chain.signer(TENANT)?.to_bytes());
    let term = Tmux::start(&format!(
        "env BERTH_RPC_URL={} BERTH_DEPLOYMENT={} BERTH_PRIVATE_KEY={key} {} shell {id} app; echo berth-exit=$?; sleep 60",
        w.chain.rpc_url(),
        w.setup.deployment.display(),
        berth.display()
    ))?;
    // busybox's stty cannot read a container's terminal; `ls -C` fills the terminal's width.
    term.keys("tty; echo w1-$(ls -C /bin | awk '{print length}' | sort -n | tail -1)-")?;
    term.shows("/dev/pts/").await?;
    let before = term.width("w1").await?;
    ensure!(
        (60..=80).contains(&before),
        "lines fill an 80-column terminal: {before}"
    );
    Command::new("tmux")
        .args(["resize-window", "-t", &term.0, "-x", "120", "-y", "30"])
        .status()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    term.keys("echo w2-$(ls -C /bin | awk '{print length}' | sort -n | tail -1)-")?;
    let after = term.width("w2").await?;
    ensure!(
        (100..=120).contains(&after),
        "after the resize, a 120-column terminal: {after}"
    );
    term.keys("echo typed-$((6*7))")?;
    term.shows("typed-42").await?;
    term.keys("exit 5")?;
    term.shows("berth-exit=5").await?;

    // The keeper dies and comes back: the next session works.
    keeper.kill9();
    let keeper = KeeperProcess::start(&w.setup).await?;
    let run = cli.run(
        &w.chain,
        Some(TENANT),
        &["shell", &id, "app", "--", "echo", "again"],
    )?;
    ensure!(
        run.code == 0 && run.stdout == "again\n",
        "{run:?}\n{}",
        keeper.log_text()
    );

    // Sessions are in the lease's events (who and how they ended), never their content.
    let events = crate::volumes::events_of(&w, lease).await?;
    let ended: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "shell_ended")
        .collect();
    ensure!(
        ended.len() == 5 && ended.iter().any(|e| e["detail"]["exit_code"] == 7),
        "five sessions ended (two refused never started): {events:?}"
    );
    let status = cli
        .run(
            &w.chain,
            Some(TENANT),
            &["--json", "status", &id, "--events"],
        )?
        .ok()?;
    let listed = status.json()?["events"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    ensure!(
        listed == events.len(),
        "status --events lists the feed: {status:?}"
    );
    let text = serde_json::to_string(&events)?;
    ensure!(
        !text.contains("typed-42") && !text.contains("oops"),
        "no content in the feed"
    );
    Ok(())
}
