//! `GET /v1/leases/{id}/shell` (WebSocket, [`berth_protocol::shell`]): a command in one of
//! the lease's containers for its tenant, when the manifest enables `shell` for the service.
//! Sessions are capped (in all and per lease), idle ones end, and each one's start and end
//! (who, service, exit code) go to the log and the lease's events; what passes through never
//! does.

use std::{sync::Arc, time::Duration};

use alloy::primitives::{Address, U256};
use axum::{
    extract::{
        Path, Query, RawQuery, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, StatusCode},
    response::Response,
};
use berth_protocol::{
    access::Operation,
    manifest::Manifest,
    shell::{EXIT, Exit, MAX_CMD, MAX_MESSAGE, RESIZE, Resize, STDIN, frame},
};
use serde::Deserialize;

use crate::{
    access::{authorized_lease, refuse},
    caps::{Held, LeaseCaps},
    engine::{EngineError, exec::ExecRequest},
    gateway::Gateway,
    render::LeaseKey,
};

/// Sessions of one lease at once.
const PER_LEASE: usize = 2;
/// Sessions at once.
const TOTAL: usize = 16;

/// Open sessions (capped per lease and in all), and how long one may be idle.
#[derive(Debug, Clone)]
pub struct Sessions {
    caps: LeaseCaps,
    idle: Duration,
}

impl Sessions {
    /// No session yet; one with nothing passing either way for `idle` ends.
    pub fn new(idle: Duration) -> Self {
        Self {
            caps: LeaseCaps::new(PER_LEASE, TOTAL),
            idle,
        }
    }
}

/// The query.
#[derive(Debug, Deserialize)]
pub struct ShellParams {
    service: Option<String>,
    #[serde(default)]
    replica: usize,
    #[serde(default)]
    tty: bool,
    cols: Option<u16>,
    rows: Option<u16>,
    cmd: Option<String>,
}

/// The handler: every check before the upgrade, so a refusal is a plain HTTP answer.
pub async fn shell(
    State(g): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    query: Result<Query<ShellParams>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Query(p) = match query {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (lease, who) =
        match authorized_lease(&g, &raw, Operation::Shell, &headers, raw_query.as_deref()).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let id = lease.id;
    let manifest = match g.store.manifest(id).await {
        Ok(Some(m)) => Manifest::parse(&m.bytes).ok(),
        Ok(None) => None,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let Some(manifest) = manifest else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("lease {id} runs no manifest here"),
        );
    };
    let service = match p.service {
        Some(s) => s,
        None if manifest.services.len() == 1 => {
            manifest.services.keys().next().cloned().unwrap_or_default()
        }
        None => {
            let names: Vec<&str> = manifest.services.keys().map(String::as_str).collect();
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the lease runs {}: name one with `service`",
                    names.join(", ")
                ),
            );
        }
    };
    let Some(svc) = manifest.services.get(&service) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("the lease has no service `{service}`"),
        );
    };
    if !svc.shell {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "the manifest does not enable a shell for `{service}` (set `shell: true` and update the lease)"
            ),
        );
    }
    let cmd = match command(p.cmd.as_deref()) {
        Ok(cmd) => cmd,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let Ok(upgrade) = upgrade else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "the shell is a WebSocket: send an upgrade request",
        );
    };
    let Some(slot) = g.shells.caps.enter(id) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many shells open (at most {PER_LEASE} per lease, {TOTAL} in all)"),
        );
    };
    let key = LeaseKey {
        chain_id: g.chain_id,
        escrow: g.chain.escrow(),
        lease_id: id,
    };
    let req = ExecRequest {
        service,
        replica: p.replica,
        cmd,
        tty: p.tty,
        size: p.cols.zip(p.rows),
    };
    let session = match g.engine.exec(&key, &req).await {
        Ok(s) => s,
        Err(EngineError::Missing(why)) => return refuse(StatusCode::NOT_FOUND, why),
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    upgrade
        .max_message_size(MAX_MESSAGE + 1)
        .on_upgrade(move |socket| run(g, id, who, req, session, socket, slot))
}

