//! A lease's podman secret (`<namespace>-secrets`): created before `kube play` reads it,
//! replaced with each new set of values, removed with the lease. Its data is what `kube play`
//! reads as a Kubernetes Secret's `data` (names to base64 values); it goes over the local
//! socket only and is never logged.

use hyper::{Method, StatusCode};

use super::{PodmanEngine, url_encode};
use crate::{
    engine::EngineError,
    render::{LeaseKey, Rendered},
};

impl PodmanEngine {
    /// Makes the lease's podman secret hold `rendered`'s values (or removes it when the
    /// lease has none).
    pub(super) async fn put_secret(&self, rendered: &Rendered) -> Result<(), EngineError> {
        let name = rendered.podman_secret_name();
        self.remove_secret(&name).await?;
        let Some(data) = rendered.podman_secret_data() else {
            return Ok(());
        };
        let data = String::from_utf8(data)
            .map_err(|_| EngineError::Refused("secret data is not UTF-8".into()))?;
        let path = format!("/secrets/create?name={}", url_encode(&name));
        let (status, body) = self
            .call(Method::POST, &path, Some(data), self.timeout)
            .await?;
        if status.is_success() {
            return Ok(());
        }
        // The answer may quote the request; never echo it.
        let _ = body;
        Err(EngineError::Unavailable(format!(
            "creating podman secret {name}: {status}"
        )))
    }

    /// Removes the lease's podman secret, if any.
    pub(super) async fn delete_secret(&self, key: &LeaseKey) -> Result<(), EngineError> {
        self.remove_secret(&format!("{}-secrets", key.namespace()))
            .await
    }

    async fn remove_secret(&self, name: &str) -> Result<(), EngineError> {
        let path = format!("/secrets/{}", url_encode(name));
        let (status, _) = self.call(Method::DELETE, &path, None, self.timeout).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(EngineError::Unavailable(format!(
                "removing podman secret {name}: {status}"
            )))
        }
    }
}
