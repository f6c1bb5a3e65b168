//! A container's logs through libpod's logs endpoint (multiplexed frames, timestamps on).

use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, body::Bytes};

use super::{API, PodmanEngine, url_encode};
use crate::{
    engine::{
        EngineError,
        logs::{FrameDecoder, LogQuery, LogStream, parse_line},
    },
    render::{LABEL_SERVICE, LeaseKey},
};

impl PodmanEngine {
    /// The logs of replica `q.replica` of service `q.service` (containers in name order).
    pub async fn logs(&self, key: &LeaseKey, q: &LogQuery) -> Result<LogStream, EngineError> {
        let container = self.replica(key, &q.service, q.replica).await?;
        let mut path = format!(
            "/containers/{}/logs?stdout=true&stderr=true&timestamps=true&follow={}",
            url_encode(&container.id),
            q.follow
        );
        if let Some(after) = q.after {
            path.push_str(&format!("&since={}", after.second.max(0)));
        }
        if let Some(tail) = q.tail {
            path.push_str(&format!("&tail={tail}"));
        }
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://podman{API}{path}"))
            .header(hyper::header::HOST, "podman")
            .body(Full::new(Bytes::new()))
            .map_err(|e| EngineError::Unavailable(format!("podman request {path}: {e}")))?;
        let (status, body) = berth_runtime::http::unix_stream(self.socket(), req, self.timeout)
            .await
            .map_err(|e| EngineError::Unavailable(format!("podman {e}")))?;
        if !status.is_success() {
            let text = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(EngineError::Unavailable(format!(
                "reading logs of {}: {status}: {}",
                container.id,
                String::from_utf8_lossy(&text[..text.len().min(512)]).trim()
            )));
        }
        let frames = body.into_data_stream();
        let lines = futures::stream::unfold(
            (
                frames,
                FrameDecoder::default(),
                Vec::new().into_iter(),
                false,
            ),
            |(mut frames, mut decoder, mut ready, mut failed)| async move {
                loop {
                    if let Some(line) = ready.next() {
                        return Some((Ok(line), (frames, decoder, ready, failed)));
                    }
                    if failed {
                        return None;
                    }
                    let chunk = match frames.next().await? {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            failed = true;
                            let err = EngineError::Unavailable(format!("reading logs: {e}"));
                            return Some((Err(err), (frames, decoder, ready, failed)));
                        }
                    };
                    match decoder.feed(&chunk) {
                        Ok(entries) => {
                            ready = entries
                                .into_iter()
                                .filter_map(|(stream, bytes)| parse_line(stream, &bytes))
                                .collect::<Vec<_>>()
                                .into_iter();
                        }
                        Err(e) => {
                            failed = true;
                            return Some((Err(e), (frames, decoder, ready, failed)));
                        }
                    }
                }
            },
        );
        Ok(lines.boxed())
    }
}

#[derive(serde::Deserialize)]
struct PodmanEvent {
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: PodmanActor,
    #[serde(rename = "timeNano", default)]
    time_nano: i128,
}

#[derive(serde::Deserialize, Default)]
struct PodmanActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: std::collections::BTreeMap<String, String>,
}

impl PodmanEngine {
    /// Restarts of the escrow's containers since `watch` last looked (podman's events file,
    /// at most 10,000 events a call).
    pub async fn restarts(
        &self,
        chain_id: u64,
        escrow: alloy::primitives::Address,
        watch: &mut crate::engine::restarts::RestartWatch,
    ) -> Result<Vec<crate::engine::restarts::Restart>, EngineError> {
        let labels: Vec<String> = LeaseKey::escrow_selector(chain_id, escrow)
            .split(',')
            .map(str::to_string)
            .collect();
        let filters = serde_json::json!({
            "type": ["container"], "event": ["died", "restart"], "label": labels,
        });
        let since = watch.since_nanos.div_euclid(1_000_000_000);
        let path = format!(
            "/events?stream=false&since={since}&filters={}",
            url_encode(&filters.to_string())
        );
        let (status, body) = self.call(Method::GET, &path, None, self.timeout).await?;
        if !status.is_success() {
            return Err(EngineError::Unavailable(format!(
                "reading events: {status}"
            )));
        }
        let mut out = Vec::new();
        for line in body.split(|b| *b == b'\n').take(10_000) {
            let Ok(e) = serde_json::from_slice::<PodmanEvent>(line) else {
                continue;
            };
            if e.time_nano <= watch.since_nanos {
                continue;
            }
            watch.since_nanos = e.time_nano;
            let attrs = &e.actor.attributes;
            // Label filters may match any one label: check them all.
            if !labels.iter().all(|l| {
                l.split_once('=')
                    .is_some_and(|(k, v)| attrs.get(k).map(String::as_str) == Some(v))
            }) {
                continue;
            }
            // libpod's filter says `died`, its answer `die`.
            if matches!(e.action.as_str(), "died" | "die") {
                if let Some(code) = attrs.get("containerExitCode").and_then(|c| c.parse().ok()) {
                    watch.exit_codes.insert(e.actor.id.clone(), code);
                }
                continue;
            }
            let (true, Some(lease), Some(service)) = (
                e.action == "restart",
                attrs
                    .get(crate::render::LABEL_LEASE)
                    .and_then(|l| l.parse().ok()),
                attrs.get(LABEL_SERVICE),
            ) else {
                continue;
            };
            out.push(crate::engine::restarts::Restart {
                lease,
                service: service.clone(),
                exit_code: watch.exit_codes.get(&e.actor.id).copied(),
                container: e.actor.id,
                mark: e.time_nano,
            });
        }
        if watch.exit_codes.len() > 10_000 {
            watch.exit_codes.clear();
        }
        Ok(out)
    }
}
