//! `berth shell <lease> [service] [-- cmd…]`: a command (a shell by default) in the lease's
//! container over the provider's WebSocket ([`berth_protocol::shell`]). With a terminal on
//! both ends it is interactive: raw mode here, a TTY there, resizes sent as they happen; the
//! command's exit code becomes berth's.

use std::io::{IsTerminal, Write};

use alloy::primitives::U256;
use berth_protocol::{
    access::Operation,
    api::{ApiError, routes},
    shell::{EXIT, Exit, RESIZE, Resize, STDERR, STDIN, STDOUT, frame},
};
use eyre::Result;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{
    context::Ctx,
    failure::{Kind, fail},
};

/// The shell command.
#[derive(Debug, clap::Args)]
pub struct Shell {
    /// Lease id.
    lease: U256,
    /// The service (needed when the lease runs more than one).
    service: Option<String>,
    /// Which replica of the service (0-based).
    #[arg(long, default_value_t = 0)]
    replica: usize,
    /// No terminal, even when this one is (for scripts).
    #[arg(long)]
    no_tty: bool,
    /// The command and its arguments (default: /bin/sh).
    #[arg(last = true)]
    cmd: Vec<String>,
}

/// Puts the terminal in raw mode; restores it when dropped.
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enter(on: bool) -> Self {
        if !on {
            return Self(None);
        }
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        if rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).is_err()
        {
            return Self(None);
        }
        Self(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

fn size() -> Option<(u16, u16)> {
    let w = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (w.ws_col > 0 && w.ws_row > 0).then_some((w.ws_col, w.ws_row))
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs the command; ends the process with the remote command's exit code when it failed.
pub async fn run(ctx: &Ctx, a: Shell) -> Result<()> {
    let l = crate::lease::load(ctx, a.lease).await?;
    let offer = crate::market::offer(ctx, l.raw.providerId).await?;
    let w = ctx.wallet()?;
    let tty = !a.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut query = vec![format!("replica={}", a.replica), format!("tty={tty}")];
    if let Some(s) = &a.service {
        query.push(format!("service={}", encode(s)));
    }
    if !a.cmd.is_empty() {
        query.push(format!("cmd={}", encode(&serde_json::to_string(&a.cmd)?)));
    }
    if let Some((cols, rows)) = size().filter(|_| tty) {
        query.push(format!("cols={cols}&rows={rows}"));
    }
    let url = format!(
        "{}?{}",
        routes::shell(&offer.endpoint, a.lease),
        query.join("&")
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| fail(Kind::Input, format!("{url}: {e}")))?;
    let token = crate::logs::access_token(ctx, &w, a.lease, Operation::Shell)?;
    request.headers_mut().insert(
        "authorization",
        token
            .parse()
            .map_err(|e| fail(Kind::Internal, format!("the access token header: {e}")))?,
    );
    let (socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let said = serde_json::from_str::<ApiError>(&body).map_or(body, |e| e.error);
            let kind = match status.as_u16() {
                401 | 403 => Kind::Refused,
                400 | 404 => Kind::Input,
                _ => Kind::Unreachable,
            };
            return Err(fail(
                kind,
                format!("the provider refused the shell ({status}): {said}"),
            ));
        }
        Err(e) => return Err(fail(Kind::Unreachable, format!("{url}: {e}"))),
    };
    let (mut tx, mut rx) = socket.split();
    let raw = RawMode::enter(tty);
    let mut stdin = tokio::io::stdin();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 8192];
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            .map_err(|e| fail(Kind::Internal, format!("watching the terminal's size: {e}")))?;
    let mut exit: Option<Exit> = None;
    loop {
        tokio::select! {
            n = stdin.read(&mut buf), if stdin_open => {
                let n = n.unwrap_or(0);
                if n == 0 {
                    stdin_open = false;
                }
                // An empty STDIN message closes the command's input.
                if tx.send(Message::Binary(frame(STDIN, &buf[..n]).into())).await.is_err() {
                    break;
                }
            }
            _ = winch.recv(), if tty => {
                if let Some((cols, rows)) = size() {
                    let body = serde_json::to_vec(&Resize { cols, rows }).unwrap_or_default();
                    let _ = tx.send(Message::Binary(frame(RESIZE, &body).into())).await;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => match b.split_first() {
                    Some((&STDOUT, rest)) => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(rest);
                        let _ = out.flush();
                    }
                    Some((&STDERR, rest)) => {
                        let mut err = std::io::stderr().lock();
                        let _ = err.write_all(rest);
                        let _ = err.flush();
                    }
                    Some((&EXIT, rest)) => exit = serde_json::from_slice(rest).ok(),
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(raw);
    // Exits here: a read of the terminal may still be blocked in tokio's stdin thread, which
    // would hold the runtime's shutdown until a key is pressed.
    match exit {
        Some(Exit {
            code: Some(code), ..
        }) => std::process::exit(i32::try_from(code).unwrap_or(1).clamp(0, 255)),
        Some(Exit {
            code: None,
            message,
        }) => Err(fail(
            Kind::Unreachable,
            format!("the shell ended without an exit code: {message}"),
        )),
        None => Err(fail(
            Kind::Unreachable,
            "the provider closed the shell without an exit status",
        )),
    }
}
