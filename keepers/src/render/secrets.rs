//! A lease's secrets in its objects: each `secret_env` variable reads its value from one
//! secret object per lease (`berth-secrets`, a Kubernetes Secret in the lease's namespace; a
//! podman secret `<namespace>-secrets` on one host), so values never appear in the rendered
//! Deployments, the kube YAML or the keeper's logs. The values ride along in [`Rendered`]
//! (their `Debug` shows names only) until the engine creates the object.
//!
//! `secret_files` are read-only files: on Kubernetes a volume of the same Secret, one
//! `subPath` mount per file; on podman (whose `kube play` cannot mount a secret as a volume
//! before 4.4) a read-only bind mount of a file the engine writes in the keeper's
//! memory-backed directory, `<secret_files_dir>/<namespace>/<secret>`.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use berth_protocol::{
    manifest::{Manifest, RESERVED_VOLUME, Service},
    secrets::SecretValues,
};
use k8s_openapi::{
    ByteString,
    api::core::v1::{
        EnvVar, EnvVarSource, HostPathVolumeSource, PodSpec, Secret, SecretKeySelector,
        SecretVolumeSource, Volume, VolumeMount,
    },
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

/// The read-only mounts of `svc`'s `secret_files`, one file of the secret volume each.
pub(super) fn secret_file_mounts(svc: &Service) -> impl Iterator<Item = VolumeMount> + '_ {
    svc.secret_files.iter().map(|(path, secret)| VolumeMount {
        name: RESERVED_VOLUME.into(),
        mount_path: path.clone(),
        sub_path: Some(secret.clone()),
        read_only: Some(true),
        ..VolumeMount::default()
    })
}

/// The pod's volume of the lease's Secret that `secret_files` mount from, when it has any:
/// files readable by any user of the container (the image's user need not be root).
pub(super) fn secret_files_volume(svc: &Service) -> Option<Volume> {
    (!svc.secret_files.is_empty()).then(|| Volume {
        name: RESERVED_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(SECRETS_NAME.into()),
            default_mode: Some(0o444),
            optional: Some(false),
            items: None,
        }),
        ..Volume::default()
    })
}

/// On podman, each secret file is a bind mount of `<dir>/<secret>` (`dir` is the lease's
/// directory in the keeper's memory-backed store) instead of a mount of the secret volume.
pub(super) fn files_from_host(spec: &mut PodSpec, dir: &Path) {
    let mut host = Vec::new();
    for c in &mut spec.containers {
        for m in c.volume_mounts.iter_mut().flatten() {
            if m.name != RESERVED_VOLUME {
                continue;
            }
            let secret = m.sub_path.take().unwrap_or_default();
            m.name = format!("{RESERVED_VOLUME}-{}", host.len());
            host.push(Volume {
                name: m.name.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: dir.join(&secret).display().to_string(),
                    type_: Some("File".into()),
                }),
                ..Volume::default()
            });
        }
    }
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| v.name != RESERVED_VOLUME);
        volumes.extend(host);
    }
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

    /// The lease's directory of secret files under `base` (the keeper's `secret_files_dir`).
    pub fn secret_files_dir(&self, base: &Path) -> PathBuf {
        base.join(self.key.namespace())
    }

    /// The secret files podman mounts: secret name → value, for the secrets some service
    /// reads as a file (and only those).
    pub fn secret_files(&self) -> BTreeMap<&str, &str> {
        let Some(values) = &self.secrets else {
            return BTreeMap::new();
        };
        self.deployments
            .iter()
            .filter_map(|d| d.spec.as_ref()?.template.spec.as_ref())
            .flat_map(|spec| &spec.containers)
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .filter(|m| m.name == RESERVED_VOLUME)
            .filter_map(|m| {
                let name = m.sub_path.as_deref()?;
                Some((name, values.0.get(name)?.as_str()))
            })
            .collect()
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
    fn secret_files_mount_the_secret_on_kubernetes_and_host_files_on_podman() {
        use alloy::primitives::{Address, U256};
        let m = Manifest::parse(
            b"version: 1\nsecrets: {key_version: 1, names: [token, other], sealed: QUJD}\nservices:\n  web:\n    image: x\n    resources: {cpu: 1, memory: 1Mi}\n    volumes: [{name: data, mount: /data}]\n    secret_files: {/etc/app/token: token}\n",
        )
        .expect("parses");
        let key = super::super::LeaseKey {
            chain_id: 1,
            escrow: Address::repeat_byte(0xab),
            lease_id: U256::from(7),
        };
        let values = SecretValues(BTreeMap::from([
            ("token".to_owned(), "t0k3n".to_owned()),
            ("other".to_owned(), "not a file".to_owned()),
        ]));
        let r = super::super::render(key, &m, &Default::default()).with_secrets(&m, Some(values));
        let spec = r.deployments[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("pod");
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == RESERVED_VOLUME)
            .and_then(|v| v.secret.clone())
            .expect("the secret volume");
        assert_eq!(volume.secret_name.as_deref(), Some(SECRETS_NAME));
        assert_eq!(volume.default_mode, Some(0o444));
        let mounts = spec.containers[0].volume_mounts.clone().expect("mounts");
        let file = mounts
            .iter()
            .find(|m| m.name == RESERVED_VOLUME)
            .expect("mount");
        assert_eq!(
            (
                file.mount_path.as_str(),
                file.sub_path.as_deref(),
                file.read_only
            ),
            ("/etc/app/token", Some("token"), Some(true))
        );
        assert_eq!(mounts.len(), 2, "the scratch volume stays");
        // Only the secrets some service mounts become files.
        assert_eq!(r.secret_files(), BTreeMap::from([("token", "t0k3n")]));

        let yaml = r.to_podman_yaml(None, Path::new("/run/s")).expect("yaml");
        let dir = format!("/run/s/{}", key.namespace());
        assert!(yaml.contains(&format!("path: {dir}/token")), "{yaml}");
        assert!(yaml.contains("type: File"), "{yaml}");
        assert!(
            !yaml.contains("secretName") && !yaml.contains("subPath"),
            "{yaml}"
        );
        assert!(!yaml.contains("t0k3n"), "no value in the YAML");
        assert_eq!(r.secret_files_dir(Path::new("/run/s")), Path::new(&dir));
    }

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
