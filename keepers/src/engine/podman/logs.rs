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
        let mut filters = Self::lease_filters(key);
        filters.push(format!("{LABEL_SERVICE}={}", q.service));
        let mut containers: Vec<_> = self
            .containers(&serde_json::json!({ "label": filters }), true)
            .await?
            .into_iter()
            .filter(|c| !c.is_infra)
            .collect();
        containers.sort_by(|a, b| a.names.cmp(&b.names));
        let Some(container) = containers.get(q.replica) else {
            return Err(EngineError::Missing(format!(
                "service {} of lease {} has no replica {} ({} running or stopped)",
                q.service,
                key.lease_id,
                q.replica,
                containers.len()
            )));
        };
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
