//! `berth shell` against the keeper process and podman: commands run with their output and
//! exit codes, an interactive session in a real terminal (tmux) gets a TTY that follows
//! resizes, a service without `shell: true` and another wallet are refused, a malformed
//! command is a 400 and a third session of one lease a 429, a new session works after the
//! keeper was SIGKILLed and restarted, and an idle session ends.

use std::{process::Command, time::Duration};

use alloy::primitives::U256;
use berth_bindings::{LeaseStatus, ProviderRegistry};
use berth_e2e::{keeper::*, mined, unique_suffix, workspace_binary};
use berth_protocol::{
    access::Operation,
    shell::{EXIT, Exit},
};
use eyre::{Result, ensure};
use sqlx::PgPool;

use crate::{
    cli_harness::Cli,
    keeper::{TENANT, WAIT, World, world},
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

/// Opens a shell session of `lease` running `query`'s command (WebSocket, the tenant's
/// token); the HTTP status when the keeper refuses it.
async fn open_shell(
    w: &World,
    lease: U256,
    query: &str,
) -> Result<std::result::Result<Session, u16>> {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let port = w.setup.gateway_port;
    let mut request =
        format!("ws://127.0.0.1:{port}/v1/leases/{lease}/shell?{query}").into_client_request()?;
    let token = w.access_token(TENANT, Operation::Shell, lease, soon()?)?;
    request
        .headers_mut()
        .insert("authorization", token.parse()?);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((socket, _)) => Ok(Ok(socket)),
        Err(tungstenite::Error::Http(answer)) => Ok(Err(answer.status().as_u16())),
        Err(e) => Err(e.into()),
    }
}

/// Ten minutes from now (an access token lives 15 minutes at most).
fn soon() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 600)
}

type Session = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Reads a session until its exit frame (within `limit`): how it ended.
async fn exit_of(session: &mut Session, limit: Duration) -> Result<Exit> {
    use futures_util::StreamExt;
    let read = async {
        while let Some(msg) = session.next().await {
            let data = msg?.into_data();
            if let Some((&EXIT, rest)) = data.split_first() {
                return Ok(serde_json::from_slice::<Exit>(rest)?);
            }
        }
        eyre::bail!("the session closed without an exit frame")
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| eyre::eyre!("no exit frame within {limit:?}"))?
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

    // Bad requests, answered before any session starts: a command that is not a JSON array
    // of strings, and a third session of the lease while two are open.
    for cmd in ["echo%20hi", "%5B%5D", "%5B1%5D"] {
        let refused = open_shell(&w, lease, &format!("service=app&cmd={cmd}")).await?;
        ensure!(
            refused.as_ref().err() == Some(&400),
            "cmd={cmd}: {:?}",
            refused.err()
        );
    }
    let answer = alloy::transports::http::reqwest::Client::new()
        .get(format!(
            "{}/v1/leases/{id}/shell?service=app&cmd=echo",
            w.setup.gateway()
        ))
        .header(
            "authorization",
            w.access_token(TENANT, Operation::Shell, lease, soon()?)?,
        )
        .send()
        .await?;
    let (code, text) = (answer.status().as_u16(), answer.text().await?);
    ensure!(
        code == 400 && text.contains("`cmd` is a JSON array of strings"),
        "a malformed cmd: {code} {text}"
    );
    let sleep = "service=app&cmd=%5B%22sleep%22%2C%2230%22%5D";
    let mut open = Vec::new();
    for _ in 0..2 {
        match open_shell(&w, lease, sleep).await? {
            Ok(session) => open.push(session),
            Err(code) => eyre::bail!("a shell session was refused with {code}"),
        }
    }
    let third = open_shell(&w, lease, sleep).await?;
    ensure!(
        third.as_ref().err() == Some(&429),
        "a third session: {:?}",
        third.err()
    );
    drop(open);
    berth_e2e::keeper::wait_for(
        "the two sessions to end",
        Duration::from_secs(20),
        || async {
            let events = crate::volumes::events_of(&w, lease).await?;
            let ended = events.iter().filter(|e| e["kind"] == "shell_ended").count();
            Ok((ended == 6).then_some(()))
        },
    )
    .await?;

    // The keeper dies and comes back (ending idle sessions after 3 s): the next session works.
    keeper.kill9();
    let mut idle_setup = w.setup.clone();
    idle_setup
        .env
        .push(("BERTH_SHELL_IDLE_S".into(), "3".into()));
    let keeper = KeeperProcess::start(&idle_setup).await?;
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

    // A session with nothing passing either way ends, saying why.
    let started = std::time::Instant::now();
    let mut idle = open_shell(&w, lease, sleep)
        .await?
        .map_err(|code| eyre::eyre!("the idle session was refused with {code}"))?;
    let exit = exit_of(&mut idle, Duration::from_secs(20)).await?;
    let took = started.elapsed();
    ensure!(
        exit.message == "idle for 3 s" && took >= Duration::from_secs(3),
        "{exit:?} after {took:?}"
    );

    // Sessions are in the lease's events (who and how they ended), never their content:
    // eight ended (the refused ones never started).
    let events = berth_e2e::keeper::wait_for("eight ended sessions", WAIT, || async {
        let events = crate::volumes::events_of(&w, lease).await?;
        let ended = events.iter().filter(|e| e["kind"] == "shell_ended");
        Ok((ended.count() == 8).then_some(events))
    })
    .await?;
    ensure!(
        events
            .iter()
            .any(|e| e["kind"] == "shell_ended" && e["detail"]["exit_code"] == 7),
        "the exit code of a session: {events:?}"
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
