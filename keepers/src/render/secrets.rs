//! A lease's secrets in its objects: each `secret_env` variable reads its value from one
//! secret object per lease (`berth-secrets`, a Kubernetes Secret in the lease's namespace; a
//! podman secret `<namespace>-secrets` on one host), so values never appear in the rendered
//! Deployments, the kube YAML or the keeper's logs. The values ride along in [`Rendered`]
//! (their `Debug` shows names only) until the engine creates the object.

use std::collections::BTreeMap;

use base64::Engine as _;
use berth_protocol::{manifest::Service, secrets::SecretValues};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};

use super::Rendered;

/// The secret object's name in a lease's namespace.
pub const SECRETS_NAME: &str = "berth-secrets";

/// The environment variables of `svc` read from the lease's secret object.
pub(super) fn secret_env(svc: &Service) -> impl Iterator<Item = EnvVar> + '_ {
    svc.secret_env.iter().map(|(var, secret)| EnvVar {
        name: var.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: SECRETS_NAME.into(),
                key: secret.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    })
}

impl Rendered {
    /// These objects with the lease's opened secrets, for the engine to store.
    #[must_use]
    pub fn with_secrets(mut self, values: Option<SecretValues>) -> Self {
        self.secrets = values;
        self
    }

    /// The Kubernetes Secret holding the values, if the lease has secrets.
    pub fn kube_secret(&self) -> Option<Secret> {
        let values = self.secrets.as_ref()?;
        Some(Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(SECRETS_NAME.into()),
                namespace: Some(self.key.namespace()),
                labels: Some(self.key.labels()),
                ..Default::default()
            },
            string_data: Some(values.0.clone()),
            type_: Some("Opaque".into()),
            ..Secret::default()
        })
    }

    /// The podman secret's name: host-wide, so scoped to the lease.
    pub fn podman_secret_name(&self) -> String {
        format!("{}-secrets", self.key.namespace())
    }

    /// The podman secret's data, if the lease has secrets: a JSON object of names to base64
    /// values, which `kube play` reads as a Kubernetes Secret's `data`.
    pub fn podman_secret_data(&self) -> Option<Vec<u8>> {
        let values = self.secrets.as_ref()?;
        let data: BTreeMap<&String, String> = values
            .0
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        serde_json::to_vec(&data).ok()
    }
}