/// The command a session runs: the `cmd` parameter (a JSON array of strings, the first the
/// program; at most [`MAX_CMD`] bytes, no NUL), or a shell.
fn command(cmd: Option<&str>) -> Result<Vec<String>, String> {
    match cmd {
        None => Ok(vec!["/bin/sh".to_string()]),
        Some(text) if text.len() > MAX_CMD => Err(format!("`cmd` is longer than {MAX_CMD} bytes")),
        Some(text) => match serde_json::from_str::<Vec<String>>(text) {
            Ok(cmd) if !cmd.is_empty() && cmd.iter().all(|a| !a.contains('\0')) => Ok(cmd),
            _ => Err("`cmd` is a JSON array of strings, the first the program".into()),
        },
    }
}

/// How long `idle` is, as a person says it.
fn said(idle: Duration) -> String {
    match idle.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

async fn run(
    g: Arc<Gateway>,
    id: U256,
    who: Address,
    req: ExecRequest,
    mut session: crate::engine::exec::ExecSession,
    mut socket: WebSocket,
    _slot: Held,
) {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    tracing::info!(lease = %id, %who, service = %req.service, tty = req.tty, "shell session started");
    let detail = serde_json::json!({ "who": who, "service": req.service });
    let _ = g
        .store
        .record_event(id, "shell_started", &format!("shell:{started}"), detail)
        .await;
    let idle = g.shells.idle;
    let idle_for = format!("idle for {}", said(idle));
    let mut ended = "the command ended";
    loop {
        tokio::select! {
            out = session.output.recv() => match out {
                Some((channel, bytes)) => {
                    for chunk in bytes.chunks(MAX_MESSAGE) {
                        if socket.send(Message::Binary(frame(channel, chunk).into())).await.is_err() {
                            ended = "the client went away";
                            break;
                        }
                    }
                }
                None => break,
            },
            msg = tokio::time::timeout(idle, socket.recv()) => match msg {
                Err(_) => { ended = &idle_for; break }
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => { ended = "the client went away"; break }
                Ok(Some(Ok(Message::Binary(b)))) => match b.split_first() {
                    Some((&STDIN, rest)) => { let _ = session.stdin.send(rest.to_vec()).await; }
                    Some((&RESIZE, rest)) => {
                        if let Ok(r) = serde_json::from_slice::<Resize>(rest) {
                            let _ = session.resize.send((r.cols, r.rows)).await;
                        }
                    }
                    _ => {}
                },
                Ok(Some(Ok(_))) => {}
            },
        }
    }
    drop(session.stdin);
    let code = tokio::time::timeout(Duration::from_secs(5), session.exit)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let exit = Exit {
        code,
        message: ended.into(),
    };
    let _ = socket
        .send(Message::Binary(
            frame(EXIT, &serde_json::to_vec(&exit).unwrap_or_default()).into(),
        ))
        .await;
    let _ = socket.send(Message::Close(None)).await;
    tracing::info!(lease = %id, %who, service = %req.service, exit_code = ?code, why = ended, "shell session ended");
    let detail = serde_json::json!({ "who": who, "service": req.service, "exit_code": code });
    let _ = g
        .store
        .record_event(id, "shell_ended", &format!("shell-end:{started}"), detail)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_json_arrays_of_plain_strings() {
        assert_eq!(command(None).expect("default"), ["/bin/sh"]);
        assert_eq!(
            command(Some(r#"["ls","-l"]"#)).expect("parsed"),
            ["ls", "-l"]
        );
        for bad in ["ls -l", "[]", r#"["a\u0000b"]"#, "[1]", r#"{"a":1}"#, ""] {
            let e = command(Some(bad)).expect_err(bad);
            assert!(e.contains("JSON array of strings"), "{bad}: {e}");
        }
        let long = format!(r#"["{}"]"#, "x".repeat(MAX_CMD));
        assert!(
            command(Some(&long))
                .expect_err("long")
                .contains("longer than")
        );
    }

    #[test]
    fn idle_limits_are_said_as_a_person_says_them() {
        assert_eq!(said(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(said(Duration::from_secs(3)), "3 s");
        assert_eq!(said(Duration::from_secs(90)), "90 s");
    }
}
