//! `GET /v1/leases/{id}/logs`: a replica's logs as Server-Sent Events ([`berth_protocol::logs`])
//! for the lease's tenant. The stream pings while the workload is quiet, resumes after a
//! cursor without repeating a line, and ends with a reason: the lease ended or was
//! suspended, the container went, everything was sent, or the stream reached its longest.

use std::{convert::Infallible, sync::Arc, time::Duration};

use alloy::{eips::BlockId, primitives::U256};
use axum::{
    extract::{Path, Query, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use berth_bindings::LeaseStatus;
use berth_protocol::{
    access::Operation,
    logs::{Cursor, LogEnd, LogLine, Resume},
};
use futures::StreamExt;
use serde::Deserialize;

use crate::{
    access::{authorized_lease, refuse},
    caps::{Held, LeaseCaps},
    engine::{EngineError, logs::LogQuery},
    gateway::Gateway,
    render::LeaseKey,
};

/// How often the stream checks that its lease still runs.
const LEASE_CHECK: Duration = Duration::from_secs(5);

/// Open log streams, capped per keeper and per lease (each holds a connection and an engine
/// stream), and their timings.
#[derive(Debug, Clone)]
pub struct LogStreams {
    caps: LeaseCaps,
    /// Ping interval of a quiet stream.
    pub ping: Duration,
    /// Longest a stream stays open (the client reconnects with its cursor).
    pub max_duration: Duration,
}

/// Most log streams of one lease at once.
const PER_LEASE: usize = 4;

impl LogStreams {
    /// Caps and timings.
    pub fn new(max_total: usize, ping: Duration, max_duration: Duration) -> Self {
        Self {
            caps: LeaseCaps::new(PER_LEASE, max_total),
            ping,
            max_duration,
        }
    }
}

/// The query of a logs request.
#[derive(Debug, Deserialize)]
pub struct LogsParams {
    service: Option<String>,
    #[serde(default)]
    replica: usize,
    tail: Option<u32>,
    #[serde(default)]
    follow: bool,
    after: Option<String>,
}

fn end(reason: &str, message: impl Into<String>) -> Event {
    let body = LogEnd {
        reason: reason.into(),
        message: message.into(),
    };
    Event::default()
        .event("end")
        .data(serde_json::to_string(&body).unwrap_or_default())
}

/// Why a lease's logs are over, if they are.
fn lease_over(status: LeaseStatus) -> Option<Event> {
    match status {
        LeaseStatus::Active | LeaseStatus::Pending => None,
        LeaseStatus::Suspended => Some(end(
            "suspended",
            "the lease is suspended (its runway ran low): top it up to resume",
        )),
        other => Some(end("lease_ended", format!("the lease is {other:?}"))),
    }
}

/// The handler.
pub async fn logs(
    State(g): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    query: Result<Query<LogsParams>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Query(params) = match query {
        Ok(q) => q,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (lease, _) =
        match authorized_lease(&g, &raw, Operation::Logs, &headers, raw_query.as_deref()).await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let id = lease.id;
    let after = match params
        .after
        .as_deref()
        .or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()))
    {
        None => None,
        Some(text) => match Cursor::decode(text) {
            Some(c) => Some(c),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("`after` is a cursor `<second>-<count>`, not `{text}`"),
                );
            }
        },
    };
    let key = LeaseKey {
        chain_id: g.chain_id,
        escrow: g.chain.escrow(),
        lease_id: id,
    };
    let service = match params.service {
        Some(s) => s,
        None => match only_service(&g, &key).await {
            Ok(s) => s,
            Err(r) => return r,
        },
    };
    let Some(slot) = g.log_streams.caps.enter(id) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many open log streams (at most {} per lease, {} in all): close one",
                g.log_streams.caps.per_lease, g.log_streams.caps.total
            ),
        );
    };
    let q = LogQuery {
        service,
        replica: params.replica,
        tail: params.tail,
        follow: params.follow,
        after,
    };
    let lines = match g.engine.logs(&key, &q).await {
        Ok(lines) => lines,
        Err(EngineError::Missing(why)) => return refuse(StatusCode::NOT_FOUND, why),
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(pump(g.clone(), id, q, lines, tx, slot));
    let events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(g.log_streams.ping).text("ping"))
        .into_response()
}

/// The lease's one service, or a 400 naming them.
async fn only_service(g: &Gateway, key: &LeaseKey) -> Result<String, Response> {
    let workloads = g
        .engine
        .list(key.chain_id, key.escrow)
        .await
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let services: Vec<String> = workloads
        .get(&key.lease_id)
        .map(|w| w.services.keys().cloned().collect())
        .unwrap_or_default();
    match services.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(refuse(
            StatusCode::NOT_FOUND,
            format!("lease {} runs no workload here", key.lease_id),
        )),
        many => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "the lease runs {}: name one with `service`",
                many.join(", ")
            ),
        )),
    }
}

/// Moves lines from the engine to the client until one side ends, the lease ends or the
/// stream reaches its longest; then sends why.
async fn pump(
    g: Arc<Gateway>,
    id: U256,
    q: LogQuery,
    mut lines: crate::engine::logs::LogStream,
    tx: tokio::sync::mpsc::Sender<Event>,
    _slot: Held,
) {
    let mut resume = Resume::new(q.after);
    let deadline = tokio::time::sleep(g.log_streams.max_duration);
    tokio::pin!(deadline);
    let mut check = tokio::time::interval(LEASE_CHECK);
    check.tick().await;
    let last = loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(line)) => {
                    let Some(cursor) = resume.next(line.second) else { continue };
                    let body = LogLine {
                        stream: line.stream.into(),
                        time: line.time,
                        line: line.text,
                        truncated: line.truncated,
                    };
                    let event = Event::default()
                        .event("line")
                        .id(cursor.encode())
                        .data(serde_json::to_string(&body).unwrap_or_default());
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => break end("workload_stopped", format!("the engine's log stream failed: {e}")),
                None if !q.follow => break end("done", "every line was sent"),
                None => {
                    let status = g.chain.lease(id, BlockId::latest()).await.map(|l| l.status);
                    break match status.ok().and_then(lease_over) {
                        Some(over) => over,
                        None => end("workload_stopped", "the container stopped or was replaced: reconnect with the last cursor to follow the next one"),
                    };
                }
            },
            _ = check.tick() => {
                if let Ok(l) = g.chain.lease(id, BlockId::latest()).await
                    && let Some(over) = lease_over(l.status)
                {
                    break over;
                }
            }
            () = &mut deadline => break end("limit", "the stream reached its longest: reconnect with the last cursor"),
            () = tx.closed() => return,
        }
    };
    let _ = tx.send(last).await;
}
