//! A lease's images on one host. An image of a registry is pulled at every deploy, with the
//! lease's own login (`pull_secret`) or none: a private image another lease pulled before is
//! no way around the registry's check, and a tag that moved is seen. Each container is then
//! pinned to the digest pulled, so what runs is what the registry authorized, whatever the tag
//! does next. `localhost/` images are this host's own (built here) and never pulled.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::{PodmanEngine, url_encode};
use crate::{
    engine::EngineError,
    render::{RegistryLogin, Rendered, registry_of},
};

/// The `X-Registry-Auth` header of a pull with `login` (base64url of Docker's auth JSON).
fn registry_auth(image: &str, login: &RegistryLogin) -> String {
    let json = serde_json::json!({
        "username": login.username,
        "password": login.password,
        "serveraddress": registry_of(image),
    });
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

/// The repository of an image reference: without its tag or digest.
fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(r, _)| r);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// Why a pull failed, from podman's answer: the `error` of its JSON lines, or the status.
fn pull_error(status: StatusCode, body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        error: Option<String>,
    }
    let text = String::from_utf8_lossy(body);
    let error = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find_map(|l| l.error);
    match error {
        Some(e) => Some(e),
        None if !status.is_success() => Some(format!("podman answered {status}: {}", text.trim())),
        None => None,
    }
}

impl PodmanEngine {
    /// Pulls the lease's registry images and returns `rendered` with every container pinned
    /// to the digest pulled.
    pub(super) async fn pull_images(&self, rendered: &Rendered) -> Result<Rendered, EngineError> {
        let images: BTreeSet<String> = rendered
            .deployments
            .iter()
            .filter_map(|d| d.spec.as_ref()?.template.spec.as_ref())
            .flat_map(|p| p.containers.iter().filter_map(|c| c.image.clone()))
            .collect();
        let mut pinned = BTreeMap::new();
        for image in images {
            if image.starts_with("localhost/") {
                let exists = format!("/images/{}/exists", url_encode(&image));
                let (status, _) = self.call(Method::GET, &exists, None, self.timeout).await?;
                if status != StatusCode::NO_CONTENT {
                    return Err(EngineError::ImageUnavailable(format!(
                        "image {image} is not on this host (localhost/ images are never pulled)"
                    )));
                }
                continue;
            }
            let auth = rendered
                .pull_auth
                .get(&image)
                .map(|login| registry_auth(&image, login));
            let with_login = auth.is_some();
            let pull = format!("/images/pull?reference={}&quiet=true", url_encode(&image));
            // A registry that never answers is the image's fault (its reference names it).
            let (status, body) = self
                .call_with(Method::POST, &pull, None, self.pull_timeout, auth)
                .await
                .map_err(|e| EngineError::ImageUnavailable(format!("image {image}: {e}")))?;
            if status.is_server_error() && pull_error(status, &body).is_none() {
                return Err(EngineError::Unavailable(format!(
                    "pulling {image}: {status}"
                )));
            }
            if let Some(why) = pull_error(status, &body) {
                let login = if with_login {
                    "with the lease's login"
                } else {
                    "without a login"
                };
                return Err(EngineError::ImageUnavailable(format!(
                    "image {image} cannot be pulled {login}: {why}"
                )));
            }
            if let Some(digest) = self.repo_digest(&image).await? {
                tracing::info!(lease = %rendered.key.lease_id, %image, %digest, "image pulled and pinned");
                pinned.insert(image, digest);
            }
        }
        let mut out = rendered.clone();
        for d in &mut out.deployments {
            let Some(template) = d.spec.as_mut().map(|s| &mut s.template) else {
                continue;
            };
            let mut image = None;
            for c in template
                .spec
                .iter_mut()
                .flat_map(|p| p.containers.iter_mut())
            {
                if let Some(digest) = c.image.as_ref().and_then(|i| pinned.get(i)) {
                    c.image = Some(digest.clone());
                    image = Some(digest.clone());
                }
            }
            // On the pods, so the lease's status reports what runs.
            if let (Some(image), Some(meta)) = (image, template.metadata.as_mut()) {
                meta.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(crate::render::LABEL_IMAGE.into(), image);
            }
        }
        Ok(out)
    }

    /// `repository@sha256:…` of a pulled image, from its `RepoDigests`.
    async fn repo_digest(&self, image: &str) -> Result<Option<String>, EngineError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inspect {
            #[serde(default)]
            repo_digests: Vec<String>,
        }
        let path = format!("/images/{}/json", url_encode(image));
        let (status, body) = self.call(Method::GET, &path, None, self.timeout).await?;
        if !status.is_success() {
            return Ok(None);
        }
        let inspect: Inspect = serde_json::from_slice(&body)
            .map_err(|e| EngineError::Unavailable(format!("inspecting {image}: {e}")))?;
        let repo = repository(image);
        Ok(inspect
            .repo_digests
            .into_iter()
            .find(|d| d.split_once('@').is_some_and(|(r, _)| r == repo)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_errors_are_read() {
        assert_eq!(
            repository("127.0.0.1:5000/team/app:v1"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(
            repository("127.0.0.1:5000/team/app"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(repository("ghcr.io/o/app@sha256:ab"), "ghcr.io/o/app");
        assert_eq!(repository("nginx:1.27"), "nginx");
        let denied = br#"{"error":"unauthorized: authentication required"}"#;
        assert_eq!(
            pull_error(StatusCode::OK, denied).as_deref(),
            Some("unauthorized: authentication required")
        );
        assert_eq!(
            pull_error(StatusCode::OK, br#"{"images":["abc"],"id":"abc"}"#),
            None
        );
        assert!(pull_error(StatusCode::NOT_FOUND, b"no such").is_some());
        let login = RegistryLogin::parse("ci:pw").expect("login");
        let header = registry_auth("127.0.0.1:5000/a:b", &login);
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(header)
            .expect("base64");
        let json: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(json["serveraddress"], "127.0.0.1:5000");
    }
}
