//! A lease's volumes: scratch volumes are `emptyDir`s; a persistent volume is a
//! PersistentVolumeClaim named `<service>.<volume>` in the lease's namespace, which kube
//! play turns into a named podman volume (scoped to the lease by [`LeaseKey::volume_name`]).
//! Either outlives its pods, so data survives restarts, updates and suspension; the lease's
//! teardown removes it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::apps::v1::DeploymentStrategy,
    api::core::v1::{
        EmptyDirVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
        PersistentVolumeClaimVolumeSource, PodSpec, Volume as KubeVolume,
        VolumeResourceRequirements,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};

use berth_protocol::manifest::{Manifest, Service};

use super::{LABEL_SERVICE, LeaseKey};

/// The claim of `service`'s persistent volume `volume`: a DNS subdomain no scratch volume
/// name (a DNS label) and no other service's claim can equal.
pub fn claim_name(service: &str, volume: &str) -> String {
    format!("{service}.{volume}")
}

/// The pod's volumes of `svc`, named as the manifest names them, and `secret_files` (the
/// volume its secret files mount from, if any).
pub(super) fn pod_volumes(
    service: &str,
    svc: &Service,
    secret_files: Option<KubeVolume>,
) -> Option<Vec<KubeVolume>> {
    (!svc.volumes.is_empty() || secret_files.is_some()).then(|| {
        svc.volumes
            .iter()
            .map(|v| KubeVolume {
                name: v.name.clone(),
                empty_dir: (!v.persistent).then(EmptyDirVolumeSource::default),
                persistent_volume_claim: v.persistent.then(|| PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(service, &v.name),
                    read_only: None,
                }),
                ..KubeVolume::default()
            })
            .chain(secret_files)
            .collect()
    })
}

/// A service holding a persistent volume is replaced, not rolled: a ReadWriteOnce volume
/// attaches to one node, so a new pod elsewhere would wait for the old one forever.
pub(super) fn strategy(svc: &Service) -> Option<DeploymentStrategy> {
    svc.volumes
        .iter()
        .any(|v| v.persistent)
        .then(|| DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        })
}

/// One claim per persistent volume of the manifest, asking for its size (in bytes, so the
/// cluster sees exactly what the reservation counted).
pub(super) fn claims(key: &LeaseKey, manifest: &Manifest) -> Vec<PersistentVolumeClaim> {
    let mut out = Vec::new();
    for (service, svc) in &manifest.services {
        for v in svc.volumes.iter().filter(|v| v.persistent) {
            let mut labels = key.labels();
            labels.insert(LABEL_SERVICE.into(), service.clone());
            out.push(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(service, &v.name)),
                    namespace: Some(key.namespace()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(v.size_bytes().unwrap_or(0).to_string()),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            });
        }
    }
    out
}

/// podman's volumes are host-wide: every volume of the pod, and every claim, gets the lease's
/// prefix, so two leases naming a volume alike never share it.
pub(super) fn scope_to_lease(key: &LeaseKey, spec: &mut PodSpec) {
    for c in &mut spec.containers {
        for m in c.volume_mounts.iter_mut().flatten() {
            m.name = key.volume_name(&m.name);
        }
    }
    for v in spec.volumes.iter_mut().flatten() {
        v.name = key.volume_name(&v.name);
        if let Some(claim) = v.persistent_volume_claim.as_mut() {
            claim.claim_name = key.volume_name(&claim.claim_name);
        }
    }
}
