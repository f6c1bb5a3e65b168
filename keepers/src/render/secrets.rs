//! A lease's secrets in its objects: each `secret_env` variable reads its value from one
//! secret object per lease (`berth-secrets`, a Kubernetes Secret in the lease's namespace; a
//! podman secret `<namespace>-secrets` on one host), so values never appear in the rendered
//! Deployments, the kube YAML or the keeper's logs. The values ride along in [`Rendered`]
//! (their `Debug` shows names only) until the engine creates the object.

use std::collections::BTreeMap;

use base64::Engine as _;
use berth_protocol::{
    manifest::{Manifest, Service},
    secrets::SecretValues,
};
use k8s_openapi::{
    ByteString,
    api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

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

/// A registry login: `username:password` from a `pull_secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
    /// The manifest secret it came from (names the Kubernetes pull secret).
    pub secret: String,
}

impl RegistryLogin {
    /// Parses `username:password` (the password may hold colons).
    pub fn parse(value: &str) -> Option<Self> {
        let (username, password) = value.split_once(':')?;
        (!username.is_empty()).then(|| Self {
            username: username.to_owned(),
            password: password.to_owned(),
            secret: String::new(),
        })
    }
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Registry logins by image reference.
pub type PullAuth = BTreeMap<String, RegistryLogin>;

/// The registry an image reference names: its first component when that has a `.` or `:`
/// or is `localhost`, else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The Kubernetes Secret holding `secret`'s registry login.
pub(super) fn pull_secret_name(secret: &str) -> String {
    format!("berth-pull-{secret}")
}

impl Rendered {
    /// These objects with the lease's opened secrets, for the engine to store: the values
    /// `secret_env` reads and the registry logins of `pull_secret`s.
    #[must_use]
    pub fn with_secrets(mut self, manifest: &Manifest, values: Option<SecretValues>) -> Self {
        if let Some(values) = &values {
            for s in manifest.services.values() {
                let login = s.pull_secret.as_ref().and_then(|name| {
                    let mut login = RegistryLogin::parse(values.0.get(name)?)?;
                    login.secret.clone_from(name);
                    Some(login)
                });
                if let Some(login) = login {
                    self.pull_auth.insert(s.image.clone(), login);
                }
            }
        }
        self.secrets = values;
        self
    }

    /// The Kubernetes Secrets (`kubernetes.io/dockerconfigjson`) the pods' `imagePullSecrets`
    /// name, one per `pull_secret`.
    pub fn kube_pull_secrets(&self) -> Vec<Secret> {
        let mut out = BTreeMap::new();
        for (image, login) in &self.pull_auth {
            let name = &login.secret;
            let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
            let config = serde_json::json!({ "auths": { registry_of(image): {
                "username": login.username,
                "password": login.password,
                "auth": b64(&format!("{}:{}", login.username, login.password)),
            }}});
            out.insert(
                pull_secret_name(name),
                Secret {
                    metadata: ObjectMeta {
                        name: Some(pull_secret_name(name)),
                        namespace: Some(self.key.namespace()),
                        labels: Some(self.key.labels()),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/dockerconfigjson".into()),
                    data: Some(BTreeMap::from([(
                        ".dockerconfigjson".to_owned(),
                        ByteString(config.to_string().into_bytes()),
                    )])),
                    ..Secret::default()
                },
            );
        }
        out.into_values().collect()
    }

    /// The Kubernetes Secret holding the values, if the lease has secrets.
    pub fn kube_secret(&self) -> Option<Secret> {
        let values = self.secrets.as_ref()?;
        Some(Secret {
            metadata: ObjectMeta {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_registries_are_read_as_a_pull_expects() {
        let login = RegistryLogin::parse("ci:pa:ss").expect("parses");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("ci", "pa:ss")
        );
        assert!(!format!("{login:?}").contains("pa:ss"));
        assert!(RegistryLogin::parse(":x").is_none());
        assert!(RegistryLogin::parse("nocolon").is_none());
        assert_eq!(registry_of("127.0.0.1:5000/team/app:v1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/org/app@sha256:00"), "ghcr.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("nginx"), "docker.io");
    }
}
