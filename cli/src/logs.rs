//! `berth logs <lease> [service] [-f]`: a workload's logs from its provider, authenticated by
//! a short-lived token the wallet signs ([`berth_protocol::access`]). Following survives a
//! dropped connection or a replaced container: it reconnects after the last line's cursor,
//! so no line is printed twice.

use std::time::Duration;

use alloy::{
    primitives::U256,
    signers::SignerSync,
    transports::http::reqwest::{self, StatusCode},
};
use berth_protocol::{
    access::{MAX_LIFETIME_S, Operation, Token, signing_hash},
    api::{ApiError, routes},
    logs::{LogEnd, LogLine},
};
use eyre::Result;

use crate::{
    context::{Ctx, Wallet, progress},
    failure::{Kind, fail},
};

/// The logs command.
#[derive(Debug, clap::Args)]
pub struct Logs {
    /// Lease id.
    lease: U256,
    /// The service (needed when the lease runs more than one).
    service: Option<String>,
    /// Which replica of the service (0-based).
    #[arg(long, default_value_t = 0)]
    replica: usize,
    /// Keep printing new lines until the lease ends (Ctrl-C to stop).
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (then follow, with -f).
    #[arg(long)]
    tail: Option<u32>,
}

/// The largest event read; the provider cuts lines at 16 KiB.
const MAX_EVENT: usize = 64 * 1024;
/// Reconnections after a connection drops, before giving up.
const RECONNECTS: u32 = 20;

/// A signed access token for `operation` of `lease`, valid for 10 minutes.
pub fn access_token(ctx: &Ctx, w: &Wallet, lease: U256, operation: Operation) -> Result<String> {
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + MAX_LIFETIME_S * 2 / 3;
    let digest = signing_hash(
        ctx.chain_id,
        ctx.deployment.lease_escrow,
        lease,
        operation,
        expires_at,
    );
    let signature = w
        .signer
        .sign_hash_sync(&digest)
        .map_err(|e| fail(Kind::Internal, format!("signing the access token: {e}")))?;
    Ok(format!(
        "Berth {}",
        Token {
            expires_at,
            signature
        }
        .encode()
    ))
}

/// One Server-Sent Event.
#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// Splits an SSE byte stream into events (comments, such as pings, are skipped).
#[derive(Debug, Default)]
struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buf.drain(..end + 2).collect();
            let mut e = SseEvent::default();
            for line in String::from_utf8_lossy(&block).lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    e.event = v.trim_start().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    e.id = Some(v.trim_start().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    e.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if !e.event.is_empty() {
                out.push(e);
            }
        }
        if self.buf.len() > MAX_EVENT {
            return Err(fail(
                Kind::Mismatch,
                format!("the provider sent an event over {MAX_EVENT} bytes"),
            ));
        }
        Ok(out)
    }
}

/// How a connection ended.
enum Ended {
    /// The provider said why.
    Said(LogEnd),
    /// The connection dropped.
    Dropped(String),
}

/// Runs the command.
pub async fn run(ctx: &Ctx, a: Logs) -> Result<()> {
    if let Some(s) = &a.service
        && (s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        return Err(fail(
            Kind::Input,
            format!("`{s}` is not a service name (a-z, 0-9 and '-')"),
        ));
    }
    let l = crate::lease::load(ctx, a.lease).await?;
    let offer = crate::market::offer(ctx, l.raw.providerId).await?;
    let w = ctx.wallet()?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| fail(Kind::Internal, format!("HTTP client: {e}")))?;
    let mut after: Option<String> = None;
    let mut delay = Duration::from_millis(500);
    let mut failures = 0;
    loop {
        match connect(ctx, &w, &http, &offer.endpoint, &a, after.as_deref()).await? {
            (Ended::Said(end), last) => {
                after = last.or(after);
                let again = a.follow && matches!(end.reason.as_str(), "workload_stopped" | "limit");
                if !again {
                    if end.reason != "done" {
                        progress(ctx.global.json, &format!("logs ended: {}", end.message));
                    }
                    return Ok(());
                }
                progress(ctx.global.json, &format!("{}; reconnecting", end.message));
                failures = 0;
            }
            (Ended::Dropped(why), last) => {
                after = last.or(after);
                failures += 1;
                if !a.follow || failures > RECONNECTS {
                    return Err(fail(
                        Kind::Unreachable,
                        format!("the logs stream of lease {} dropped: {why}", a.lease),
                    ));
                }
                progress(
                    ctx.global.json,
                    &format!(
                        "the logs stream dropped ({why}); reconnecting in {:.1} s",
                        delay.as_secs_f64()
                    ),
                );
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// One connection: prints lines until it ends; returns how, and the last cursor seen.
async fn connect(
    ctx: &Ctx,
    w: &Wallet,
    http: &reqwest::Client,
    endpoint: &str,
    a: &Logs,
    after: Option<&str>,
) -> Result<(Ended, Option<String>)> {
    let mut query = vec![
        ("replica", a.replica.to_string()),
        ("follow", a.follow.to_string()),
    ];
    if let Some(s) = &a.service {
        query.push(("service", s.clone()));
    }
    if let Some(t) = a.tail.filter(|_| after.is_none()) {
        query.push(("tail", t.to_string()));
    }
    if let Some(c) = after {
        query.push(("after", c.to_string()));
    }
    // Every value is a number, a bool, a cursor or a service name (a DNS label): nothing to
    // escape.
    let url = format!(
        "{}?{}",
        routes::logs(endpoint, a.lease),
        query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let sent = http
        .get(&url)
        .header(
            "authorization",
            access_token(ctx, w, a.lease, Operation::Logs)?,
        )
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return Ok((Ended::Dropped(e.to_string()), None)),
    };
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let said = serde_json::from_str::<ApiError>(&body).map_or(body, |e| e.error);
        let kind = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Kind::Refused,
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Kind::Input,
            _ => Kind::Unreachable,
        };
        if kind == Kind::Unreachable {
            return Ok((Ended::Dropped(format!("{status}: {said}")), None));
        }
        return Err(fail(kind, format!("{url} answered {status}: {said}")));
    }
    let mut parser = SseParser::default();
    let mut last = None;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Ok((
                    Ended::Dropped("the provider closed the stream".into()),
                    last,
                ));
            }
            Err(e) => return Ok((Ended::Dropped(e.to_string()), last)),
        };
        for e in parser.feed(&chunk)? {
            match e.event.as_str() {
                "line" => {
                    let Ok(line) = serde_json::from_str::<LogLine>(&e.data) else {
                        continue;
                    };
                    if ctx.global.json {
                        println!("{}", serde_json::to_string(&line).unwrap_or_default());
                    } else {
                        println!("{}", line.line);
                    }
                    last = e.id.or(last);
                }
                "end" => {
                    let end = serde_json::from_str::<LogEnd>(&e.data).unwrap_or(LogEnd {
                        reason: "unknown".into(),
                        message: e.data.clone(),
                    });
                    return Ok((Ended::Said(end), last));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_parse_and_pings_are_skipped() {
        let text = b": ping\n\nevent: line\nid: 10-1\ndata: {\"a\":1}\n\nevent: end\ndata: {}\n\n";
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for chunk in text.chunks(3) {
            got.extend(p.feed(chunk).expect("parses"));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].event.as_str(),
                got[0].id.as_deref(),
                got[0].data.as_str()
            ),
            ("line", Some("10-1"), "{\"a\":1}")
        );
        assert_eq!(got[1].event, "end");
        assert!(
            p.feed(&vec![b'x'; MAX_EVENT + 1]).is_err(),
            "an endless event is refused"
        );
    }
}
